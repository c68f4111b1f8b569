// fold_qdq: activation QuantizeLinear -> DequantizeLinear pairs become plain
// edges with the scale kept in metadata; pairs kiln's INT8 layers cannot
// honour stay as real ops. The folded graph must equal the graph written
// without the pairs, structurally and bit for bit in its outputs (folding
// drops the pair's rounding by design, so the comparison is with the
// unquantized graph, not with the quantized one).
#include <gtest/gtest.h>

#include <cstring>

#include "backends/cpu/kernel.h"
#include "builder/clone.h"
#include "passes/pass_test.h"

namespace kiln::test {
namespace {

std::map<std::string, ir::Attribute> pads1() { return {{"pads", attr_ints({1, 1, 1, 1})}}; }

ir::Value* int8_scalar(GraphBuilder& b, int v) { return b.constant(tensor_of(DataType::kInt8, {}, {double(v)})); }

// x -> QuantizeLinear(s, int8 0) -> DequantizeLinear(s, int8 0 or none).
ir::Value* qdq(GraphBuilder& b, ir::Value* x, float s, bool dq_zero_point = true) {
  ir::Value* q = b.node("QuantizeLinear", {x, b.scalar(s), int8_scalar(b, 0)});
  std::vector<ir::Value*> dq_in = {q, b.scalar(s)};
  if (dq_zero_point) dq_in.push_back(int8_scalar(b, 0));
  return b.node("DequantizeLinear", dq_in);
}

struct Folded {
  std::unique_ptr<ir::Graph> graph;
  std::vector<std::string> notes;
  bool changed = false;
};

Folded run_fold(const ir::Graph& before) {
  Folded f;
  f.graph = clone_graph(before);
  auto pass = passes::make_fold_qdq();
  passes::PassContext ctx;
  cpu::ConstantEvaluator eval;
  ctx.evaluator = &eval;
  f.changed = pass->run(*f.graph, ctx);
  f.graph->remove_unused_values();
  ir::infer_shapes(*f.graph, nullptr);
  f.notes = ctx.notes;
  return f;
}

// Outputs of `a` and `b` (by position) on the same random inputs, bit for bit.
void expect_same_outputs(const ir::Graph& a, const ir::Graph& b) {
  auto inputs = random_inputs(b, 11);
  std::map<std::string, HostTensor> a_inputs;
  ASSERT_EQ(a.inputs.size(), b.inputs.size());
  for (size_t k = 0; k < a.inputs.size(); ++k) a_inputs[a.inputs[k]->name] = inputs.at(b.inputs[k]->name);
  auto got = run_graph(a, a_inputs);
  auto want = run_graph(b, inputs);
  ASSERT_EQ(a.outputs.size(), b.outputs.size());
  for (size_t k = 0; k < a.outputs.size(); ++k) {
    const HostTensor& g = got.at(a.outputs[k]->name);
    const HostTensor& w = want.at(b.outputs[k]->name);
    EXPECT_EQ(g.shape, w.shape);
    EXPECT_TRUE(g.data == w.data) << "output " << k << " differs";
  }
}

// The pass must leave `before` as it is (no rewrite, no metadata, same outputs).
void expect_not_folded(const ir::Graph& before) {
  Folded f = run_fold(before);
  EXPECT_FALSE(f.changed);
  EXPECT_EQ(structure(*f.graph), structure(before));
  EXPECT_TRUE(f.graph->metadata.empty());
  EXPECT_TRUE(f.notes.empty());
  expect_same_outputs(*f.graph, before);
}

int count_op(const ir::Graph& g, const std::string& op) {
  int n = 0;
  for (auto& node : g.nodes()) n += node->op_type == op;
  return n;
}

TEST(FoldQdq, ConvReluConvPairsFoldAndScalesAreRecorded) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 8, 8});
  ir::Value* h = b.node("Relu", {b.node("Conv", {qdq(b, x, 0.03125f), b.random({4, 3, 3, 3}, 1), b.random({4}, 2)}, pads1())});
  b.output(b.node("Conv", {qdq(b, h, 0.1f, false), b.random({5, 4, 3, 3}, 3)}, pads1()));
  auto before = b.finish();
  const std::string x_name = x->name, h_name = h->name;

  GraphBuilder e;
  ir::Value* ex = e.input({1, 3, 8, 8});
  ir::Value* eh = e.node("Relu", {e.node("Conv", {ex, e.random({4, 3, 3, 3}, 1), e.random({4}, 2)}, pads1())});
  e.output(e.node("Conv", {eh, e.random({5, 4, 3, 3}, 3)}, pads1()));
  auto expected = e.finish();

  Folded f = run_fold(*before);
  EXPECT_TRUE(f.changed);
  EXPECT_EQ(structure(*f.graph), structure(*expected));
  expect_same_outputs(*f.graph, *expected);
  // 0.03125f = 2^-5 -> 0x3d000000; 0.1f -> 0x3dcccccd (IEEE-754 single).
  EXPECT_EQ(f.graph->metadata.at("int8_scale/" + x_name), "3d000000");
  EXPECT_EQ(f.graph->metadata.at("int8_scale/" + h_name), "3dcccccd");
  EXPECT_EQ(f.graph->metadata.size(), 2u);
  ASSERT_EQ(f.notes.size(), 2u);
  EXPECT_NE(f.notes[0].find("QuantizeLinear"), std::string::npos) << f.notes[0];
  EXPECT_NE(f.notes[0].find("'" + x_name + "'"), std::string::npos) << f.notes[0];
  EXPECT_NE(f.notes[1].find("0x3dcccccd"), std::string::npos) << f.notes[1];
}

TEST(FoldQdq, OnePairSharedByTwoReaders) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 4, 6, 6});
  ir::Value* h = b.node("Relu", {x});
  ir::Value* d = qdq(b, h, 0.25f);
  b.output(b.node("Conv", {d, b.random({4, 4, 3, 3}, 1)}, pads1()));
  b.output(b.node("Conv", {d, b.random({2, 4, 1, 1}, 2)}));
  auto before = b.finish();

  GraphBuilder e;
  ir::Value* eh = e.node("Relu", {e.input({1, 4, 6, 6})});
  e.output(e.node("Conv", {eh, e.random({4, 4, 3, 3}, 1)}, pads1()));
  e.output(e.node("Conv", {eh, e.random({2, 4, 1, 1}, 2)}));
  auto expected = e.finish();

  Folded f = run_fold(*before);
  EXPECT_EQ(structure(*f.graph), structure(*expected));
  expect_same_outputs(*f.graph, *expected);
  EXPECT_EQ(f.graph->metadata.at("int8_scale/" + h->name), "3e800000");  // 0.25f
}

TEST(FoldQdq, PairOnAGraphOutputKeepsTheOutputName) {
  GraphBuilder b;
  ir::Value* h = b.node("Relu", {b.input({2, 5})});
  ir::Value* y = qdq(b, h, 0.5f);
  b.output(y);
  auto before = b.finish();
  const std::string out_name = y->name;

  GraphBuilder e;
  e.output(e.node("Relu", {e.input({2, 5})}));
  auto expected = e.finish();

  Folded f = run_fold(*before);
  EXPECT_EQ(structure(*f.graph), structure(*expected));
  expect_same_outputs(*f.graph, *expected);
  ASSERT_EQ(f.graph->outputs.size(), 1u);
  EXPECT_EQ(f.graph->outputs[0]->name, out_name);
  // The scale is recorded under the name the tensor has after the rewrite.
  EXPECT_EQ(f.graph->metadata.at("int8_scale/" + out_name), "3f000000");
}

TEST(FoldQdq, RecordedScaleFollowsARenameToTheOutputName) {
  // h feeds a Conv through one pair and the graph output through another:
  // the second fold renames h to the output's name, and the key moves along.
  GraphBuilder b;
  ir::Value* h = b.node("Relu", {b.input({1, 2, 4, 4})});
  b.output(b.node("Conv", {qdq(b, h, 0.5f), b.random({3, 2, 1, 1}, 1)}));
  ir::Value* y = qdq(b, h, 0.5f);
  b.output(y);
  auto before = b.finish();
  const std::string h_name = h->name, y_name = y->name;

  GraphBuilder e;
  ir::Value* eh = e.node("Relu", {e.input({1, 2, 4, 4})});
  e.output(e.node("Conv", {eh, e.random({3, 2, 1, 1}, 1)}));
  e.output(eh);
  auto expected = e.finish();

  Folded f = run_fold(*before);
  EXPECT_EQ(structure(*f.graph), structure(*expected));
  expect_same_outputs(*f.graph, *expected);
  EXPECT_EQ(f.graph->outputs[1]->name, y_name);
  EXPECT_EQ(f.graph->metadata.count("int8_scale/" + h_name), 0u);
  EXPECT_EQ(f.graph->metadata.at("int8_scale/" + y_name), "3f000000");
  EXPECT_EQ(f.graph->metadata.size(), 1u);
}

TEST(FoldQdq, Opset21Int8OutputWithoutZeroPoints) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 2, 4, 4});
  ir::Value* q = b.node("QuantizeLinear", {x, b.scalar(0.125f)}, {{"output_dtype", attr_i(3)}});
  ir::Value* d = b.node("DequantizeLinear", {q, b.scalar(0.125f)});
  b.output(b.node("Conv", {d, b.random({3, 2, 1, 1}, 4)}));
  auto before = b.finish();

  GraphBuilder e;
  e.output(e.node("Conv", {e.input({1, 2, 4, 4}), e.random({3, 2, 1, 1}, 4)}));
  auto expected = e.finish();

  Folded f = run_fold(*before);
  EXPECT_EQ(structure(*f.graph), structure(*expected));
  expect_same_outputs(*f.graph, *expected);
  EXPECT_EQ(f.graph->metadata.at("int8_scale/" + x->name), "3e000000");  // 0.125f
}

TEST(FoldQdq, TwoPairsOnOneTensorKeepTheFirstScale) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 2, 4, 4});
  b.output(b.node("Conv", {qdq(b, x, 0.5f), b.random({3, 2, 1, 1}, 1)}));
  b.output(b.node("Conv", {qdq(b, x, 0.25f), b.random({3, 2, 1, 1}, 2)}));
  auto before = b.finish();

  GraphBuilder e;
  ir::Value* ex = e.input({1, 2, 4, 4});
  e.output(e.node("Conv", {ex, e.random({3, 2, 1, 1}, 1)}));
  e.output(e.node("Conv", {ex, e.random({3, 2, 1, 1}, 2)}));
  auto expected = e.finish();

  Folded f = run_fold(*before);
  EXPECT_EQ(structure(*f.graph), structure(*expected));
  expect_same_outputs(*f.graph, *expected);
  EXPECT_EQ(f.graph->metadata.at("int8_scale/" + x->name), "3f000000");
  ASSERT_EQ(f.notes.size(), 2u);
  EXPECT_NE(f.notes[1].find("already had scale 0x3f000000"), std::string::npos) << f.notes[1];
}

// Constant int8 weights behind a per-axis DequantizeLinear are fold_constants'
// job: run with it, the Conv ends with float weights q * scale[k].
TEST(FoldQdq, WithFoldConstantsWeightsBecomeFloat) {
  const ir::Dims wd = {4, 3, 3, 3};
  ir::Tensor q = random_tensor(DataType::kInt8, wd, 9, -127, 127);
  const std::vector<float> s = {0.01f, 0.02f, 0.004f, 0.3f};
  ir::Tensor w(DataType::kFloat32, wd);
  for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = float(double(q.data<int8_t>()[i]) * s[size_t(i / 27)]);

  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 6, 6});
  ir::Value* wq = b.node("DequantizeLinear", {b.constant(q), b.constant(ir::Tensor::from_float(s, {4})),
                                             b.constant(ir::Tensor(DataType::kInt8, {4}))},
                         {{"axis", attr_i(0)}});
  b.output(b.node("Conv", {qdq(b, x, 0.0625f), wq}, pads1()));
  auto before = b.finish();

  GraphBuilder e;
  ir::Value* ex = e.input({1, 3, 6, 6});
  e.output(e.node("Conv", {ex, e.constant(w)}, pads1()));
  auto expected = e.finish();

  passes::PassManager pm;
  pm.add(passes::make_fold_constants());
  pm.add(passes::make_fold_qdq());
  auto after = clone_graph(*before);
  cpu::ConstantEvaluator eval;
  auto records = pm.run(*after, &eval);
  EXPECT_EQ(structure(*after), structure(*expected));
  expect_same_outputs(*after, *expected);  // the folded weights are exactly q * scale
  EXPECT_EQ(count_op(*after, "DequantizeLinear"), 0);
  EXPECT_EQ(after->metadata.at("int8_scale/" + x->name), "3d800000");  // 0.0625f
  bool saw_fold_qdq = false;
  for (auto& r : records) saw_fold_qdq = saw_fold_qdq || (r.pass == "fold_qdq" && r.notes.size() == 1);
  EXPECT_TRUE(saw_fold_qdq);
}

// ---- pairs that must stay -------------------------------------------------
// Each graph differs from a foldable one in the one property under test: the
// pair reads a Relu output (not the graph input), so nothing else blocks it.

TEST(FoldQdq, Uint8ZeroPointStays) {
  GraphBuilder b;
  ir::Value* x = b.node("Relu", {b.input({1, 2, 4, 4})});
  ir::Value* zp = b.constant(ir::Tensor(DataType::kUInt8, {}));
  ir::Value* q = b.node("QuantizeLinear", {x, b.scalar(0.5f), zp});
  b.output(b.node("Conv", {b.node("DequantizeLinear", {q, b.scalar(0.5f), zp}), b.random({3, 2, 1, 1}, 1)}));
  expect_not_folded(*b.finish());
}

TEST(FoldQdq, AbsentZeroPointMeansUint8AndStays) {
  GraphBuilder b;
  ir::Value* x = b.node("Relu", {b.input({1, 2, 4, 4})});
  ir::Value* q = b.node("QuantizeLinear", {x, b.scalar(0.5f)});
  b.output(b.node("Conv", {b.node("DequantizeLinear", {q, b.scalar(0.5f)}), b.random({3, 2, 1, 1}, 1)}));
  expect_not_folded(*b.finish());
}

TEST(FoldQdq, NonzeroZeroPointStays) {
  GraphBuilder b;
  ir::Value* x = b.node("Relu", {b.input({1, 2, 4, 4})});
  ir::Value* q = b.node("QuantizeLinear", {x, b.scalar(0.5f), int8_scalar(b, 3)});
  b.output(b.node("DequantizeLinear", {q, b.scalar(0.5f), int8_scalar(b, 3)}));
  expect_not_folded(*b.finish());
}

TEST(FoldQdq, PerAxisActivationScaleStays) {
  // int8 through output_dtype, no zero points: only the scale's shape differs.
  GraphBuilder b;
  ir::Value* x = b.node("Relu", {b.input({1, 3, 4, 4})});
  ir::Value* s = b.constant(ir::Tensor::from_float({0.5f, 0.25f, 0.125f}, {3}));
  ir::Value* q = b.node("QuantizeLinear", {x, s}, {{"axis", attr_i(1)}, {"output_dtype", attr_i(3)}});
  b.output(b.node("DequantizeLinear", {q, s}, {{"axis", attr_i(1)}}));
  expect_not_folded(*b.finish());
}

TEST(FoldQdq, DifferentScalesStay) {
  GraphBuilder b;
  ir::Value* x = b.node("Relu", {b.input({1, 2, 4, 4})});
  ir::Value* q = b.node("QuantizeLinear", {x, b.scalar(0.5f), int8_scalar(b, 0)});
  b.output(b.node("DequantizeLinear", {q, b.scalar(0.25f), int8_scalar(b, 0)}));
  expect_not_folded(*b.finish());
}

TEST(FoldQdq, QuantizedValueUsedElsewhereStays) {
  {  // also a graph output
    GraphBuilder b;
    ir::Value* x = b.node("Relu", {b.input({2, 6})});
    ir::Value* q = b.node("QuantizeLinear", {x, b.scalar(0.5f), int8_scalar(b, 0)});
    b.output(b.node("DequantizeLinear", {q, b.scalar(0.5f), int8_scalar(b, 0)}));
    b.output(q);
    expect_not_folded(*b.finish());
  }
  {  // read by two DequantizeLinear nodes
    GraphBuilder b;
    ir::Value* x = b.node("Relu", {b.input({2, 6})});
    ir::Value* q = b.node("QuantizeLinear", {x, b.scalar(0.5f), int8_scalar(b, 0)});
    b.output(b.node("DequantizeLinear", {q, b.scalar(0.5f), int8_scalar(b, 0)}));
    b.output(b.node("DequantizeLinear", {q, b.scalar(0.5f)}));
    expect_not_folded(*b.finish());
  }
}

TEST(FoldQdq, RuntimeScaleStays) {
  GraphBuilder b;
  ir::Value* x = b.node("Relu", {b.input({2, 6})});
  ir::Value* s = b.input({});
  ir::Value* q = b.node("QuantizeLinear", {x, s, int8_scalar(b, 0)});
  b.output(b.node("DequantizeLinear", {q, s, int8_scalar(b, 0)}));
  auto before = b.finish();
  // random_inputs may draw a negative scale; only the structure matters here.
  Folded f = run_fold(*before);
  EXPECT_FALSE(f.changed);
  EXPECT_EQ(structure(*f.graph), structure(*before));
  EXPECT_TRUE(f.graph->metadata.empty());
}

TEST(FoldQdq, InputToOutputPairStays) {
  // Folding would make the graph input its own output under another name.
  GraphBuilder b;
  ir::Value* x = b.input({2, 6});
  b.output(qdq(b, x, 0.5f));
  expect_not_folded(*b.finish());
}

}  // namespace
}  // namespace kiln::test
