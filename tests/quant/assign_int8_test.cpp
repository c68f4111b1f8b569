// INT8 precision assignment: which layers go INT8, where quantize layers
// land, which scales each QConv carries (checked against scales computed here
// from an FP32 run), and that the INT8 graph stays close to FP32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "builder/clone.h"
#include "kiln/error.h"
#include "passes/pass_test.h"
#include "quant/assign_int8.h"

namespace kiln::test {
namespace {

std::map<std::string, ir::Attribute> conv_attrs(bool relu) {
  std::map<std::string, ir::Attribute> a = {{"pads", attr_ints({1, 1, 1, 1})}};
  if (relu) {
    a["activation"] = attr_s("Relu");
    a["activation_params"] = attr_floats({});
  }
  return a;
}

// x -> conv1(relu) -> h1 -> maxpool -> p -> conv2(relu) -> h2 -> conv3(relu, residual p) -> out
// Optionally a Sigmoid also reads h2 (a float reader).
std::unique_ptr<ir::Graph> block(bool float_reader) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 8, 8, 8});
  ir::Value* h1 = b.node("Conv", {x, b.random({16, 8, 3, 3}, 1), b.random({16}, 2)}, conv_attrs(true), 1, "conv1");
  ir::Value* p = b.node("MaxPool", {h1}, {{"kernel_shape", attr_ints({2, 2})}, {"strides", attr_ints({2, 2})}}, 1,
                        "pool");
  ir::Value* h2 = b.node("Conv", {p, b.random({16, 16, 3, 3}, 3), b.random({16}, 4)}, conv_attrs(true), 1, "conv2");
  ir::Value* h3 = b.node("Conv", {h2, b.random({16, 16, 3, 3}, 5), b.random({16}, 6), p}, conv_attrs(true), 1, "conv3");
  b.output(h3);
  if (float_reader) b.output(b.node("Sigmoid", {h2}, {}, 1, "sig"));
  return b.finish();
}

// max |t| / 127 of every float tensor, from an FP32 run on `inputs`.
std::map<std::string, float> minmax_scales(const ir::Graph& g, const std::map<std::string, HostTensor>& inputs) {
  auto exposed = clone_graph(g);
  for (auto& n : exposed->nodes())
    for (ir::Value* v : n->outputs)
      if (std::find(exposed->outputs.begin(), exposed->outputs.end(), v) == exposed->outputs.end())
        exposed->outputs.push_back(v);
  std::map<std::string, HostTensor> all = run_graph(*exposed, inputs);
  for (const auto& [name, t] : inputs) all[name] = t;
  std::map<std::string, float> s;
  for (const auto& [name, t] : all) {
    float m = 0;
    for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(t.as<float>()[i]));
    s[name] = m > 0 ? m / 127.f : 1.f;
  }
  return s;
}

const ir::Node* node_named(const ir::Graph& g, const std::string& name) {
  for (auto& n : g.nodes())
    if (n->name == name) return n.get();
  return nullptr;
}

TEST(AssignInt8, ConvChainStaysInt8BetweenLayers) {
  auto g = block(false);
  const auto inputs = random_inputs(*g, 7);
  const auto scales = minmax_scales(*g, inputs);
  auto q = clone_graph(*g);
  const auto r = quant::assign_int8(*q, scales, {});
  EXPECT_EQ(r.quantized, 3);
  EXPECT_EQ(r.int8_pools, 1);
  EXPECT_EQ(r.reformats, 1);  // only the network input is quantized

  const ir::Node* c1 = node_named(*q, "conv1");
  const ir::Node* pool = node_named(*q, "pool");
  const ir::Node* c2 = node_named(*q, "conv2");
  const ir::Node* c3 = node_named(*q, "conv3");
  ASSERT_TRUE(c1 && pool && c2 && c3);
  for (const ir::Node* n : {c1, c2, c3}) {
    EXPECT_EQ(n->op_type, "QConv");
    EXPECT_EQ(n->domain, "kiln");
    EXPECT_EQ(n->precision, DataType::kInt8);
  }
  const std::string x = g->inputs[0]->name, h1 = g->nodes()[0]->outputs[0]->name;
  const std::string h2 = g->nodes()[2]->outputs[0]->name;
  EXPECT_FLOAT_EQ(c1->f("x_scale", 0), scales.at(x));
  EXPECT_FLOAT_EQ(c1->f("y_scale", 0), scales.at(h1));
  EXPECT_EQ(c1->outputs[0]->dtype, DataType::kInt8);
  // The pool keeps its input's scale; conv2 reads it, conv3 takes it as residual.
  EXPECT_EQ(pool->precision, DataType::kInt8);
  EXPECT_EQ(pool->outputs[0]->dtype, DataType::kInt8);
  EXPECT_FLOAT_EQ(c2->f("x_scale", 0), scales.at(h1));
  EXPECT_FLOAT_EQ(c3->f("x_scale", 0), scales.at(h2));
  EXPECT_FLOAT_EQ(c3->f("z_scale", 0), scales.at(h1));
  // The graph output stays float.
  EXPECT_EQ(c3->i("to", -1), int64_t(DataType::kFloat32));
  EXPECT_FALSE(c3->has("y_scale"));
  EXPECT_EQ(c3->outputs[0]->dtype, DataType::kFloat32);
  EXPECT_EQ(q->outputs[0]->name, g->outputs[0]->name);

  // Weights: symmetric per output channel, max |w_k| / 127, values in [-127, 127].
  const ir::Tensor& w = *g->nodes()[0]->in(1)->constant;
  const ir::Tensor& wq = *c1->in(1)->constant;
  ASSERT_EQ(wq.dtype(), DataType::kInt8);
  const auto ws = c1->floats("w_scales");
  ASSERT_EQ(ws.size(), 16u);
  const int64_t per = w.numel() / 16;
  for (int64_t k = 0; k < 16; ++k) {
    double m = 0;
    for (int64_t i = 0; i < per; ++i) m = std::max(m, std::fabs(double(w.data<float>()[k * per + i])));
    EXPECT_NEAR(ws[size_t(k)], m / 127, 1e-7 * m);
    for (int64_t i = 0; i < per; ++i) {
      const double want = std::nearbyint(double(w.data<float>()[k * per + i]) / ws[size_t(k)]);
      EXPECT_NEAR(double(wq.data<int8_t>()[k * per + i]), want, 1.0);
    }
  }

  // Close to FP32: relative L2 error of the output (8-bit activations and
  // weights through three layers: a few percent at most).
  const auto ref = run_graph(*g, inputs);
  const auto got = run_graph(*q, inputs);
  const HostTensor& a = ref.at(g->outputs[0]->name);
  const HostTensor& b = got.at(g->outputs[0]->name);
  double d = 0, n = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    d += std::pow(double(b.as<float>()[i]) - a.as<float>()[i], 2);
    n += std::pow(double(a.as<float>()[i]), 2);
  }
  EXPECT_LT(std::sqrt(d / n), 0.03);
  EXPECT_GT(std::sqrt(d / n), 0.0);  // it did quantize
}

TEST(AssignInt8, FloatReaderKeepsTensorFloat) {
  auto g = block(true);
  const auto scales = minmax_scales(*g, random_inputs(*g, 3));
  auto q = clone_graph(*g);
  const auto r = quant::assign_int8(*q, scales, {});
  EXPECT_EQ(r.quantized, 3);
  // conv2's output feeds the Sigmoid too: conv2 writes float, and conv3 gets
  // a quantize layer for it.
  const ir::Node* c2 = node_named(*q, "conv2");
  EXPECT_EQ(c2->outputs[0]->dtype, DataType::kFloat32);
  EXPECT_EQ(r.reformats, 2);
  const ir::Node* c3 = node_named(*q, "conv3");
  ASSERT_TRUE(c3->in(0)->producer);
  EXPECT_EQ(c3->in(0)->producer->op_type, "Reformat");
  EXPECT_FLOAT_EQ(c3->in(0)->producer->f("scale", 0), scales.at(c2->outputs[0]->name));
}

TEST(AssignInt8, KeptLayersAndMissingScalesStayFloat) {
  auto g = block(false);
  auto scales = minmax_scales(*g, random_inputs(*g, 5));
  scales.erase(g->nodes()[2]->outputs[0]->name);  // conv3's input has no scale
  quant::Int8Options o;
  o.keep_float = {"conv2"};
  auto q = clone_graph(*g);
  const auto r = quant::assign_int8(*q, scales, o);
  EXPECT_EQ(r.quantized, 1);
  EXPECT_EQ(node_named(*q, "conv2")->op_type, "Conv");
  EXPECT_EQ(node_named(*q, "conv3")->op_type, "Conv");
  // conv1's readers (the pool, then float conv2 / conv3) are float: it writes float.
  EXPECT_EQ(node_named(*q, "conv1")->outputs[0]->dtype, DataType::kFloat32);
  EXPECT_EQ(r.int8_pools, 0);
  ASSERT_EQ(r.kept_float.size(), 2u);
  EXPECT_NE(r.kept_float[0].find("conv2: kept float by request"), std::string::npos);
  EXPECT_NE(r.kept_float[1].find("conv3: no scale for input"), std::string::npos);
}

TEST(AssignInt8, KeptLayersCarryTheirReason) {
  auto g = block(false);
  const auto scales = minmax_scales(*g, random_inputs(*g, 5));
  quant::Int8Options o;
  o.keep_float = {"conv1", "conv3"};
  o.keep_reason["conv3"] = "returned to float by the INT8 guard";
  auto q = clone_graph(*g);
  const auto r = quant::assign_int8(*q, scales, o);
  ASSERT_EQ(r.kept_float.size(), 2u);
  EXPECT_EQ(r.kept_float[0], "conv1: kept float by request");
  EXPECT_EQ(r.kept_float[1], "conv3: returned to float by the INT8 guard");
}

TEST(AssignInt8, RejectsNonFiniteScale) {
  auto g = block(false);
  auto scales = minmax_scales(*g, random_inputs(*g, 5));
  scales[g->inputs[0]->name] = std::nanf("");
  try {
    quant::assign_int8(*g, scales, {});
    FAIL() << "expected kBadInput";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find(g->inputs[0]->name), std::string::npos);
  }
}

TEST(AssignInt8, RecordedQdqScalesParse) {
  ir::Graph g;
  g.metadata["int8_scale/x"] = "3c000000";  // 2^-7
  g.metadata["other"] = "1";
  const auto s = quant::recorded_qdq_scales(g);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s.at("x"), 0.0078125f);
  g.metadata["int8_scale/y"] = "zz";
  EXPECT_THROW(quant::recorded_qdq_scales(g), Error);
}

}  // namespace
}  // namespace kiln::test
