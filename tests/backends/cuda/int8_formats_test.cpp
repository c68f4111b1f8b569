// INT8 data movement on the GPU and the builder's int8 format rules:
//  - kiln::Reformat float <-> int8 (scale) and int8 -> int8 (layout only)
//    against the CPU Reformat, every tactic, row-major and channels-last on
//    either side: results must be bit-identical (one IEEE division or
//    multiplication and a half-to-even rounding, the same on both);
//  - MaxPool on int8 through the parity harness (exact);
//  - assign_formats on a quantized graph (no GPU needed): int8 values keep
//    their dtype, QConv reads and writes channels-last, the quantizing
//    Reformat writes channels-last for its QConv, FP16 builds give QConv's
//    float output FP16 when its readers run FP16.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>

#include "backends/cpu/kernel.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/parity.h"
#include "builder/cuda/cuda_build.h"
#include "ir/op_registry.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using test::attr_f;
using test::attr_floats;
using test::attr_i;
using test::attr_ints;
using test::attr_s;
using test::random_tensor;

// A one-node Reformat graph: x (dtype `from`, layout lx) -> y (`to`, ly).
struct OneReformat {
  std::unique_ptr<ir::Graph> g = std::make_unique<ir::Graph>();
  ir::Node* node = nullptr;
};

OneReformat reformat_graph(DataType from, DataType to, const ir::Dims& dims, float scale, ir::Layout lx,
                           ir::Layout ly) {
  OneReformat r;
  ir::Value* x = r.g->add_value("x");
  x->dtype = from;
  x->dims = dims;
  x->has_shape = true;
  r.g->inputs.push_back(x);
  ir::Value* y = r.g->add_value("y");
  r.node = r.g->add_node("Reformat", "reformat", {x}, {y});
  r.node->domain = "kiln";
  r.node->attrs["to"] = attr_i(int64_t(to));
  if ((from == DataType::kInt8) != (to == DataType::kInt8)) r.node->attrs["scale"] = attr_f(scale);
  r.g->outputs.push_back(y);
  ir::infer_shapes(*r.g, nullptr);
  x->layout = lx;
  y->layout = ly;
  return r;
}

ir::Tensor cpu_reformat(const ir::Tensor& x, DataType to, float scale) {
  OneReformat r = reformat_graph(x.dtype(), to, x.dims(), scale, ir::Layout::kLinear, ir::Layout::kLinear);
  auto k = cpu::KernelRegistry::global().create(*r.node);
  ir::Tensor y(to, x.dims());
  std::vector<ir::Tensor*> out{&y};
  k->run({&x}, out);
  return y;
}

// Every GPU tactic in every layout pair must reproduce the CPU bytes.
int check_reformat(const ir::Tensor& x, DataType to, float scale, std::set<std::string>* names = nullptr) {
  const ir::Tensor ref = cpu_reformat(x, to, scale);
  int checked = 0;
  for (ir::Layout lx : {ir::Layout::kLinear, ir::Layout::kNHWC})
    for (ir::Layout ly : {ir::Layout::kLinear, ir::Layout::kNHWC}) {
      OneReformat r = reformat_graph(x.dtype(), to, x.dims(), scale, lx, ly);
      const std::string variant = std::string(dtype_name(x.dtype())) + "->" + dtype_name(to) + " " +
                                  ir::layout_name(lx) + "->" + ir::layout_name(ly);
      std::vector<cuda::Tactic> tactics;
      try {
        tactics = cuda::Registry::global().tactics(*r.node);
      } catch (const Error& e) {
        ADD_FAILURE() << variant << ": " << e.what();
        continue;
      }
      for (const cuda::Tactic& t : tactics) {
        if (names) names->insert(t.name);
        try {
          const ir::Tensor got = test::run_tactic(*r.node, t, {&x}, 0x5A)[0];
          EXPECT_EQ(std::memcmp(got.raw(), ref.raw(), ref.nbytes()), 0) << variant << " " << t.name;
          ++checked;
        } catch (const Error& e) {
          ADD_FAILURE() << variant << " " << t.name << ": " << e.what();
        }
      }
    }
  return checked;
}

// Random floats plus the cases that decide the rounding: exact ties at
// scale 0.25 (x / 0.25 = m + 0.5), saturation, infinities and NaN.
ir::Tensor quant_input(DataType dt, const ir::Dims& dims, uint32_t seed) {
  ir::Tensor f = random_tensor(DataType::kFloat32, dims, seed, -40.0, 40.0);
  float* p = f.data<float>();
  const float specials[] = {0.125f, -0.125f, 0.375f, -0.375f, 0.625f, 31.875f, -31.875f, 31.625f, -32.125f,
                            1e9f,   -1e9f,   std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(), 0.f,
                            -0.f};
  for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]) && int64_t(i) < f.numel(); ++i)
    p[i * 7 % size_t(f.numel())] = specials[i];
  if (dt == DataType::kFloat32) return f;
  ir::Tensor h(DataType::kFloat16, dims);
  for (int64_t i = 0; i < f.numel(); ++i) h.data<uint16_t>()[i] = float_to_half(p[i]);
  return h;
}

TEST(CudaReformatInt8, QuantizeMatchesCpuBitForBit) {
  KILN_REQUIRE_GPU();
  std::set<std::string> names;
  int checked = 0;
  for (DataType from : {DataType::kFloat32, DataType::kFloat16})
    for (const ir::Dims& dims : {ir::Dims{2, 24, 5, 7}, ir::Dims{1, 3, 37, 41}, ir::Dims{3, 33, 2, 1}})
      for (float scale : {0.25f, 0.0371f}) {
        SCOPED_TRACE(std::string(dtype_name(from)) + " " + shape_str(dims) + " scale " + std::to_string(scale));
        checked += check_reformat(quant_input(from, dims, 7), DataType::kInt8, scale, &names);
      }
  EXPECT_GT(checked, 0);
  for (const char* t : {"reformat_flat", "reformat_tiled", "reformat_strided"}) EXPECT_TRUE(names.count(t)) << t;
}

TEST(CudaReformatInt8, DequantizeMatchesCpuBitForBit) {
  KILN_REQUIRE_GPU();
  int checked = 0;
  for (DataType to : {DataType::kFloat32, DataType::kFloat16})
    for (const ir::Dims& dims : {ir::Dims{2, 24, 5, 7}, ir::Dims{1, 5, 37, 41}})
      for (float scale : {0.25f, 0.0371f, 3.7e-3f}) {
        SCOPED_TRACE(std::string(dtype_name(to)) + " " + shape_str(dims) + " scale " + std::to_string(scale));
        checked += check_reformat(random_tensor(DataType::kInt8, dims, 9, -128.0, 128.0), to, scale);
      }
  EXPECT_GT(checked, 0);
}

TEST(CudaReformatInt8, Int8LayoutChangeKeepsEveryValue) {
  KILN_REQUIRE_GPU();
  std::set<std::string> names;
  int checked = 0;
  for (const ir::Dims& dims : {ir::Dims{2, 24, 5, 7}, ir::Dims{1, 64, 33, 17}})
    checked += check_reformat(random_tensor(DataType::kInt8, dims, 13, -128.0, 128.0), DataType::kInt8, 1.f, &names);
  EXPECT_GT(checked, 0);
  EXPECT_TRUE(names.count("reformat_memcpy"));
  EXPECT_TRUE(names.count("reformat_tiled"));
}

TEST(CudaReformatInt8, RoundTripThroughFloatIsTheIdentity) {
  KILN_REQUIRE_GPU();
  const ir::Dims dims{2, 16, 9, 11};
  const ir::Tensor q = random_tensor(DataType::kInt8, dims, 17, -128.0, 128.0);
  for (DataType mid : {DataType::kFloat32, DataType::kFloat16})
    for (float scale : {0.25f, 0.0371f}) {
      // int8 (NHWC) -> float (row-major) -> int8 (NHWC), each on the GPU.
      OneReformat a = reformat_graph(DataType::kInt8, mid, dims, scale, ir::Layout::kNHWC, ir::Layout::kLinear);
      OneReformat b = reformat_graph(mid, DataType::kInt8, dims, scale, ir::Layout::kLinear, ir::Layout::kNHWC);
      const ir::Tensor f = test::run_tactic(*a.node, cuda::Registry::global().tactics(*a.node)[0], {&q})[0];
      const ir::Tensor back = test::run_tactic(*b.node, cuda::Registry::global().tactics(*b.node)[0], {&f})[0];
      EXPECT_EQ(std::memcmp(back.raw(), q.raw(), q.nbytes()), 0) << dtype_name(mid) << " scale " << scale;
    }
}

TEST(CudaMaxPoolInt8, MatchesCpuExactly) {
  KILN_REQUIRE_GPU();
  for (int64_t c : {5, 16, 48}) {
    SCOPED_TRACE("C " + std::to_string(c));
    std::map<std::string, ir::Attribute> attrs{{"kernel_shape", attr_ints({3, 3})},
                                               {"strides", attr_ints({2, 2})},
                                               {"pads", attr_ints({1, 1, 1, 1})}};
    const test::ParityReport r =
        test::check_cuda_parity("MaxPool", {test::in(random_tensor(DataType::kInt8, {2, c, 9, 11}, 5, -128.0, 128.0))}, attrs);
    EXPECT_GT(r.checked, 0);
    const std::set<std::string> names(r.tactics.begin(), r.tactics.end());
    EXPECT_TRUE(names.count("pool_nhwc"));
    if (c % 16 == 0) {
      EXPECT_TRUE(names.count("pool_nhwc_vec"));
    }
  }
}

// x fp32 -> Reformat(int8) -> QConv(int8, relu) -> MaxPool -> QConv(`to2`, Z
// = the first QConv's output) -> Relu -> graph output.
std::unique_ptr<ir::Graph> quantized_graph(DataType to2) {
  auto g = std::make_unique<ir::Graph>();
  ir::Value* x = g->add_value("x");
  x->dtype = DataType::kFloat32;
  x->dims = {1, 16, 8, 8};
  x->has_shape = true;
  g->inputs.push_back(x);
  auto value = [&](const char* name) { return g->add_value(name); };
  ir::Value *a = value("a"), *b = value("b"), *c = value("c"), *d = value("d"), *e = value("e");
  ir::Node* q = g->add_node("Reformat", "quant_x", {x}, {a});
  q->domain = "kiln";
  q->attrs["to"] = attr_i(int64_t(DataType::kInt8));
  q->attrs["scale"] = attr_f(0.05f);
  // Shapes are inferred at the end: input channels are given.
  auto qconv = [&](const char* name, ir::Value* in, int64_t c, ir::Value* z, ir::Value* out, int64_t k, int64_t r,
                   DataType to) {
    ir::Value* w = g->add_constant(std::string(name) + "/w",
                                   random_tensor(DataType::kInt8, {k, c, r, r}, 3, -127.0, 128.0));
    std::vector<ir::Value*> ins{in, w};
    if (z) ins.push_back(nullptr), ins.push_back(z);
    ir::Node* n = g->add_node("QConv", name, ins, {out});
    n->domain = "kiln";
    n->attrs["pads"] = attr_ints({r / 2, r / 2, r / 2, r / 2});
    n->attrs["x_scale"] = attr_f(0.05f);
    n->attrs["w_scales"] = attr_floats(std::vector<float>(size_t(k), 0.01f));
    n->attrs["to"] = attr_i(int64_t(to));
    if (to == DataType::kInt8) n->attrs["y_scale"] = attr_f(0.1f);
    if (z) n->attrs["z_scale"] = attr_f(0.1f);
    n->attrs["activation"] = attr_s("Relu");
    n->attrs["activation_params"] = attr_floats({});
    return n;
  };
  qconv("conv1", a, 16, nullptr, b, 32, 3, DataType::kInt8);
  ir::Node* pool = g->add_node("MaxPool", "pool", {b}, {c});
  pool->attrs["kernel_shape"] = attr_ints({1, 1});
  qconv("conv2", c, 32, b, d, 32, 1, to2);
  g->add_node("Relu", "relu", {d}, {e});
  g->outputs.push_back(e);
  ir::infer_shapes(*g, nullptr);
  return g;
}

const ir::Node* node_named(const ir::Graph& g, const std::string& name) {
  for (auto& n : g.nodes())
    if (n->name == name) return n.get();
  return nullptr;
}

void expect_consistent(const ir::Graph& g) {
  std::set<const ir::Value*> ready(g.inputs.begin(), g.inputs.end());
  for (auto& n : g.nodes()) {
    for (const ir::Value* v : n->inputs) EXPECT_TRUE(!v || v->is_constant() || ready.count(v)) << n->label();
    for (const ir::Value* v : n->outputs) ready.insert(v);
    ir::OpRegistry::global().find(n->domain, n->op_type)->infer(*n);
  }
}

TEST(AssignFormatsInt8, Int8ValuesStayInt8AndRunChannelsLast) {
  for (bool fp16 : {false, true}) {
    SCOPED_TRACE(fp16 ? "fp16 build" : "fp32 build");
    auto g = quantized_graph(DataType::kFloat32);
    cuda_build::Options o;
    o.fp16 = fp16;
    // Only the graph output goes back to row-major fp32; nothing else moves.
    EXPECT_EQ(cuda_build::assign_formats(*g, o), 1);
    for (const char* v : {"a", "b", "c"}) {
      EXPECT_EQ(g->value(v)->dtype, DataType::kInt8) << v;
      EXPECT_EQ(g->value(v)->layout, ir::Layout::kNHWC) << v;
    }
    const ir::Node* c1 = node_named(*g, "conv1");
    const ir::Node* c2 = node_named(*g, "conv2");
    ASSERT_TRUE(c1 && c2);
    EXPECT_EQ(c1->precision, DataType::kInt8);
    EXPECT_EQ(c2->precision, DataType::kInt8);
    EXPECT_EQ(node_named(*g, "pool")->precision, DataType::kInt8);
    EXPECT_EQ(c1->in(0)->name, "a");  // the quantizing Reformat wrote NHWC itself
    EXPECT_EQ(c2->in(3)->name, "b");
    // conv2's float output: FP16 when its reader (Relu) runs FP16.
    const DataType want = fp16 ? DataType::kFloat16 : DataType::kFloat32;
    EXPECT_EQ(c2->outputs[0]->dtype, want);
    EXPECT_EQ(c2->i("to", -1), int64_t(want));
    EXPECT_EQ(c2->outputs[0]->layout, ir::Layout::kNHWC);
    EXPECT_EQ(node_named(*g, "quant_x")->precision, DataType::kInt8);
    ASSERT_EQ(g->outputs.size(), 1u);
    EXPECT_EQ(g->outputs[0]->name, "e");
    EXPECT_EQ(g->outputs[0]->dtype, DataType::kFloat32);
    EXPECT_EQ(g->outputs[0]->layout, ir::Layout::kLinear);
    expect_consistent(*g);
  }
}

TEST(AssignFormatsInt8, RowMajorInt8InputGetsAnInt8LayoutReformat) {
  auto g = std::make_unique<ir::Graph>();
  ir::Value* x = g->add_value("x");
  x->dtype = DataType::kInt8;
  x->dims = {1, 16, 6, 6};
  x->has_shape = true;
  g->inputs.push_back(x);
  ir::Value* w = g->add_constant("w", random_tensor(DataType::kInt8, {16, 16, 1, 1}, 4, -127.0, 128.0));
  ir::Value* y = g->add_value("y");
  ir::Node* n = g->add_node("QConv", "conv", {x, w}, {y});
  n->domain = "kiln";
  n->attrs["x_scale"] = attr_f(0.05f);
  n->attrs["w_scales"] = attr_floats(std::vector<float>(16, 0.01f));
  n->attrs["to"] = attr_i(int64_t(DataType::kInt8));
  n->attrs["y_scale"] = attr_f(0.1f);
  g->outputs.push_back(y);
  ir::infer_shapes(*g, nullptr);
  cuda_build::Options o;
  // In: int8 row-major -> int8 NHWC; out: int8 NHWC -> int8 row-major.
  EXPECT_EQ(cuda_build::assign_formats(*g, o), 2);
  const ir::Node* conv = node_named(*g, "conv");
  ASSERT_TRUE(conv);
  const ir::Value* xin = conv->in(0);
  EXPECT_EQ(xin->dtype, DataType::kInt8);
  EXPECT_EQ(xin->layout, ir::Layout::kNHWC);
  ASSERT_TRUE(xin->producer);
  EXPECT_EQ(xin->producer->op_type, "Reformat");
  EXPECT_EQ(xin->producer->precision, DataType::kInt8);
  EXPECT_EQ(g->outputs[0]->dtype, DataType::kInt8);
  EXPECT_EQ(g->outputs[0]->layout, ir::Layout::kLinear);
  expect_consistent(*g);
}

}  // namespace
}  // namespace kiln
