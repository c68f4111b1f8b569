// CUDA element-wise kernels against the CPU kernels (parity harness), in
// fp32/fp16 and linear/channels-last: unary activations, broadcasting
// binary ops, variadic ops, FusedElementwise chains and Cast. Reformat has no
// CPU kernel, so its test computes the expected bytes itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "backends/cuda/common.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/parity.h"
#include "ir/op_registry.h"

using namespace kiln;
using namespace kiln::test;
using ir::Dims;
using ir::Tensor;

namespace {

// Random values that fp16 holds exactly and that sit off every integer and
// half-integer, so fp16 variants of Floor/Round/thresholds see the same input.
Tensor exact(Dims dims, uint32_t seed, double lo = -3.0, double hi = 3.0) {
  Tensor t = random_tensor(DataType::kFloat32, dims, seed, lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    float q = (std::floor(p[i] * 64.0f) + 0.5f) / 64.0f;
    p[i] = std::min(std::max(q, float(lo) + 1.0f / 128), float(hi) - 1.0f / 128);
  }
  return t;
}

void expect_tactic(const ParityReport& r, const std::string& name, const std::string& what) {
  EXPECT_NE(std::find(r.tactics.begin(), r.tactics.end(), name), r.tactics.end())
      << what << " did not offer tactic " << name;
}

ParityReport parity(const std::string& op, const std::vector<OpInput>& ins,
                    const std::map<std::string, ir::Attribute>& attrs = {}, const std::string& tactic = "",
                    ParityOptions opts = {}) {
  ParityReport r = check_cuda_parity(op, ins, attrs, 1, opts);
  EXPECT_GT(r.checked, 0) << op;
  if (!tactic.empty()) {
    expect_tactic(r, tactic, op);
  }
  return r;
}

struct Chain {
  std::vector<std::string> ops;
  std::vector<int64_t> operand, swap;
  std::vector<float> alpha, beta;
  Chain& un(const std::string& op, float a = 0.f, float b = 0.f) { return push(op, -1, 0, a, b); }
  Chain& bin(const std::string& op, int64_t k, int64_t sw = 0) { return push(op, k, sw, 0.f, 0.f); }
  Chain& push(const std::string& op, int64_t k, int64_t sw, float a, float b) {
    ops.push_back(op), operand.push_back(k), swap.push_back(sw), alpha.push_back(a), beta.push_back(b);
    return *this;
  }
  std::map<std::string, ir::Attribute> attrs() const {
    ir::Attribute s;
    s.kind = ir::Attribute::Kind::kStrings;
    s.strings = ops;
    return {{"ops", s}, {"operand", attr_ints(operand)}, {"swap", attr_ints(swap)},
            {"alpha", attr_floats(alpha)}, {"beta", attr_floats(beta)}};
  }
};

ParityOptions kiln_domain() {
  ParityOptions o;
  o.domain = "kiln";
  return o;
}

}  // namespace

TEST(CudaElementwise, UnaryOpsFlatAndOddSizes) {
  KILN_REQUIRE_GPU();
  struct Case { const char* op; double lo, hi; };
  const Case cases[] = {
      {"Relu", -3, 3}, {"Sigmoid", -6, 6}, {"HardSwish", -5, 5}, {"Tanh", -3, 3}, {"Exp", -3, 3},
      {"Log", 0.1, 4}, {"Neg", -3, 3}, {"Abs", -3, 3}, {"Sqrt", 0, 4}, {"Reciprocal", 0.5, 3},
      {"Floor", -3, 3}, {"Ceil", -3, 3}, {"Round", -3, 3}, {"Sign", -3, 3}, {"Erf", -2, 2},
      {"Softplus", -5, 5}, {"Softsign", -3, 3}, {"Selu", -3, 3}, {"Mish", -3, 3}, {"Sin", -3, 3},
      {"Cos", -3, 3}, {"Atan", -3, 3}, {"Asin", -0.9, 0.9}, {"Acosh", 1.1, 3}, {"Atanh", -0.8, 0.8},
      {"Gelu", -3, 3}, {"Swish", -3, 3}};
  uint32_t seed = 1;
  for (const Case& c : cases)
    for (const Dims& d : {Dims{2, 8, 4, 4}, Dims{3, 5, 7, 3}, Dims{37}}) {
      SCOPED_TRACE(std::string(c.op) + " " + shape_str(d));
      parity(c.op, {in(exact(d, seed++, c.lo, c.hi))}, {}, "eltwise_flat");
    }
}

TEST(CudaElementwise, UnaryOpsWithAttributes) {
  KILN_REQUIRE_GPU();
  const Dims d{2, 3, 5, 5};
  parity("LeakyRelu", {in(exact(d, 1))}, {{"alpha", attr_f(0.2f)}});
  parity("HardSigmoid", {in(exact(d, 2, -6, 6))}, {{"alpha", attr_f(0.25f)}, {"beta", attr_f(0.4f)}});
  parity("Elu", {in(exact(d, 3))}, {{"alpha", attr_f(0.7f)}});
  parity("Celu", {in(exact(d, 4))}, {{"alpha", attr_f(1.5f)}});
  parity("ThresholdedRelu", {in(exact(d, 5))}, {{"alpha", attr_f(0.9f)}});
  parity("Shrink", {in(exact(d, 6))}, {{"lambd", attr_f(0.75f)}, {"bias", attr_f(0.25f)}});
  parity("Gelu", {in(exact(d, 7))}, {{"approximate", attr_s("tanh")}});
}

TEST(CudaElementwise, ClipConstantRuntimeAndMissingBounds) {
  KILN_REQUIRE_GPU();
  const Dims d{2, 4, 3, 5};
  auto one = [](float v) { return Tensor::from_float({v}, {}); };
  parity("Clip", {in(exact(d, 1)), cin(one(-1.0f)), cin(one(1.5f))}, {}, "eltwise_flat");
  parity("Clip", {in(exact(d, 2)), in(one(-0.5f)), in(one(2.0f))});  // bounds computed at run time
  parity("Clip", {in(exact(d, 3)), none(), cin(one(0.25f))});
  parity("Clip", {in(exact(d, 4)), cin(one(0.0f))});
  parity("Clip", {in(exact(d, 5))});
}

TEST(CudaElementwise, BinarySameShapeAndBroadcasts) {
  KILN_REQUIRE_GPU();
  struct Shapes { Dims a, b; const char* tactic; };
  const Shapes shapes[] = {
      {{2, 3, 5, 7}, {2, 3, 5, 7}, "eltwise_flat"},      // same dims, odd size
      {{2, 16, 4, 4}, {2, 16, 1, 1}, "eltwise_broadcast"},  // per-channel (SE), packs
      {{2, 16, 1, 1}, {2, 16, 5, 5}, "eltwise_broadcast"},  // per-channel on the left, odd rows
      {{2, 3, 4, 5}, {1}, "eltwise_flat"},               // scalar
      {{3, 4, 5}, {5}, "eltwise_broadcast"},             // row
      {{2, 1, 5, 1}, {1, 3, 1, 7}, "eltwise_broadcast"}, // both sides broadcast
      {{6, 1, 3, 8, 8}, {1, 2, 3, 1, 8}, "eltwise_broadcast"},
  };
  uint32_t seed = 10;
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"})
    for (const Shapes& s : shapes) {
      SCOPED_TRACE(std::string(op) + " " + shape_str(s.a) + " " + shape_str(s.b));
      const bool pos = std::string(op) == "Pow" || std::string(op) == "Div";
      Tensor a = exact(s.a, seed++, pos ? 0.5 : -3, pos ? 2 : 3);
      Tensor b = exact(s.b, seed++, pos ? 0.5 : -3, 2);
      parity(op, {in(a), in(b)}, {}, s.tactic);
    }
}

TEST(CudaElementwise, BinaryConstantsPreluAndIntegerPowExponent) {
  KILN_REQUIRE_GPU();
  const Dims d{2, 8, 3, 3};
  parity("Mul", {in(exact(d, 1)), cin(exact({1, 8, 1, 1}, 2))});
  parity("Add", {cin(exact({8, 1, 1}, 3)), in(exact(d, 4))});
  parity("PRelu", {in(exact(d, 5)), cin(exact({8, 1, 1}, 6, 0, 1))});
  parity("Pow", {in(exact(d, 7, 0.5, 2)), cin(Tensor::from_float({2.0f}, {}))});
  parity("Pow", {in(exact(d, 8, 0.5, 2)), cin(tensor_of(DataType::kInt64, {}, {3}))});
}

TEST(CudaElementwise, IntegerArithmetic) {
  KILN_REQUIRE_GPU();
  for (DataType dt : {DataType::kInt32, DataType::kInt64}) {
    Tensor a = random_tensor(dt, {2, 3, 4, 5}, 1, -100, 100);
    Tensor b = random_tensor(dt, {1, 3, 1, 5}, 2, -9, 9);  // includes zeros: Div gives 0 there
    for (const char* op : {"Add", "Sub", "Mul", "Div", "Max", "Min"}) {
      SCOPED_TRACE(std::string(op) + " " + dtype_name(dt));
      parity(op, {in(a), in(b)}, {}, "eltwise_int");
    }
  }
}

TEST(CudaElementwise, VariadicOps) {
  KILN_REQUIRE_GPU();
  Tensor a = exact({2, 4, 3, 3}, 1), b = exact({4, 1, 1}, 2), c = exact({2, 4, 3, 3}, 3);
  for (const char* op : {"Sum", "Mean", "Max", "Min"}) {
    SCOPED_TRACE(op);
    parity(op, {in(a), in(b), in(c)});
    parity(op, {in(a)});
  }
}

TEST(CudaElementwise, FusedChains) {
  KILN_REQUIRE_GPU();
  const ParityOptions o = kiln_domain();
  // Scale-shift-activate over per-channel operands.
  parity("FusedElementwise", {in(exact({2, 8, 6, 6}, 1)), in(exact({1, 8, 1, 1}, 2)), in(exact({2, 8, 6, 6}, 3))},
         Chain().bin("Mul", 1).bin("Add", 2).un("Relu").attrs(), "", o);
  // Squeeze-excite tail: the chain value is smaller than the output.
  parity("FusedElementwise", {in(exact({2, 8, 1, 1}, 4)), in(exact({2, 8, 5, 5}, 5))},
         Chain().un("HardSigmoid", 1.0f / 6, 0.5f).bin("Mul", 1).attrs(), "eltwise_broadcast", o);
  // Swish as x * Sigmoid(x), swapped non-commutative ops.
  parity("FusedElementwise", {in(exact({3, 5, 7}, 6)), in(exact({7}, 7, 0.5, 2))},
         Chain().un("Sigmoid").bin("Mul", 0).bin("Sub", 1, 1).un("Exp").bin("Div", 1, 1).bin("Max", 1).attrs(), "",
         o);
  // Every fusable unary op in one 16-op chain.
  Chain all;
  all.un("Clip", -2.0f, 2.0f).un("LeakyRelu", 0.1f).un("Elu", 0.5f).un("Softplus").un("Erf").un("Tanh");
  all.un("Exp").un("Neg").un("Abs").un("Sqrt").un("HardSwish").un("Relu").un("Sigmoid").bin("Pow", 1);
  all.bin("Min", 1).un("HardSigmoid", 0.3f, 0.2f);
  parity("FusedElementwise", {in(exact({2, 16, 8, 8}, 8)), in(exact({16, 1, 1}, 9, 0.5, 2))}, all.attrs(),
         "eltwise_broadcast", o);
  // An input no op reads still widens the output.
  parity("FusedElementwise", {in(exact({3, 1}, 10)), in(exact({1, 4}, 11))}, Chain().un("Relu").attrs(), "", o);
}

TEST(CudaElementwise, FusedChainAboveTheCapIsUnsupported) {
  KILN_REQUIRE_GPU();
  Chain c;
  for (int k = 0; k < 17; ++k) c.un("Relu");
  ir::Graph g;
  ir::Value* x = g.add_value("x");
  x->dims = {4, 4};
  x->has_shape = true;
  g.inputs = {x};
  ir::Value* y = g.add_value("y");
  ir::Node* n = g.add_node("FusedElementwise", "long", {x}, {y});
  n->domain = "kiln";
  n->attrs = c.attrs();
  g.outputs = {y};
  ir::infer_shapes(g, nullptr);
  EXPECT_EQ(code_of([&] { cuda::Registry::global().tactics(*n); }), ErrorCode::kUnsupported);
}

TEST(CudaElementwise, CastBetweenDtypes) {
  KILN_REQUIRE_GPU();
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const Tensor f = tensor_of(DataType::kFloat32, {1, 2, 2, 3},
                             {1.5, -1.5, 3e9, -3e9, nan, inf, 0, -0.7, 255.9, 300, -129.5, 65504});
  const Tensor i32 = tensor_of(DataType::kInt32, {1, 3, 2, 2}, {0, 1, -1, 127, 128, 255, 256, -129, 70000, -70000, 2147483647, 5});
  const Tensor i64 = tensor_of(DataType::kInt64, {2, 3}, {0, -5, 1e15, -1e15, 16777217, 3});
  const Tensor b = tensor_of(DataType::kBool, {2, 2, 1, 2}, {0, 1, 1, 0, 0, 0, 1, 1});
  const Tensor u8 = tensor_of(DataType::kUInt8, {2, 1, 2, 2}, {0, 1, 200, 255, 7, 128, 64, 3});
  // ONNX TensorProto codes: FLOAT, FLOAT16, INT8, UINT8, INT32, INT64, BOOL.
  const int64_t all[] = {1, 10, 3, 2, 6, 7, 9};
  for (const Tensor* src : {&f, &i32, &i64, &b, &u8})
    for (int64_t to : all) {
      SCOPED_TRACE(std::string(dtype_name(src->dtype())) + " -> code " + std::to_string(to));
      parity("Cast", {in(*src)}, {{"to", attr_i(to)}});
    }
  const Tensor h = random_tensor(DataType::kFloat16, {2, 5, 3, 7}, 1, -300, 300);
  for (int64_t to : all) parity("Cast", {in(h)}, {{"to", attr_i(to)}});
}

// ---- Reformat: no CPU kernel, so the expected bytes are computed here ----

namespace {

// Offset of logical row-major element i of `dims` in `layout`.
int64_t offset_in(int64_t i, const Dims& dims, ir::Layout layout) {
  std::vector<int64_t> idx = unravel(i, dims);
  if (layout != ir::Layout::kNHWC || dims.size() != 4) return i;
  return ((idx[0] * dims[2] + idx[2]) * dims[3] + idx[3]) * dims[1] + idx[1];
}

uint16_t bits16(float f) { return float_to_half(f); }

}  // namespace

TEST(CudaElementwise, ReformatDtypeAndLayout) {
  KILN_REQUIRE_GPU();
  const ir::Layout lin = ir::Layout::kLinear, nhwc = ir::Layout::kNHWC;
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  int checked = 0;
  for (const Dims& dims : {Dims{2, 37, 9, 13}, Dims{1, 64, 8, 8}, Dims{1, 3, 33, 2}, Dims{5, 7, 11}})
    for (DataType from : {DataType::kFloat32, DataType::kFloat16})
      for (DataType to : {DataType::kFloat32, DataType::kFloat16})
        for (ir::Layout li : {lin, nhwc})
          for (ir::Layout lo : {lin, nhwc}) {
            if (dims.size() != 4 && (li == nhwc || lo == nhwc)) continue;
            const std::string what = shape_str(dims) + " " + dtype_name(from) + "->" + dtype_name(to) + " " +
                                     ir::layout_name(li) + "->" + ir::layout_name(lo);
            ir::Graph g;
            ir::Value* x = g.add_value("x");
            x->dims = dims;
            x->dtype = from;
            x->has_shape = true;
            x->layout = li;
            g.inputs = {x};
            ir::Value* y = g.add_value("y");
            ir::Node* n = g.add_node("Reformat", "r", {x}, {y});
            n->domain = "kiln";
            n->attrs["to"] = attr_i(int64_t(to));
            g.outputs = {y};
            ir::infer_shapes(g, nullptr);
            y->layout = lo;
            const Tensor src = random_tensor(DataType::kFloat32, dims, uint32_t(checked + 1), -100, 100);
            const int64_t numel = src.numel();
            const size_t ei = dtype_size(from), eo = dtype_size(to);
            std::vector<uint8_t> hin(size_t(numel) * ei), want(size_t(numel) * eo);
            for (int64_t i = 0; i < numel; ++i) {
              float v = src.data<float>()[i];
              if (from == DataType::kFloat16) v = half_to_float(bits16(v));  // the fp16 input's value
              const int64_t oi = offset_in(i, dims, li), oo = offset_in(i, dims, lo);
              if (from == DataType::kFloat16) {
                uint16_t hb = bits16(v);
                std::memcpy(&hin[size_t(oi) * 2], &hb, 2);
              } else {
                std::memcpy(&hin[size_t(oi) * 4], &v, 4);
              }
              if (to == DataType::kFloat16) {
                uint16_t hb = bits16(v);
                std::memcpy(&want[size_t(oo) * 2], &hb, 2);
              } else {
                std::memcpy(&want[size_t(oo) * 4], &v, 4);
              }
            }
            std::vector<cuda::Tactic> tactics = cuda::Registry::global().tactics(*n);
            ASSERT_FALSE(tactics.empty()) << what;
            if (dims.size() == 4 && li != lo && dims[1] > 1) {
              EXPECT_EQ(tactics[0].name, "reformat_tiled") << what;
            }
            cuda::DevicePtr din = cuda::upload(hin.data(), hin.size());
            for (const cuda::Tactic& t : tactics) {
              cuda::DevicePtr dout = cuda::device_alloc(want.size());
              ASSERT_EQ(cudaMemset(dout.get(), 0xFF, want.size()), cudaSuccess);
              auto k = t.make();
              k->enqueue({din.get()}, {dout.get()}, cuda::Launch{stream, nullptr, nullptr});
              ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess) << what << " " << t.name;
              std::vector<uint8_t> got(want.size());
              ASSERT_EQ(cudaMemcpy(got.data(), dout.get(), got.size(), cudaMemcpyDeviceToHost), cudaSuccess);
              EXPECT_TRUE(got == want) << what << " tactic " << t.name;
              ++checked;
            }
          }
  cudaStreamDestroy(stream);
  EXPECT_GT(checked, 40);
}
