// Reduce* and ArgMax/ArgMin against float64 / exact references that bucket
// every input element into its output position.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "kiln/error.h"
#include "support/op_test.h"

using namespace kiln;
using namespace kiln::test;
using ir::Dims;
using ir::Tensor;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
using Fold = std::function<double(const std::vector<double>&)>;

Tensor make(DataType dt, ir::Dims dims, const std::vector<double>& v) {
  return test::tensor_of(dt, std::move(dims), v);
}

Tensor axes_tensor(const std::vector<int64_t>& a) { return Tensor::from_int64(a, {int64_t(a.size())}); }

// Groups input values by output position (axes already non-negative).
Tensor reduce_ref(const Tensor& x, const std::vector<int64_t>& axes, bool keep, DataType dt, const Fold& f) {
  const Dims& d = x.dims();
  Dims out, kept_out;
  for (int64_t i = 0; i < int64_t(d.size()); ++i) {
    bool red = std::count(axes.begin(), axes.end(), i) > 0;
    if (!red) out.push_back(d[size_t(i)]), kept_out.push_back(d[size_t(i)]);
    else if (keep) out.push_back(1);
  }
  std::vector<std::vector<double>> buckets(size_t(ir::numel_of(kept_out)));
  std::vector<double> v = x.to_double();
  for (int64_t flat = 0; flat < x.numel(); ++flat) {
    int64_t rem = flat, o = 0, stride = 1;
    for (int64_t ax = int64_t(d.size()) - 1; ax >= 0; --ax) {
      int64_t c = rem % d[size_t(ax)];
      rem /= d[size_t(ax)];
      if (!std::count(axes.begin(), axes.end(), ax)) o += c * stride, stride *= d[size_t(ax)];
    }
    buckets[size_t(o)].push_back(v[size_t(flat)]);
  }
  std::vector<double> res;
  for (auto& b : buckets) res.push_back(f(b));
  return make(dt, out, res);
}

double sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

std::vector<std::pair<const char*, Fold>> folds() {
  return {
      {"ReduceSum", sum},
      {"ReduceMean", [](auto& v) { return sum(v) / double(v.size()); }},
      {"ReduceMax", [](auto& v) { return *std::max_element(v.begin(), v.end()); }},
      {"ReduceMin", [](auto& v) { return *std::min_element(v.begin(), v.end()); }},
      {"ReduceProd", [](auto& v) { double p = 1; for (double x : v) p *= x; return p; }},
      {"ReduceL1", [](auto& v) { double s = 0; for (double x : v) s += std::fabs(x); return s; }},
      {"ReduceL2", [](auto& v) { double s = 0; for (double x : v) s += x * x; return std::sqrt(s); }},
      {"ReduceSumSquare", [](auto& v) { double s = 0; for (double x : v) s += x * x; return s; }},
      {"ReduceLogSum", [](auto& v) { return std::log(sum(v)); }},
      {"ReduceLogSumExp", [](auto& v) { double s = 0; for (double x : v) s += std::exp(x); return std::log(s); }},
  };
}

}  // namespace

TEST(ReduceKernels, Fp32AllOpsAxesAndKeepdims) {
  const std::vector<std::vector<int64_t>> axes_sets = {{0}, {-1}, {1, 2}, {0, 2}, {0, 3}, {1, 3}, {0, 1, 2, 3}, {2}};
  uint32_t seed = 1;
  for (auto& [op, f] : folds()) {
    const bool positive = std::string(op) == "ReduceLogSum";  // log of a sum needs positive data
    for (auto& axes : axes_sets)
      for (int keep : {0, 1}) {
        Tensor x = random_tensor(DataType::kFloat32, {2, 3, 4, 5}, seed++, positive ? 0.1 : -1.5, 1.5);
        std::vector<int64_t> norm = axes;
        for (auto& a : norm) a = a < 0 ? a + 4 : a;
        Tensor got = run_op(op, {in(x), cin(axes_tensor(axes))}, {{"keepdims", attr_i(keep)}})[0];
        Tensor want = reduce_ref(x, norm, keep, DataType::kFloat32, f);
        EXPECT_LT(max_rel_error(got, want), 2e-6) << op << " axes " << shape_str(axes) << " keepdims " << keep;
      }
  }
}

TEST(ReduceKernels, LargeRowsAndColumnsThreaded) {
  Tensor rows = random_tensor(DataType::kFloat32, {64, 5001}, 3, -1, 1);
  Tensor cols = random_tensor(DataType::kFloat32, {3001, 70}, 4, -1, 1);
  for (auto& [op, f] : folds()) {
    if (std::string(op) == "ReduceProd" || std::string(op) == "ReduceLogSum") continue;  // under/overflow
    std::string tactic;
    Tensor r = run_op(op, {in(rows), cin(axes_tensor({1}))}, {}, 1, &tactic)[0];
    EXPECT_EQ(tactic, "cpu.reduce.rows");
    EXPECT_LT(max_rel_error(r, reduce_ref(rows, {1}, true, DataType::kFloat32, f)), 2e-5) << op;
    Tensor c = run_op(op, {in(cols), cin(axes_tensor({0}))}, {{"keepdims", attr_i(0)}}, 1, &tactic)[0];
    EXPECT_EQ(tactic, "cpu.reduce.columns");
    EXPECT_LT(max_rel_error(c, reduce_ref(cols, {0}, false, DataType::kFloat32, f)), 2e-5) << op;
  }
}

TEST(ReduceKernels, DefaultAndEmptyAxes) {
  Tensor x = random_tensor(DataType::kFloat32, {3, 2, 2}, 5);
  Tensor all = reduce_ref(x, {0, 1, 2}, true, DataType::kFloat32, sum);
  EXPECT_LT(max_rel_error(run_op("ReduceSum", {in(x)})[0], all), 1e-6);  // axes omitted: all
  Tensor empty_axes = Tensor::from_int64({}, {0});
  // An empty axes input needs no values, so it may be a runtime input.
  EXPECT_LT(max_rel_error(run_op("ReduceSum", {in(x), in(empty_axes)})[0], all), 1e-6);
  Tensor noop = run_op("ReduceSum", {in(x), in(empty_axes)}, {{"noop_with_empty_axes", attr_i(1)}})[0];
  EXPECT_EQ(max_rel_error(noop, x), 0.0);
  Tensor flat = run_op("ReduceMax", {in(x)}, {{"keepdims", attr_i(0)}})[0];
  EXPECT_EQ(flat.dims(), Dims{});
  // Rank-0 input: reducing nothing returns the value.
  Tensor s = make(DataType::kFloat32, {}, {2.5});
  EXPECT_EQ(run_op("ReduceL2", {in(s)})[0].data<float>()[0], 2.5f);
}

TEST(ReduceKernels, EmptySetValues) {
  Tensor x(DataType::kFloat32, {2, 0, 4});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::map<std::string, double> want = {
      {"ReduceSum", 0}, {"ReduceProd", 1}, {"ReduceMax", -kInf}, {"ReduceMin", kInf}, {"ReduceL1", 0},
      {"ReduceL2", 0}, {"ReduceSumSquare", 0}, {"ReduceLogSum", -kInf}, {"ReduceLogSumExp", -kInf}, {"ReduceMean", nan}};
  for (auto& [op, v] : want) {
    Tensor y = run_op(op, {in(x), cin(axes_tensor({1}))})[0];
    ASSERT_EQ(y.dims(), (Dims{2, 1, 4})) << op;
    for (int64_t i = 0; i < y.numel(); ++i) {
      if (std::isnan(v)) EXPECT_TRUE(std::isnan(y.data<float>()[i])) << op;
      else EXPECT_EQ(y.data<float>()[i], float(v)) << op;
    }
  }
  // A zero-sized kept axis gives an empty output.
  EXPECT_EQ(run_op("ReduceSum", {in(x), cin(axes_tensor({2}))})[0].dims(), (Dims{2, 0, 1}));
}

TEST(ReduceKernels, IntegersAreExact) {
  for (DataType dt : {DataType::kInt64, DataType::kInt32, DataType::kInt8, DataType::kUInt8}) {
    const bool u8 = dt == DataType::kUInt8;
    Tensor x = random_tensor(dt, {3, 4, 5}, 7, u8 ? 0 : -9, 9);
    for (auto& [op, f] : folds()) {
      std::string o = op;
      if (o == "ReduceLogSum" || o == "ReduceLogSumExp" || o == "ReduceL2") continue;
      if ((dt == DataType::kInt8 || u8) && (o == "ReduceProd" || o == "ReduceSumSquare" || o == "ReduceSum" || o == "ReduceL1"))
        continue;  // 8-bit results would wrap; covered for wider types
      for (auto axes : std::vector<std::vector<int64_t>>{{1}, {0, 2}, {2}}) {
        Tensor got = run_op(op, {in(x), cin(axes_tensor(axes))})[0];
        Fold g = f;
        if (o == "ReduceMean") g = [](auto& v) { return double(int64_t(sum(v)) / int64_t(v.size())); };  // truncates
        Tensor want = reduce_ref(x, axes, true, dt, g);
        EXPECT_EQ(got.to_int64(), want.to_int64()) << op << " " << dtype_name(dt) << shape_str(axes);
      }
    }
  }
  Tensor big = Tensor::from_int64({int64_t(1) << 40, 3, -(int64_t(1) << 40) + 1}, {3});
  EXPECT_EQ(run_op("ReduceSum", {in(big)}, {{"keepdims", attr_i(0)}})[0].to_int64()[0], 4);
  Tensor b = make(DataType::kBool, {4, 2}, {1, 1, 1, 0, 0, 1, 0, 0});
  EXPECT_EQ(run_op("ReduceMax", {in(b), cin(axes_tensor({1}))})[0].to_int64(), (std::vector<int64_t>{1, 1, 1, 0}));
  EXPECT_EQ(run_op("ReduceMin", {in(b), cin(axes_tensor({1}))})[0].to_int64(), (std::vector<int64_t>{1, 0, 0, 0}));
}

TEST(ReduceKernels, Fp16AndNaN) {
  Tensor h = random_tensor(DataType::kFloat16, {4, 33}, 9);
  Tensor y = run_op("ReduceMean", {in(h), cin(axes_tensor({1}))})[0];
  ASSERT_EQ(y.dtype(), DataType::kFloat16);
  Tensor want = reduce_ref(h, {1}, true, DataType::kFloat16, [](auto& v) { return sum(v) / double(v.size()); });
  EXPECT_LT(max_rel_error(y, want), 1e-3);
  Tensor x = make(DataType::kFloat32, {2, 3}, {1, std::nan(""), 3, 4, 5, 6});
  Tensor m = run_op("ReduceMax", {in(x), cin(axes_tensor({1}))})[0];
  EXPECT_TRUE(std::isnan(m.data<float>()[0]));
  EXPECT_EQ(m.data<float>()[1], 6.0f);
}

TEST(ReduceKernels, RejectsBadAxes) {
  Tensor x = random_tensor(DataType::kFloat32, {2, 3}, 1);
  try {
    run_op("ReduceSum", {in(x), in(axes_tensor({1}))});  // runtime axes
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("input 'in1' must be a constant (kiln needs static shapes)"), std::string::npos)
        << e.what();
  }
  auto code = [&](std::vector<int64_t> axes) {
    try {
      run_op("ReduceMean", {in(x), cin(axes_tensor(axes))});
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::kInternal;
  };
  EXPECT_EQ(code({2}), ErrorCode::kBadInput);
  EXPECT_EQ(code({-3}), ErrorCode::kBadInput);
  EXPECT_EQ(code({1, -1}), ErrorCode::kBadInput);
  EXPECT_THROW(run_op("ArgMax", {in(x)}, {{"axis", attr_i(2)}}), Error);
  EXPECT_THROW(run_op("ArgMax", {in(Tensor(DataType::kFloat32, {0, 3}))}), Error);
}

TEST(ArgKernels, MatchReferenceWithTiesAndOptions) {
  for (DataType dt : {DataType::kFloat32, DataType::kInt32, DataType::kInt64, DataType::kUInt8, DataType::kFloat16}) {
    Tensor x = random_tensor(dt, {3, 4, 5}, 11, 0, 4);  // small range: many ties
    for (int64_t axis : {0, 1, 2, -1})
      for (int keep : {0, 1})
        for (int last : {0, 1})
          for (bool is_max : {true, false}) {
            int64_t a = axis < 0 ? axis + 3 : axis;
            Tensor got = run_op(is_max ? "ArgMax" : "ArgMin", {in(x)},
                                {{"axis", attr_i(axis)}, {"keepdims", attr_i(keep)}, {"select_last_index", attr_i(last)}})[0];
            ASSERT_EQ(got.dtype(), DataType::kInt64);
            // Reference: scan positions along the axis in order.
            Tensor idx = reduce_ref(x, {a}, keep, DataType::kInt64, [&](auto& v) {
              size_t best = 0;
              for (size_t i = 1; i < v.size(); ++i) {
                bool better = is_max ? v[i] > v[best] : v[i] < v[best];
                if (better || (last && v[i] == v[best])) best = i;
              }
              return double(best);
            });
            EXPECT_EQ(got.to_int64(), idx.to_int64()) << dtype_name(dt) << " axis " << axis << " keep " << keep
                                                      << " last " << last << " max " << is_max;
          }
  }
  // numpy semantics: the first NaN wins.
  Tensor n = make(DataType::kFloat32, {5}, {1, std::nan(""), 7, std::nan(""), 2});
  EXPECT_EQ(run_op("ArgMax", {in(n)})[0].to_int64()[0], 1);
  EXPECT_EQ(run_op("ArgMin", {in(n)})[0].to_int64()[0], 1);
}
