// Normalization CPU kernels against float64 loops written here.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/error.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using ir::Dims;
using ir::Tensor;
using test::attr_f;
using test::attr_i;
using test::attr_ints;

Tensor to_f32(const std::vector<double>& v, Dims d) { return Tensor::from_float(std::vector<float>(v.begin(), v.end()), d); }

int64_t inner_of(const Dims& d, size_t from) {
  int64_t v = 1;
  for (size_t i = from; i < d.size(); ++i) v *= d[i];
  return v;
}

TEST(BatchNormCpu, InferenceMode) {
  uint32_t seed = 1;
  for (Dims d : {Dims{2, 3, 4, 5}, Dims{3, 4}, Dims{1, 5, 7}, Dims{2, 2, 3, 2, 2}}) {
    SCOPED_TRACE(shape_str(d));
    int64_t c = d[1], inner = inner_of(d, 2);
    Tensor x = test::random_tensor(DataType::kFloat32, d, seed++, -3, 3);
    Tensor s = test::random_tensor(DataType::kFloat32, {c}, seed++);
    Tensor b = test::random_tensor(DataType::kFloat32, {c}, seed++);
    Tensor m = test::random_tensor(DataType::kFloat32, {c}, seed++);
    Tensor v = test::random_tensor(DataType::kFloat32, {c}, seed++, 0.1, 2);
    const double eps = 1e-2;
    auto xv = x.to_double(), sv = s.to_double(), bv = b.to_double(), mv = m.to_double(), vv = v.to_double();
    std::vector<double> y(xv.size());
    for (size_t i = 0; i < y.size(); ++i) {
      size_t ch = size_t((int64_t(i) / inner) % c);
      y[i] = sv[ch] * (xv[i] - mv[ch]) / std::sqrt(vv[ch] + eps) + bv[ch];
    }
    auto got = test::run_op("BatchNormalization", {test::in(x), test::cin(s), test::cin(b), test::cin(m), test::cin(v)},
                            {{"epsilon", attr_f(float(eps))}});
    EXPECT_LT(test::max_rel_error(got[0], to_f32(y, d)), 1e-5);
  }
}

TEST(BatchNormCpu, TrainingModeUsesBatchStatistics) {
  Dims d{2, 3, 4, 5};
  Tensor x = test::random_tensor(DataType::kFloat32, d, 11, -2, 2);
  Tensor s = test::random_tensor(DataType::kFloat32, {3}, 12);
  Tensor b = test::random_tensor(DataType::kFloat32, {3}, 13);
  Tensor m = test::random_tensor(DataType::kFloat32, {3}, 14);
  Tensor v = test::random_tensor(DataType::kFloat32, {3}, 15, 0.5, 1.5);
  const double eps = 1e-5, mom = 0.8;
  auto xv = x.to_double();
  std::vector<double> mean(3, 0), var(3, 0), y(xv.size()), rm(3), rv(3);
  for (size_t i = 0; i < xv.size(); ++i) mean[(i / 20) % 3] += xv[i] / 40;
  for (size_t i = 0; i < xv.size(); ++i) var[(i / 20) % 3] += std::pow(xv[i] - mean[(i / 20) % 3], 2) / 40;
  for (size_t i = 0; i < xv.size(); ++i) {
    size_t ch = (i / 20) % 3;
    y[i] = s.to_double()[ch] * (xv[i] - mean[ch]) / std::sqrt(var[ch] + eps) + b.to_double()[ch];
  }
  for (size_t ch = 0; ch < 3; ++ch) {
    rm[ch] = m.to_double()[ch] * mom + mean[ch] * (1 - mom);
    rv[ch] = v.to_double()[ch] * mom + var[ch] * (1 - mom);
  }
  auto got = test::run_op("BatchNormalization", {test::in(x), test::in(s), test::in(b), test::in(m), test::in(v)},
                          {{"training_mode", attr_i(1)}, {"momentum", attr_f(float(mom))}}, 3);
  EXPECT_LT(test::max_rel_error(got[0], to_f32(y, d)), 1e-5);
  EXPECT_LT(test::max_rel_error(got[1], to_f32(rm, {3})), 1e-6);
  EXPECT_LT(test::max_rel_error(got[2], to_f32(rv, {3})), 1e-6);
}

TEST(InstanceNormCpu, MatchesReference) {
  uint32_t seed = 20;
  for (Dims d : {Dims{2, 3, 4, 5}, Dims{1, 2, 1, 3}, Dims{2, 4, 33}, Dims{1, 2, 3, 4, 5}}) {
    SCOPED_TRACE(shape_str(d));
    int64_t c = d[1], inner = inner_of(d, 2), planes = d[0] * c;
    Tensor x = test::random_tensor(DataType::kFloat32, d, seed++, -5, 5);
    Tensor s = test::random_tensor(DataType::kFloat32, {c}, seed++);
    Tensor b = test::random_tensor(DataType::kFloat32, {c}, seed++);
    auto xv = x.to_double();
    std::vector<double> y(xv.size());
    for (int64_t p = 0; p < planes; ++p) {
      double mu = 0, var = 0;
      for (int64_t i = 0; i < inner; ++i) mu += xv[size_t(p * inner + i)] / double(inner);
      for (int64_t i = 0; i < inner; ++i) var += std::pow(xv[size_t(p * inner + i)] - mu, 2) / double(inner);
      for (int64_t i = 0; i < inner; ++i)
        y[size_t(p * inner + i)] = s.to_double()[size_t(p % c)] * (xv[size_t(p * inner + i)] - mu) / std::sqrt(var + 1e-2) +
                                   b.to_double()[size_t(p % c)];
    }
    auto got = test::run_op("InstanceNormalization", {test::in(x), test::cin(s), test::cin(b)}, {{"epsilon", attr_f(1e-2f)}});
    EXPECT_LT(test::max_rel_error(got[0], to_f32(y, d)), 1e-5);
  }
}

TEST(LayerNormCpu, AllAxesWithStatistics) {
  uint32_t seed = 40;
  for (Dims d : {Dims{2, 3, 4, 5}, Dims{3, 4}, Dims{2, 3, 5}})
    for (int64_t axis = -int64_t(d.size()); axis < int64_t(d.size()); ++axis)
      for (int scale_mode = 0; scale_mode < 2; ++scale_mode) {
        SCOPED_TRACE(shape_str(d) + " axis " + std::to_string(axis) + (scale_mode ? " broadcast scale" : ""));
        size_t a = size_t(axis < 0 ? axis + int64_t(d.size()) : axis);
        Dims tail(d.begin() + long(a), d.end());
        // Broadcast form: scale covers only the last axis, bias absent.
        Dims sd = scale_mode ? Dims{tail.back()} : tail;
        Tensor x = test::random_tensor(DataType::kFloat32, d, seed++, -4, 4);
        Tensor s = test::random_tensor(DataType::kFloat32, sd, seed++);
        Tensor b = test::random_tensor(DataType::kFloat32, tail, seed++);
        int64_t cols = inner_of(d, a), rows = x.numel() / cols;
        auto xv = x.to_double(), sv = s.to_double(), bv = b.to_double();
        std::vector<double> y(xv.size()), mean(static_cast<size_t>(rows)), inv(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) {
          double mu = 0, var = 0;
          for (int64_t j = 0; j < cols; ++j) mu += xv[size_t(r * cols + j)] / double(cols);
          for (int64_t j = 0; j < cols; ++j) var += std::pow(xv[size_t(r * cols + j)] - mu, 2) / double(cols);
          mean[size_t(r)] = mu;
          inv[size_t(r)] = 1 / std::sqrt(var + 1e-5);
          for (int64_t j = 0; j < cols; ++j) {
            double sc = scale_mode ? sv[size_t(j % tail.back())] : sv[size_t(j)];
            y[size_t(r * cols + j)] = (xv[size_t(r * cols + j)] - mu) * inv[size_t(r)] * sc + (scale_mode ? 0 : bv[size_t(j)]);
          }
        }
        std::vector<test::OpInput> ins{test::in(x), test::cin(s)};
        if (!scale_mode) ins.push_back(test::cin(b));
        auto got = test::run_op("LayerNormalization", ins, {{"axis", attr_i(axis)}}, 3);
        Dims stat(d.begin(), d.begin() + long(a));
        stat.resize(d.size(), 1);
        EXPECT_LT(test::max_rel_error(got[0], to_f32(y, d)), 1e-5);
        EXPECT_LT(test::max_rel_error(got[1], to_f32(mean, stat)), 1e-5);
        EXPECT_LT(test::max_rel_error(got[2], to_f32(inv, stat)), 1e-5);
      }
}

TEST(LrnCpu, MatchesReference) {
  uint32_t seed = 60;
  for (int64_t size : {1, 2, 3, 5}) {
    SCOPED_TRACE("size " + std::to_string(size));
    Dims d{2, 6, 3, 4};
    Tensor x = test::random_tensor(DataType::kFloat32, d, seed++, -2, 2);
    const double alpha = 2e-2, beta = 0.6, bias = 1.5;
    auto xv = x.to_double();
    std::vector<double> y(xv.size());
    int64_t lo = (size - 1) / 2, hi = size - 1 - lo;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t c = 0; c < 6; ++c)
        for (int64_t i = 0; i < 12; ++i) {
          double sq = 0;
          for (int64_t q = std::max<int64_t>(0, c - lo); q <= std::min<int64_t>(5, c + hi); ++q)
            sq += std::pow(xv[size_t((n * 6 + q) * 12 + i)], 2);
          size_t at = size_t((n * 6 + c) * 12 + i);
          y[at] = xv[at] / std::pow(bias + alpha / double(size) * sq, beta);
        }
    auto got = test::run_op("LRN", {test::in(x)},
                            {{"size", attr_i(size)}, {"alpha", attr_f(float(alpha))}, {"beta", attr_f(float(beta))},
                             {"bias", attr_f(float(bias))}});
    EXPECT_LT(test::max_rel_error(got[0], to_f32(y, d)), 1e-5);
  }
}

TEST(MvnCpu, DefaultAndCustomAxes) {
  Dims d{3, 2, 4, 5};
  Tensor x = test::random_tensor(DataType::kFloat32, d, 80, -3, 3);
  auto xv = x.to_double();
  for (Dims axes : {Dims{0, 2, 3}, Dims{-1}, Dims{1, 2}}) {
    SCOPED_TRACE(shape_str(axes));
    std::vector<bool> red(4, false);
    for (int64_t a : axes) red[size_t(a < 0 ? a + 4 : a)] = true;
    auto key = [&](size_t e) {
      int64_t idx[4], rem = int64_t(e), k = 0;
      for (int i = 3; i >= 0; --i) idx[i] = rem % d[size_t(i)], rem /= d[size_t(i)];
      for (int i = 0; i < 4; ++i)
        if (!red[size_t(i)]) k = k * d[size_t(i)] + idx[i];
      return size_t(k);
    };
    std::vector<double> sum(200, 0), cnt(200, 0), var(200, 0), y(xv.size());
    for (size_t e = 0; e < xv.size(); ++e) sum[key(e)] += xv[e], cnt[key(e)] += 1;
    for (size_t e = 0; e < xv.size(); ++e) var[key(e)] += std::pow(xv[e] - sum[key(e)] / cnt[key(e)], 2);
    for (size_t e = 0; e < xv.size(); ++e)
      y[e] = (xv[e] - sum[key(e)] / cnt[key(e)]) / (std::sqrt(var[key(e)] / cnt[key(e)]) + 1e-9);
    std::map<std::string, ir::Attribute> attrs;
    if (axes != Dims{0, 2, 3}) attrs["axes"] = attr_ints(axes);
    auto got = test::run_op("MeanVarianceNormalization", {test::in(x)}, attrs);
    EXPECT_LT(test::max_rel_error(got[0], to_f32(y, d)), 1e-4);
  }
}

ErrorCode error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::kInternal;
}

TEST(NormCpu, RejectsBadInputs) {
  Tensor x(DataType::kFloat32, {2, 3, 4}), v3(DataType::kFloat32, {3}), v4(DataType::kFloat32, {4});
  EXPECT_EQ(error_of([&] {
              test::run_op("BatchNormalization", {test::in(x), test::in(v4), test::in(v3), test::in(v3), test::in(v3)});
            }), ErrorCode::kBadInput);
  EXPECT_EQ(error_of([&] { test::run_op("InstanceNormalization", {test::in(x), test::in(v3), test::in(v4)}); }),
            ErrorCode::kBadInput);
  EXPECT_EQ(error_of([&] { test::run_op("LayerNormalization", {test::in(x), test::in(v3)}); }), ErrorCode::kBadInput);
  EXPECT_EQ(error_of([&] { test::run_op("LayerNormalization", {test::in(x), test::in(v4)}, {{"axis", attr_i(3)}}); }),
            ErrorCode::kBadInput);
  EXPECT_EQ(error_of([&] { test::run_op("LRN", {test::in(x)}); }), ErrorCode::kBadInput);  // size required
  Tensor xi(DataType::kInt32, {2, 3, 4});
  EXPECT_EQ(error_of([&] { test::run_op("InstanceNormalization", {test::in(xi), test::in(v3), test::in(v3)}); }),
            ErrorCode::kUnsupported);
}

}  // namespace
}  // namespace kiln
