// Unary element-wise kernels against float64 references written here.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "backends/cpu/eltwise_util.h"
#include "kiln/error.h"
#include "support/op_test.h"

using namespace kiln;
using namespace kiln::test;
using ir::Tensor;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor make(DataType dt, ir::Dims dims, const std::vector<double>& v) {
  return test::tensor_of(dt, std::move(dims), v);
}

// Applies a float64 reference to every element of x; result has dtype `dt`.
Tensor reference(const Tensor& x, DataType dt, const std::function<double(double)>& f) {
  std::vector<double> in = x.to_double(), out(in.size());
  for (size_t i = 0; i < in.size(); ++i) out[i] = f(in[i]);
  return make(dt, x.dims(), out);
}

struct Case {
  const char* op;
  std::map<std::string, ir::Attribute> attrs;
  std::function<double(double)> ref;
  double lo, hi;
};

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double softplus(double x) { return std::log1p(std::exp(x)); }

std::vector<Case> float_cases() {
  const double kPi = 3.14159265358979323846;
  return {
      {"Relu", {}, [](double x) { return x < 0 ? 0.0 : x; }, -3, 3},
      {"LeakyRelu", {{"alpha", attr_f(0.1f)}}, [](double x) { return x < 0 ? double(0.1f) * x : x; }, -3, 3},
      {"LeakyRelu", {}, [](double x) { return x < 0 ? double(0.01f) * x : x; }, -3, 3},
      {"Sigmoid", {}, sigmoid, -20, 20},
      {"HardSigmoid", {{"alpha", attr_f(0.5f)}, {"beta", attr_f(0.6f)}},
       [](double x) { return std::min(1.0, std::max(0.0, 0.5 * x + double(0.6f))); }, -3, 3},
      {"HardSwish", {}, [](double x) { return x * std::min(1.0, std::max(0.0, x / 6 + 0.5)); }, -5, 5},
      {"Tanh", {}, [](double x) { return std::tanh(x); }, -6, 6},
      {"Exp", {}, [](double x) { return std::exp(x); }, -80, 80},
      {"Log", {}, [](double x) { return std::log(x); }, 0.001, 100},
      {"Sqrt", {}, [](double x) { return std::sqrt(x); }, 0, 100},
      {"Reciprocal", {}, [](double x) { return 1 / x; }, 0.5, 4},
      {"Neg", {}, [](double x) { return -x; }, -3, 3},
      {"Abs", {}, [](double x) { return std::fabs(x); }, -3, 3},
      {"Floor", {}, [](double x) { return std::floor(x); }, -10, 10},
      {"Ceil", {}, [](double x) { return std::ceil(x); }, -10, 10},
      {"Round", {}, [](double x) { return std::nearbyint(x); }, -10, 10},
      {"Sign", {}, [](double x) { return double((x > 0) - (x < 0)); }, -3, 3},
      {"Erf", {}, [](double x) { return std::erf(x); }, -3, 3},
      {"Softplus", {}, softplus, -20, 20},
      {"Softsign", {}, [](double x) { return x / (1 + std::fabs(x)); }, -5, 5},
      {"Elu", {{"alpha", attr_f(2.0f)}}, [](double x) { return x < 0 ? 2.0 * std::expm1(x) : x; }, -4, 4},
      {"Selu", {}, [](double x) {
         const double a = 1.67326319217681884765625, g = 1.05070102214813232421875;
         return x > 0 ? g * x : g * a * std::expm1(x);
       }, -4, 4},
      {"Celu", {{"alpha", attr_f(2.0f)}}, [](double x) { return x < 0 ? 2.0 * std::expm1(x / 2) : x; }, -4, 4},
      {"ThresholdedRelu", {{"alpha", attr_f(0.5f)}}, [](double x) { return x > 0.5 ? x : 0.0; }, -2, 2},
      {"Mish", {}, [](double x) { return x * std::tanh(softplus(x)); }, -10, 10},
      {"Gelu", {}, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, -5, 5},
      {"Gelu", {{"approximate", attr_s("tanh")}}, [kPi](double x) {
         return 0.5 * x * (1 + std::tanh(std::sqrt(2 / kPi) * (x + 0.044715 * x * x * x)));
       }, -5, 5},
      {"Swish", {{"alpha", attr_f(0.5f)}}, [](double x) { return x * sigmoid(0.5 * x); }, -10, 10},
      {"Shrink", {{"lambd", attr_f(1.5f)}, {"bias", attr_f(0.5f)}},
       [](double x) { return x < -1.5 ? x + 0.5 : (x > 1.5 ? x - 0.5 : 0.0); }, -3, 3},
      {"Shrink", {}, [](double x) { return x < -0.5 ? x : (x > 0.5 ? x : 0.0); }, -3, 3},
      {"Sin", {}, [](double x) { return std::sin(x); }, -6, 6},
      {"Cos", {}, [](double x) { return std::cos(x); }, -6, 6},
      {"Tan", {}, [](double x) { return std::tan(x); }, -1.2, 1.2},
      {"Asin", {}, [](double x) { return std::asin(x); }, -1, 1},
      {"Acos", {}, [](double x) { return std::acos(x); }, -1, 1},
      {"Atan", {}, [](double x) { return std::atan(x); }, -10, 10},
      {"Sinh", {}, [](double x) { return std::sinh(x); }, -5, 5},
      {"Cosh", {}, [](double x) { return std::cosh(x); }, -5, 5},
      {"Asinh", {}, [](double x) { return std::asinh(x); }, -10, 10},
      {"Acosh", {}, [](double x) { return std::acosh(x); }, 1, 10},
      {"Atanh", {}, [](double x) { return std::atanh(x); }, -0.99, 0.99},
  };
}

}  // namespace

TEST(UnaryKernels, Fp32MatchesFloat64Reference) {
  uint32_t seed = 1;
  // Both vector paths (AVX2 and, where the CPU has it, AVX-512) are checked.
  for (int wide : {0, 1})
  for (const Case& c : float_cases()) {
    cpu::ew::wide_override() = wide;
    for (ir::Dims dims : {ir::Dims{3, 4, 5}, ir::Dims{70001}}) {  // small and multi-threaded
      Tensor x = random_tensor(DataType::kFloat32, dims, seed++, c.lo, c.hi);
      Tensor got = run_op(c.op, {in(x)}, c.attrs)[0];
      Tensor want = reference(x, DataType::kFloat32, c.ref);
      EXPECT_LT(max_rel_error(got, want), 2e-6) << c.op << " on " << shape_str(dims) << " wide " << wide;
    }
  }
  cpu::ew::wide_override() = -1;
}

TEST(UnaryKernels, SmallArgumentsKeepRelativeAccuracy) {
  // Near zero, tanh/expm1-style ops must not lose digits to cancellation.
  std::vector<double> v = {1e-7, -3e-6, 2e-4, -0.01, 0.1, -0.29, 0.31, 0.9, -1.1, 2.5, -3.7, -6.0, -8.5};
  Tensor x = make(DataType::kFloat32, {13}, v);
  struct { const char* op; std::function<double(double)> f; double tol; } cases[] = {
      {"Tanh", [](double t) { return std::tanh(t); }, 4e-7},
      {"Elu", [](double t) { return t < 0 ? std::expm1(t) : t; }, 4e-7},
      {"Erf", [](double t) { return std::erf(t); }, 4e-7},
      // Gelu tails: 1 + erf(z) is taken from erfc, not by cancellation.
      // (tolerance: one input ulp alone moves the tail by ~x^2 * 6e-8)
      {"Gelu", [](double t) { return 0.5 * t * std::erfc(-t / std::sqrt(2.0)); }, 6e-6},
  };
  for (int wide : {0, 1})
    for (auto& c : cases) {
      cpu::ew::wide_override() = wide;
      Tensor y = run_op(c.op, {in(x)})[0];
      for (size_t i = 0; i < v.size(); ++i) {
        double want = c.f(double(float(v[i])));
        EXPECT_NEAR(y.data<float>()[i], want, c.tol * std::fabs(want)) << c.op << "(" << v[i] << ") wide " << wide;
      }
    }
  cpu::ew::wide_override() = -1;
}

TEST(UnaryKernels, SpecialValues) {
  Tensor x = make(DataType::kFloat32, {6}, {kNaN, kInf, -kInf, 100.0, -100.0, 0.0});
  Tensor e = run_op("Exp", {in(x)})[0];
  EXPECT_TRUE(std::isnan(e.data<float>()[0]));
  EXPECT_EQ(e.data<float>()[1], float(kInf));
  EXPECT_EQ(e.data<float>()[2], 0.0f);
  EXPECT_EQ(e.data<float>()[3], float(kInf));
  EXPECT_LT(e.data<float>()[4], 1e-37f);  // 0 or the denormal
  EXPECT_EQ(e.data<float>()[5], 1.0f);
  Tensor s = run_op("Sigmoid", {in(x)})[0];
  EXPECT_TRUE(std::isnan(s.data<float>()[0]));
  EXPECT_EQ(s.data<float>()[1], 1.0f);
  EXPECT_EQ(s.data<float>()[2], 0.0f);
  Tensor t = run_op("Tanh", {in(x)})[0];
  EXPECT_TRUE(std::isnan(t.data<float>()[0]));
  EXPECT_EQ(t.data<float>()[1], 1.0f);
  EXPECT_EQ(t.data<float>()[2], -1.0f);
  // numpy maximum(x, 0) propagates NaN; so do Relu and Clip.
  EXPECT_TRUE(std::isnan(run_op("Relu", {in(x)})[0].data<float>()[0]));
  Tensor lo = make(DataType::kFloat32, {}, {-1}), hi = make(DataType::kFloat32, {}, {1});
  Tensor c = run_op("Clip", {in(x), in(lo), in(hi)})[0];
  EXPECT_TRUE(std::isnan(c.data<float>()[0]));
  EXPECT_EQ(c.data<float>()[1], 1.0f);
  EXPECT_EQ(c.data<float>()[2], -1.0f);
  EXPECT_TRUE(std::isnan(run_op("Sign", {in(x)})[0].data<float>()[0]));
}

TEST(UnaryKernels, RoundHalfToEven) {
  Tensor x = make(DataType::kFloat32, {8}, {0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001});
  Tensor y = run_op("Round", {in(x)})[0];
  std::vector<float> want = {0, 2, 2, -0.0f, -2, -2, 2, 3};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(y.data<float>()[i], want[size_t(i)]) << i;
}

TEST(UnaryKernels, Fp16ComputesInFloat) {
  for (const char* op : {"Sigmoid", "Relu", "Exp", "Gelu"}) {
    Tensor x = random_tensor(DataType::kFloat16, {5, 300}, 7, -4, 4);
    Tensor y = run_op(op, {in(x)})[0];
    ASSERT_EQ(y.dtype(), DataType::kFloat16);
    Tensor xf = make(DataType::kFloat32, x.dims(), x.to_double());
    Tensor yf = run_op(op, {in(xf)})[0];
    // Same fp32 result, rounded once to fp16.
    for (int64_t i = 0; i < y.numel(); ++i)
      ASSERT_EQ(y.data<uint16_t>()[i], float_to_half(yf.data<float>()[i])) << op << " element " << i;
  }
}

TEST(UnaryKernels, IntegerOpsAreExactAndWrap) {
  const int64_t mn = std::numeric_limits<int64_t>::min();
  std::vector<int64_t> v = {mn, -7, -1, 0, 1, 9, std::numeric_limits<int64_t>::max()};
  Tensor x = Tensor::from_int64(v, {7});
  Tensor neg = run_op("Neg", {in(x)})[0], abs = run_op("Abs", {in(x)})[0];
  Tensor sign = run_op("Sign", {in(x)})[0], relu = run_op("Relu", {in(x)})[0];
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t want_neg = v[i] == mn ? mn : -v[i];
    EXPECT_EQ(neg.data<int64_t>()[i], want_neg);
    EXPECT_EQ(abs.data<int64_t>()[i], v[i] < 0 ? want_neg : v[i]);
    EXPECT_EQ(sign.data<int64_t>()[i], (v[i] > 0) - (v[i] < 0));
    EXPECT_EQ(relu.data<int64_t>()[i], std::max<int64_t>(v[i], 0));
  }
  Tensor bn = run_op("BitwiseNot", {in(x)})[0];
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(bn.data<int64_t>()[i], ~v[i]);
  // int8 Clip with only a max bound (min omitted), as in the ONNX node tests.
  Tensor x8 = random_tensor(DataType::kInt8, {3, 4, 5}, 3, -100, 100);
  Tensor hi = make(DataType::kInt8, {}, {5});
  Tensor c = run_op("Clip", {in(x8), none(), in(hi)})[0];
  for (int64_t i = 0; i < x8.numel(); ++i)
    EXPECT_EQ(c.data<int8_t>()[i], std::min<int8_t>(x8.data<int8_t>()[i], 5));
  Tensor x32 = random_tensor(DataType::kInt32, {40}, 4, -50, 50);
  Tensor lo = make(DataType::kInt32, {1}, {-10}), hi32 = make(DataType::kInt32, {1}, {20});
  Tensor c32 = run_op("Clip", {in(x32), cin(lo), cin(hi32)})[0];
  for (int64_t i = 0; i < x32.numel(); ++i)
    EXPECT_EQ(c32.data<int32_t>()[i], std::min(20, std::max(-10, x32.data<int32_t>()[i])));
}

TEST(UnaryKernels, ClipBounds) {
  Tensor x = make(DataType::kFloat32, {3}, {-2, 0, 6});
  // min > max: numpy clip gives max everywhere.
  Tensor y = run_op("Clip", {in(x), in(make(DataType::kFloat32, {}, {2})), in(make(DataType::kFloat32, {}, {1}))})[0];
  for (int i = 0; i < 3; ++i) EXPECT_EQ(y.data<float>()[i], 1.0f);
  Tensor same = run_op("Clip", {in(x)})[0];
  EXPECT_EQ(max_rel_error(same, x), 0.0);
  Tensor m = run_op("Clip", {in(x), in(make(DataType::kFloat32, {}, {-1}))})[0];
  EXPECT_EQ(m.data<float>()[0], -1.0f);
  EXPECT_EQ(m.data<float>()[2], 6.0f);
}

TEST(UnaryKernels, PredicatesAndNot) {
  Tensor x = make(DataType::kFloat32, {6}, {-1.7, kNaN, kInf, -3.6, -kInf, kInf});
  auto bools = [](const Tensor& t) {
    std::vector<int> v;
    for (int64_t i = 0; i < t.numel(); ++i) v.push_back(t.data<uint8_t>()[i]);
    return v;
  };
  EXPECT_EQ(run_op("IsNaN", {in(x)})[0].dtype(), DataType::kBool);
  EXPECT_EQ(bools(run_op("IsNaN", {in(x)})[0]), (std::vector<int>{0, 1, 0, 0, 0, 0}));
  EXPECT_EQ(bools(run_op("IsInf", {in(x)})[0]), (std::vector<int>{0, 0, 1, 0, 1, 1}));
  EXPECT_EQ(bools(run_op("IsInf", {in(x)}, {{"detect_positive", attr_i(0)}})[0]), (std::vector<int>{0, 0, 0, 0, 1, 0}));
  EXPECT_EQ(bools(run_op("IsInf", {in(x)}, {{"detect_negative", attr_i(0)}})[0]), (std::vector<int>{0, 0, 1, 0, 0, 1}));
  Tensor h = make(DataType::kFloat16, {6}, x.to_double());
  EXPECT_EQ(bools(run_op("IsInf", {in(h)})[0]), (std::vector<int>{0, 0, 1, 0, 1, 1}));
  Tensor b = make(DataType::kBool, {2, 2}, {1, 0, 0, 1});
  EXPECT_EQ(bools(run_op("Not", {in(b)})[0]), (std::vector<int>{0, 1, 1, 0}));
}

TEST(UnaryKernels, RankZeroAndEmpty) {
  Tensor s = make(DataType::kFloat32, {}, {-2.0});
  Tensor y = run_op("Abs", {in(s)})[0];
  EXPECT_EQ(y.dims(), ir::Dims{});
  EXPECT_EQ(y.data<float>()[0], 2.0f);
  Tensor e(DataType::kFloat32, {2, 0, 3});
  Tensor ye = run_op("Sigmoid", {in(e)})[0];
  EXPECT_EQ(ye.dims(), (ir::Dims{2, 0, 3}));
}

TEST(UnaryKernels, RejectsBadInputs) {
  Tensor i32 = random_tensor(DataType::kInt32, {4}, 1, -5, 5);
  try {
    run_op("Sigmoid", {in(i32)});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find("Sigmoid 'node'"), std::string::npos) << e.what();
  }
  Tensor f = random_tensor(DataType::kFloat32, {4}, 1);
  EXPECT_THROW(run_op("Gelu", {in(f)}, {{"approximate", attr_s("fast")}}), Error);
  EXPECT_THROW(run_op("Not", {in(f)}), Error);
  Tensor two = make(DataType::kFloat32, {2}, {0, 1});
  EXPECT_THROW(run_op("Clip", {in(f), in(two)}), Error);  // bound must be one value
  Tensor b = make(DataType::kInt32, {}, {0});
  EXPECT_THROW(run_op("Clip", {in(f), in(b)}), Error);  // bound dtype differs
}

TEST(UnaryKernels, ReportsTactic) {
  std::string tactic;
  run_op("Relu", {in(random_tensor(DataType::kFloat32, {8}, 1))}, {}, 1, &tactic);
  EXPECT_EQ(tactic, "cpu.eltwise.unary");
}
