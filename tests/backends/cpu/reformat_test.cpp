// kiln::Reformat on the CPU: dtype conversions on linear layouts, against
// values worked out here (round half to even and saturation by hand, exact
// dequantization products) and the attribute checks of shape inference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "backends/cpu/kernel.h"
#include "backends/cpu/parallel.h"
#include "ir/op_registry.h"
#include "kiln/error.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using ir::Dims;
using ir::Tensor;
using test::attr_f;
using test::attr_i;
using Attrs = std::map<std::string, ir::Attribute>;

Tensor reformat(const Tensor& x, DataType to, const Attrs& extra = {}, std::string* tactic = nullptr) {
  ir::Graph g;
  ir::Value* xv = g.add_value("x");
  xv->dtype = x.dtype(), xv->dims = x.dims(), xv->has_shape = true;
  g.inputs.push_back(xv);
  ir::Value* y = g.add_value("y");
  ir::Node* n = g.add_node("Reformat", "rf", {xv}, {y});
  n->domain = "kiln";
  n->attrs = extra;
  n->attrs["to"] = attr_i(int64_t(to));
  g.outputs = {y};
  ir::infer_shapes(g, nullptr);
  auto k = cpu::KernelRegistry::global().create(*n);
  if (tactic) *tactic = k->tactic();
  Tensor out(y->dtype, y->dims);
  k->run({&x}, {&out});
  return out;
}

Attrs scale(float s) { return {{"scale", attr_f(s)}}; }

// The quotient x / scale as float arithmetic gives it (ONNX QuantizeLinear
// divides in the input's precision): the exact quotient rounded once to float.
double float_quotient(double x, double s) { return double(float(x / s)); }

// Round half to even and saturate, on an exact double; NaN -> 0.
int quantize_ref(double t) {
  if (std::isnan(t)) return 0;
  if (t >= 127.0) return 127;
  if (t <= -128.0) return -128;
  double f = std::floor(t), frac = t - f;
  double r = frac > 0.5 ? f + 1 : frac < 0.5 ? f : (std::fmod(f, 2.0) == 0 ? f : f + 1);
  return int(r);
}

TEST(ReformatCpu, Fp32ToInt8RoundsHalfToEvenAndSaturates) {
  const float s = 0.25f;  // a power of two: x / s is exact, so the .5 steps are true ties
  std::vector<float> xs = {0.f,    0.125f, 0.375f, 0.625f,  -0.125f, -0.375f, -0.625f, 31.625f, 31.875f,
                           31.75f, -32.125f, 32.f, -32.f,  1e9f,   -1e9f,   31.9f,   -31.9f,  0.1f,
                           -0.1f,  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                           std::nanf(""), 1e-30f, -31.99f};
  // x / s: 0, .5, 1.5, 2.5, -.5, -1.5, -2.5, 126.5, 127.5, 127, -128.5, 128, -128, ...
  Tensor x = Tensor::from_float(xs, {int64_t(xs.size())});
  std::string tactic;
  Tensor y = reformat(x, DataType::kInt8, scale(s), &tactic);
  EXPECT_EQ(tactic, "cpu.reformat.fp32_int8");
  ASSERT_EQ(y.dtype(), DataType::kInt8);
  const std::vector<int> spot = {0, 0, 2, 2, 0, -2, -2, 126, 127, 127, -128, 127, -128, 127, -128};
  for (size_t i = 0; i < xs.size(); ++i) {
    const int got = y.data<int8_t>()[i];
    EXPECT_EQ(got, quantize_ref(float_quotient(xs[i], s))) << "x = " << xs[i];
    if (i < spot.size()) {
      EXPECT_EQ(got, spot[i]) << "x = " << xs[i];
    }
  }
}

TEST(ReformatCpu, Fp16ToInt8AndBack) {
  std::vector<double> v;
  for (int i = -300; i <= 300; ++i) v.push_back(i * 0.0625);  // exact in fp16
  v.push_back(std::nan(""));
  Tensor x = test::tensor_of(DataType::kFloat16, {int64_t(v.size())}, v);
  const float s = 0.125f;
  Tensor q = reformat(x, DataType::kInt8, scale(s));
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(int(q.data<int8_t>()[i]), quantize_ref(v[i] / s)) << v[i];
  Tensor back = reformat(q, DataType::kFloat16, scale(s));
  ASSERT_EQ(back.dtype(), DataType::kFloat16);
  auto bv = back.to_double();
  for (size_t i = 0; i < v.size(); ++i)
    EXPECT_EQ(bv[i], quantize_ref(v[i] / s) * 0.125) << v[i];  // q * 2^-3 is exact in fp16
}

TEST(ReformatCpu, Int8ToFp32IsTheExactProductRoundedOnce) {
  std::vector<double> q;
  for (int i = -128; i <= 127; ++i) q.push_back(i);
  Tensor x = test::tensor_of(DataType::kInt8, {2, 128}, q);
  const float s = 0.0371f;
  Tensor y = reformat(x, DataType::kFloat32, scale(s));
  ASSERT_EQ(y.dtype(), DataType::kFloat32);
  ASSERT_EQ(y.dims(), (Dims{2, 128}));
  for (size_t i = 0; i < q.size(); ++i) EXPECT_EQ(y.data<float>()[i], float(q[i] * double(s)));
  // And back: every int8 value survives the round trip.
  Tensor rt = reformat(y, DataType::kInt8, scale(s));
  EXPECT_EQ(rt.to_double(), q);
}

TEST(ReformatCpu, FloatConversionsAndCopies) {
  // fp32 -> fp16: exact values stay, ties go to even (1 + 2^-11 -> 1, 1 + 3 * 2^-11 -> 1 + 2^-9).
  const float one_tie = 1.f + std::ldexp(1.f, -11), up_tie = 1.f + 3.f * std::ldexp(1.f, -11);
  Tensor x = Tensor::from_float({0.5f, -2.25f, 1024.f, one_tie, up_tie, 70000.f}, {6});
  Tensor h = reformat(x, DataType::kFloat16);
  const std::vector<double> want = {0.5, -2.25, 1024.0, 1.0, 1.0 + std::ldexp(1.0, -9), INFINITY};
  EXPECT_EQ(h.to_double(), want);
  Tensor f = reformat(h, DataType::kFloat32);
  EXPECT_EQ(f.to_double(), want);
  // Same dtype: a plain copy, int8 included (a layout-only change on GPUs).
  Tensor q = test::random_tensor(DataType::kInt8, {3, 5}, 9, -128, 128);
  Tensor qc = reformat(q, DataType::kInt8);
  EXPECT_EQ(qc.to_double(), q.to_double());
  EXPECT_EQ(reformat(x, DataType::kFloat32).to_double(), x.to_double());
}

// Large enough to run in several parallel chunks; same bytes for any thread count.
TEST(ReformatCpu, LargeTensorsAnyThreadCount) {
  const int64_t n = 200000;
  Tensor x = test::random_tensor(DataType::kFloat32, {n}, 21, -40, 40);
  const float s = 0.3f;
  std::vector<Tensor> outs;
  for (int threads : {1, 2, 5}) {
    cpu::set_num_threads(threads);
    outs.push_back(reformat(x, DataType::kInt8, scale(s)));
  }
  cpu::set_num_threads(0);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(int(outs[0].data<int8_t>()[i]), quantize_ref(float_quotient(x.data<float>()[i], s))) << i;
  for (size_t k = 1; k < outs.size(); ++k) EXPECT_EQ(std::memcmp(outs[0].raw(), outs[k].raw(), size_t(n)), 0);
}

TEST(ReformatCpu, RejectsBadAttributesNamingTheNode) {
  Tensor xf = Tensor::from_float({1.f, 2.f}, {2});
  Tensor xq = test::tensor_of(DataType::kInt8, {2}, {1, 2});
  auto fails = [&](const Tensor& x, DataType to, const Attrs& a) {
    try {
      reformat(x, to, a);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadInput) << e.what();
      EXPECT_NE(std::string(e.what()).find("Reformat 'rf'"), std::string::npos) << e.what();
    }
  };
  fails(xf, DataType::kInt8, {});                               // scale required
  fails(xq, DataType::kFloat32, {});
  fails(xf, DataType::kInt8, scale(std::nanf("")));
  fails(xf, DataType::kInt8, scale(0.f));
  fails(xq, DataType::kFloat16, scale(-1.f));
  fails(xq, DataType::kFloat32, scale(INFINITY));
  fails(xf, DataType::kInt8, {{"scale", attr_i(1)}});           // wrong attribute type
  fails(xf, DataType::kInt32, {});
  fails(xf, DataType::kUInt8, scale(1.f));
  fails(test::tensor_of(DataType::kInt32, {2}, {1, 2}), DataType::kFloat32, {});
  EXPECT_NO_THROW(reformat(xq, DataType::kInt8, {}));             // layout-only: no scale needed
}

}  // namespace
}  // namespace kiln
