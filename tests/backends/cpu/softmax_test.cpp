// Softmax / LogSoftmax / Hardmax against float64 references along one axis.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "backends/cpu/eltwise_util.h"
#include "kiln/error.h"
#include "support/op_test.h"

using namespace kiln;
using namespace kiln::test;
using ir::Dims;
using ir::Tensor;

namespace {

enum class Mode { kSoft, kLog, kHard };

// Reference over [O, A, I] in float64.
Tensor reference(const Tensor& x, int64_t axis, Mode mode) {
  const Dims& d = x.dims();
  int64_t O = 1, A = d[size_t(axis)], I = 1;
  for (int64_t k = 0; k < axis; ++k) O *= d[size_t(k)];
  for (size_t k = size_t(axis) + 1; k < d.size(); ++k) I *= d[k];
  std::vector<double> v = x.to_double();
  Tensor y(DataType::kFloat32, d);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < I; ++i) {
      auto at = [&](int64_t a) { return size_t((o * A + a) * I + i); };
      double m = -std::numeric_limits<double>::infinity();
      int64_t best = 0;
      for (int64_t a = 0; a < A; ++a)
        if (v[at(a)] > m) m = v[at(a)], best = a;
      double s = 0;
      for (int64_t a = 0; a < A; ++a) s += std::exp(v[at(a)] - m);
      for (int64_t a = 0; a < A; ++a) {
        double r = mode == Mode::kSoft ? std::exp(v[at(a)] - m) / s
                   : mode == Mode::kLog ? v[at(a)] - m - std::log(s)
                                        : double(a == best);
        y.data<float>()[at(a)] = float(r);
      }
    }
  return y;
}

}  // namespace

TEST(SoftmaxKernels, AllAxesMatchReference) {
  const std::pair<const char*, Mode> ops[] = {{"Softmax", Mode::kSoft}, {"LogSoftmax", Mode::kLog}, {"Hardmax", Mode::kHard}};
  uint32_t seed = 1;
  for (int wide : {0, 1})  // AVX2 and (where the CPU has it) AVX-512 rows
  for (auto& [op, mode] : ops)
    for (Dims dims : {Dims{3, 4, 5}, Dims{2, 300, 7}, Dims{128, 1000}, Dims{4, 1000, 300}, Dims{1, 3}})
      for (int64_t axis = -1; axis < int64_t(dims.size()); ++axis) {
        Tensor x = random_tensor(DataType::kFloat32, dims, seed++, -8, 8);
        cpu::ew::wide_override() = wide;
        std::string tactic;
        Tensor y = run_op(op, {in(x)}, {{"axis", ir::Attribute(attr_i(axis))}}, 1, &tactic)[0];
        int64_t a = axis < 0 ? axis + int64_t(dims.size()) : axis;
        EXPECT_LT(max_rel_error(y, reference(x, a, mode)), 2e-6) << op << shape_str(dims) << " axis " << axis;
        EXPECT_EQ(tactic, a == int64_t(dims.size()) - 1 ? "cpu.softmax.rows" : "cpu.softmax.columns");
      }
  cpu::ew::wide_override() = -1;
}

TEST(SoftmaxKernels, NaNRowStaysNaN) {
  for (int wide : {0, 1}) {
    cpu::ew::wide_override() = wide;
    std::vector<float> v(40, 1.0f);
    v[3] = std::nanf("");
    Tensor x = Tensor::from_float(v, {2, 20});
    for (const char* op : {"Softmax", "LogSoftmax"}) {
      Tensor y = run_op(op, {in(x)})[0];
      for (int i = 0; i < 20; ++i) EXPECT_TRUE(std::isnan(y.data<float>()[i])) << op << " wide " << wide;
      for (int i = 20; i < 40; ++i) EXPECT_FALSE(std::isnan(y.data<float>()[i])) << op;
    }
  }
  cpu::ew::wide_override() = -1;
}

TEST(SoftmaxKernels, DefaultAxisIsLastAndLargeValuesAreStable) {
  std::vector<float> v = {0, 1, 2, 3, 10000, 10001, 10002, 10003};
  Tensor x = Tensor::from_float(v, {2, 4});
  Tensor y = run_op("Softmax", {in(x)})[0];
  Tensor l = run_op("LogSoftmax", {in(x)})[0];
  EXPECT_LT(max_rel_error(y, reference(x, 1, Mode::kSoft)), 1e-6);
  EXPECT_LT(max_rel_error(l, reference(x, 1, Mode::kLog)), 1e-6);
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(std::isfinite(y.data<float>()[i]) && std::isfinite(l.data<float>()[i]));
}

TEST(SoftmaxKernels, HardmaxTiesPickFirst) {
  Tensor x = Tensor::from_float({3, 7, 7, 1, 2, 2, 2, 2}, {2, 4});
  Tensor y = run_op("Hardmax", {in(x)})[0];
  std::vector<double> want = {0, 1, 0, 0, 1, 0, 0, 0};
  EXPECT_EQ(y.to_double(), want);
}

TEST(SoftmaxKernels, Fp16EmptyAndErrors) {
  Tensor h = random_tensor(DataType::kFloat16, {3, 50}, 4, -4, 4);
  Tensor y = run_op("Softmax", {in(h)})[0];
  ASSERT_EQ(y.dtype(), DataType::kFloat16);
  Tensor want = reference(h, 1, Mode::kSoft);
  for (int64_t i = 0; i < y.numel(); ++i)
    EXPECT_NEAR(half_to_float(y.data<uint16_t>()[i]), want.data<float>()[i], 1e-3 * want.data<float>()[i] + 1e-6);
  Tensor e(DataType::kFloat32, {0, 5});
  EXPECT_EQ(run_op("Softmax", {in(e)})[0].dims(), (Dims{0, 5}));
  Tensor f = random_tensor(DataType::kFloat32, {2, 3}, 1);
  EXPECT_THROW(run_op("Softmax", {in(f)}, {{"axis", attr_i(2)}}), Error);
  EXPECT_THROW(run_op("LogSoftmax", {in(random_tensor(DataType::kInt32, {2, 3}, 1))}), Error);
}
