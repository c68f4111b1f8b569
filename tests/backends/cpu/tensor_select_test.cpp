// ScatterND, ScatterElements, TopK, Trilu and OneHot against references
// written here (sequential scatter loops, full sorts, explicit band tests).
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <numeric>

#include "kiln/error.h"
#include "support/op_test.h"

using namespace kiln;
using namespace kiln::test;
using ir::Dims;
using ir::Tensor;

namespace {

Tensor ints(std::vector<int64_t> v) { return Tensor::from_int64(v, {int64_t(v.size())}); }


double apply(const std::string& red, double a, double b) {
  if (red == "add") return a + b;
  if (red == "mul") return a * b;
  if (red == "max") return std::max(a, b);
  if (red == "min") return std::min(a, b);
  return b;
}

}  // namespace

TEST(TensorSelectOps, ScatterNDWithReductions) {
  Tensor data = random_tensor(DataType::kFloat32, {4, 3, 2}, 1, -2, 2);
  Tensor idx = Tensor::from_int64({0, 1, -1, 0, 0, 1, 2, -3}, {4, 2});  // rows of 2 repeated: (0,1) twice
  Tensor upd = random_tensor(DataType::kFloat32, {4, 2}, 2, -2, 2);
  for (const std::string red : {"none", "add", "mul", "max", "min"}) {
    std::vector<double> want = data.to_double();
    auto u = upd.to_double();
    for (int t = 0; t < 4; ++t) {
      int64_t a = idx.data<int64_t>()[2 * t], b = idx.data<int64_t>()[2 * t + 1];
      a = a < 0 ? a + 4 : a;
      b = b < 0 ? b + 3 : b;
      for (int k = 0; k < 2; ++k) {
        double& w = want[size_t((a * 3 + b) * 2 + k)];
        w = apply(red, w, u[size_t(t * 2 + k)]);
      }
    }
    auto out = run_op("ScatterND", {in(data), in(idx), in(upd)}, {{"reduction", attr_s(red)}});
    auto got = out[0].to_double();
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-6) << red << " at " << i;
  }
  Tensor bad = Tensor::from_int64({4, 0}, {1, 2});
  Tensor one = random_tensor(DataType::kFloat32, {1, 2}, 3);
  EXPECT_EQ(code_of([&] { run_op("ScatterND", {in(data), in(bad), in(one)}); }), ErrorCode::kBadInput);
}

TEST(TensorSelectOps, ScatterElementsAlongAxis) {
  Tensor data = random_tensor(DataType::kInt32, {3, 5}, 4, -50, 50);
  Tensor idx = Tensor::from_int64({1, -1, 1, 0, 4, 2}, {2, 3});
  Tensor upd = random_tensor(DataType::kInt32, {2, 3}, 5, -50, 50);
  for (const std::string red : {"none", "add", "max"}) {
    for (int64_t axis : {1, -2}) {
      const int64_t a = axis < 0 ? axis + 2 : axis, dim = a == 0 ? 3 : 5;
      if (a == 0 && red == "none") continue;  // index 4 is out of range on axis 0; checked below
      std::vector<double> want = data.to_double();
      auto u = upd.to_double();
      bool ok = true;
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 3; ++j) {
          int64_t v = idx.data<int64_t>()[i * 3 + j];
          if (v >= dim) ok = false;
          v = v < 0 ? v + dim : v;
          const int64_t pos = a == 1 ? i * 5 + v : v * 5 + j;
          if (ok) want[size_t(pos)] = apply(red, want[size_t(pos)], u[size_t(i * 3 + j)]);
        }
      if (!ok) {
        EXPECT_EQ(code_of([&] { run_op("ScatterElements", {in(data), in(idx), in(upd)}, {{"axis", attr_i(axis)}}); }),
                  ErrorCode::kBadInput);
        continue;
      }
      auto out = run_op("ScatterElements", {in(data), in(idx), in(upd)},
                        {{"axis", attr_i(axis)}, {"reduction", attr_s(red)}});
      EXPECT_EQ(out[0].to_double(), want) << red << " axis " << axis;
    }
  }
}

TEST(TensorSelectOps, TopKOrdersAndBreaksTiesByIndex) {
  const Dims dims = {3, 9, 4};
  for (DataType dt : {DataType::kFloat32, DataType::kInt32, DataType::kFloat16, DataType::kInt8}) {
    Tensor x = random_tensor(dt, dims, 6, -4, 4);  // few distinct values: many ties
    for (int64_t largest : {1, 0}) {
      for (int64_t k : {0, 1, 5, 9}) {
        auto out = run_op("TopK", {in(x), cin(ints({k}))}, {{"axis", attr_i(-2)}, {"largest", attr_i(largest)}}, 2);
        ASSERT_EQ(out[0].dims(), (Dims{3, k, 4}));
        ASSERT_EQ(out[1].dtype(), DataType::kInt64);
        auto xv = x.to_double(), vals = out[0].to_double();
        auto idx = out[1].to_int64();
        for (int64_t o = 0; o < 3; ++o)
          for (int64_t i = 0; i < 4; ++i) {
            std::vector<int64_t> order(9);
            std::iota(order.begin(), order.end(), 0);
            auto v = [&](int64_t j) { return xv[size_t((o * 9 + j) * 4 + i)]; };
            std::stable_sort(order.begin(), order.end(),
                             [&](int64_t p, int64_t q) { return largest ? v(p) > v(q) : v(p) < v(q); });
            for (int64_t j = 0; j < k; ++j) {
              const size_t at = size_t((o * k + j) * 4 + i);
              ASSERT_EQ(idx[at], order[size_t(j)]) << "row " << o << "," << i << " rank " << j;
              ASSERT_EQ(vals[at], v(order[size_t(j)]));
            }
          }
      }
    }
  }
  Tensor x = random_tensor(DataType::kFloat32, {4}, 7);
  EXPECT_EQ(code_of([&] { run_op("TopK", {in(x), cin(ints({5}))}, {}, 2); }), ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("TopK", {in(x), in(ints({2}))}, {}, 2); }), ErrorCode::kUnsupported);
}

TEST(TensorSelectOps, TriluKeepsTheBand) {
  Tensor x = random_tensor(DataType::kInt64, {2, 4, 5}, 8, -100, 100);
  for (int64_t upper : {1, 0}) {
    for (int64_t k : {0, 1, -1, 2, -3, 6, -7, 100}) {
      auto out = run_op("Trilu", {in(x), in(Tensor::from_int64({k}, {}))}, {{"upper", attr_i(upper)}});
      auto xv = x.to_double(), yv = out[0].to_double();
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t i = 0; i < 4; ++i)
          for (int64_t j = 0; j < 5; ++j) {
            const bool keep = upper ? j >= i + k : j <= i + k;
            const size_t f = size_t((b * 4 + i) * 5 + j);
            ASSERT_EQ(yv[f], keep ? xv[f] : 0.0) << "upper=" << upper << " k=" << k;
          }
    }
  }
  Tensor e(DataType::kFloat16, {3, 0, 5});
  EXPECT_EQ(run_op("Trilu", {in(e)})[0].dims(), (Dims{3, 0, 5}));
  Tensor v = random_tensor(DataType::kFloat32, {5}, 9);
  EXPECT_EQ(code_of([&] { run_op("Trilu", {in(v)}); }), ErrorCode::kBadInput);
}

TEST(TensorSelectOps, OneHotWithAxisAndNegativeIndices) {
  Tensor idx = Tensor::from_int64({0, -1, 7, 3, -8, 2}, {2, 3});  // 7 and -8 are out of range for depth 5
  Tensor vals = Tensor::from_float({-1.f, 4.f}, {2});
  for (int64_t axis : {-1, 0, 1, -2}) {
    auto out = run_op("OneHot", {in(idx), cin(Tensor::from_int64({5}, {})), in(vals)}, {{"axis", attr_i(axis)}});
    const int64_t a = axis < 0 ? axis + 3 : axis;
    Dims want = {2, 3};
    want.insert(want.begin() + a, 5);
    ASSERT_EQ(out[0].dims(), want);
    auto y = out[0].to_double();
    for (int64_t f = 0; f < out[0].numel(); ++f) {
      int64_t r = f;
      std::vector<int64_t> o(3);
      for (int d = 2; d >= 0; --d) {
        o[size_t(d)] = r % want[size_t(d)];
        r /= want[size_t(d)];
      }
      const int64_t depth_i = o[size_t(a)];
      o.erase(o.begin() + a);
      int64_t v = idx.data<int64_t>()[o[0] * 3 + o[1]];
      if (v < 0) v += 5;
      ASSERT_EQ(y[size_t(f)], v == depth_i ? 4.0 : -1.0) << "axis " << axis << " at " << f;
    }
  }
}
