#include <gtest/gtest.h>

#include <limits>

#include "passes/pass_test.h"

namespace kiln::test {
namespace {

struct Want {
  std::vector<std::string> ops;
  std::vector<int64_t> operand, swap;
  std::vector<float> alpha, beta;
};

std::map<std::string, ir::Attribute> fused_attrs(const Want& w) {
  ir::Attribute s;
  s.kind = ir::Attribute::Kind::kStrings;
  s.strings = w.ops;
  return {{"ops", s}, {"operand", attr_ints(w.operand)}, {"swap", attr_ints(w.swap)},
          {"alpha", attr_floats(w.alpha)}, {"beta", attr_floats(w.beta)}};
}

// A FusedElementwise node in an expected graph (domain set before inference).
ir::Value* fused_node(GraphBuilder& b, std::vector<ir::Value*> ins, const Want& w) {
  ir::Value* v = b.node("FusedElementwise", std::move(ins), fused_attrs(w));
  v->producer->domain = "kiln";
  return v;
}

const ir::Node* find_fused(const ir::Graph& g, size_t which = 0) {
  for (auto& n : g.nodes())
    if (n->op_type == "FusedElementwise" && which-- == 0) return n.get();
  return nullptr;
}

void expect_attrs(const ir::Node* n, const Want& w) {
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->domain, "kiln");
  EXPECT_EQ(n->attrs.at("ops").strings, w.ops);
  EXPECT_EQ(n->ints("operand"), w.operand);
  EXPECT_EQ(n->ints("swap"), w.swap);
  EXPECT_EQ(n->floats("alpha"), w.alpha);
  EXPECT_EQ(n->floats("beta"), w.beta);
}

// The whole standard pipeline as one pass, for check_pass.
class Pipeline : public passes::Pass {
 public:
  const char* name() const override { return "standard pipeline"; }
  bool run(ir::Graph& g, passes::PassContext& ctx) override {
    return !passes::PassManager::standard().run(g, ctx.evaluator).empty();
  }
};

std::unique_ptr<ir::Graph> run_check(const ir::Graph& before, const ir::Graph* expected) {
  auto pass = passes::make_fuse_elementwise_chain();
  return check_pass(*pass, before, expected);
}

TEST(FuseElementwiseChain, AddRelu) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 4, 5, 5});
  ir::Value* y = b.input({2, 4, 5, 5});
  ir::Value* s = b.node("Add", {x, y}, {}, 1, "add");
  b.output(b.node("Relu", {s}, {}, 1, "relu"));
  auto before = b.finish();

  Want w{{"Add", "Relu"}, {1, -1}, {0, 0}, {0, 0}, {0, 0}};
  GraphBuilder e;
  ir::Value* ex = e.input({2, 4, 5, 5});
  ir::Value* ey = e.input({2, 4, 5, 5});
  e.output(fused_node(e, {ex, ey}, w));
  auto expected = e.finish();

  auto after = run_check(*before, expected.get());
  const ir::Node* f = find_fused(*after);
  expect_attrs(f, w);
  EXPECT_EQ(f->name, "add");
  EXPECT_EQ(f->fused, (std::vector<std::string>{"add", "relu"}));
  EXPECT_EQ(after->outputs[0]->name, before->outputs[0]->name);
}

TEST(FuseElementwiseChain, SqueezeExciteTail) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 8, 6, 6});
  ir::Value* pooled = b.node("GlobalAveragePool", {x});
  ir::Value* s = b.node("HardSigmoid", {pooled}, {{"alpha", attr_f(1.f / 6)}, {"beta", attr_f(0.5f)}});
  b.output(b.node("Mul", {x, s}));
  auto before = b.finish();

  Want w{{"HardSigmoid", "Mul"}, {-1, 1}, {0, 1}, {1.f / 6, 0}, {0.5f, 0}};
  GraphBuilder e;
  ir::Value* ex = e.input({2, 8, 6, 6});
  ir::Value* ep = e.node("GlobalAveragePool", {ex});
  e.output(fused_node(e, {ep, ex}, w));
  auto expected = e.finish();
  expect_attrs(find_fused(*run_check(*before, expected.get())), w);
}

TEST(FuseElementwiseChain, SiluReadsChainStartTwice) {
  for (bool sig_first : {true, false}) {
    GraphBuilder b;
    ir::Value* x = b.input({3, 16, 7});
    ir::Value* s = b.node("Sigmoid", {x});
    b.output(sig_first ? b.node("Mul", {s, x}) : b.node("Mul", {x, s}));
    auto before = b.finish();

    Want w{{"Sigmoid", "Mul"}, {-1, 0}, {0, sig_first ? 0 : 1}, {0, 0}, {0, 0}};
    GraphBuilder e;
    ir::Value* ex = e.input({3, 16, 7});
    e.output(fused_node(e, {ex}, w));
    auto expected = e.finish();
    expect_attrs(find_fused(*run_check(*before, expected.get())), w);
  }
}

TEST(FuseElementwiseChain, ScaleShiftThenHardSwish) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 6, 9, 9});
  ir::Value* m = b.node("Mul", {x, b.random({1, 6, 1, 1}, 1)});
  ir::Value* a = b.node("Add", {m, b.random({1, 6, 1, 1}, 2)});
  b.output(b.node("HardSwish", {a}));
  auto before = b.finish();

  Want w{{"Mul", "Add", "HardSwish"}, {1, 2, -1}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
  GraphBuilder e;
  ir::Value* ex = e.input({1, 6, 9, 9});
  e.output(fused_node(e, {ex, e.random({1, 6, 1, 1}, 1), e.random({1, 6, 1, 1}, 2)}, w));
  auto expected = e.finish();
  expect_attrs(find_fused(*run_check(*before, expected.get())), w);
}

TEST(FuseElementwiseChain, LongChainWithSwapClipPowAndSharedOperand) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 3, 4, 5});
  ir::Value* r = b.input({1, 3, 1, 1});
  ir::Value* t = b.node("Sub", {b.scalar(1.5f), x});                  // chain on the right
  t = b.node("Clip", {t, b.scalar(-1.f), b.scalar(2.f)});
  t = b.node("Pow", {t, b.scalar(2.f)});
  t = b.node("Div", {r, t});                                            // runtime operand, swapped
  t = b.node("LeakyRelu", {t}, {{"alpha", attr_f(0.3f)}});
  t = b.node("Max", {t, r});                                            // r again: same input index
  t = b.node("Elu", {t});
  b.output(b.node("Tanh", {t}));
  auto before = b.finish();

  Want w{{"Sub", "Clip", "Pow", "Div", "LeakyRelu", "Max", "Elu", "Tanh"},
         {1, -1, 2, 3, -1, 3, -1, -1},
         {1, 0, 0, 1, 0, 0, 0, 0},
         {0, -1.f, 0, 0, 0.3f, 0, 1.f, 0},
         {0, 2.f, 0, 0, 0, 0, 0, 0}};
  auto pass = passes::make_fuse_elementwise_chain();
  auto after = check_pass(*pass, *before, nullptr);
  ASSERT_EQ(after->nodes().size(), 1u);
  const ir::Node* f = find_fused(*after);
  expect_attrs(f, w);
  ASSERT_EQ(f->inputs.size(), 4u);
  EXPECT_EQ(f->inputs[0]->name, x->name);
  EXPECT_TRUE(f->inputs[1]->is_constant());
  EXPECT_TRUE(f->inputs[2]->is_constant());
  EXPECT_EQ(f->inputs[3]->name, r->name);
  EXPECT_EQ(f->fused.size(), 8u);
}

TEST(FuseElementwiseChain, ClipWithoutBoundsAndNote) {
  GraphBuilder b;
  ir::Value* x = b.input({4, 4});
  ir::Value* t = b.node("Neg", {x}, {}, 1, "neg");
  t = b.node("Clip", {t, nullptr, b.scalar(0.5f)}, {}, 1, "clip");
  b.output(b.node("Exp", {t}, {}, 1, "exp"));
  auto before = b.finish();
  auto after = run_check(*before, nullptr);
  const float inf = std::numeric_limits<float>::infinity();
  expect_attrs(find_fused(*after), {{"Neg", "Clip", "Exp"}, {-1, -1, -1}, {0, 0, 0}, {0, -inf, 0}, {0, 0.5f, 0}});

  GraphBuilder b2;
  ir::Value* x2 = b2.input({4, 4});
  ir::Value* t2 = b2.node("Neg", {x2}, {}, 1, "neg");
  b2.output(b2.node("Abs", {t2}, {}, 1, "abs"));
  auto g2 = b2.finish();
  passes::PassContext ctx;
  EXPECT_TRUE(passes::make_fuse_elementwise_chain()->run(*g2, ctx));
  EXPECT_EQ(ctx.notes, (std::vector<std::string>{"neg+abs -> FusedElementwise"}));
}

TEST(FuseElementwiseChain, HeadMayReadOneValueTwice) {
  GraphBuilder b;
  ir::Value* x = b.input({5, 3});
  ir::Value* sq = b.node("Mul", {x, x});
  b.output(b.node("Sqrt", {sq}));
  auto before = b.finish();
  Want w{{"Mul", "Sqrt"}, {0, -1}, {0, 0}, {0, 0}, {0, 0}};
  GraphBuilder e;
  e.output(fused_node(e, {e.input({5, 3})}, w));
  auto expected = e.finish();
  expect_attrs(find_fused(*run_check(*before, expected.get())), w);
}

TEST(FuseElementwiseChain, SharedIntermediateSplitsTheChain) {
  // t = Add(x, y) has two readers: Add stays alone, Relu -> Sigmoid fuses.
  GraphBuilder b;
  ir::Value* x = b.input({2, 5});
  ir::Value* y = b.input({2, 5});
  ir::Value* t = b.node("Add", {x, y});
  b.output(b.node("Sigmoid", {b.node("Relu", {t})}));
  b.output(b.node("Neg", {t}));
  auto before = b.finish();

  GraphBuilder e;
  ir::Value* ex = e.input({2, 5});
  ir::Value* ey = e.input({2, 5});
  ir::Value* et = e.node("Add", {ex, ey});
  e.output(fused_node(e, {et}, {{"Relu", "Sigmoid"}, {-1, -1}, {0, 0}, {0, 0}, {0, 0}}));
  e.output(e.node("Neg", {et}));
  auto expected = e.finish();
  run_check(*before, expected.get());
}

TEST(FuseElementwiseChain, GraphOutputIntermediateIsKept) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 5});
  ir::Value* t = b.node("Add", {x, b.scalar(1.f)});
  b.output(t);
  b.output(b.node("Relu", {t}));
  auto before = b.finish();
  run_check(*before, before.get());
}

TEST(FuseElementwiseChain, RuntimeClipBoundIsNotFused) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 5});
  ir::Value* hi = b.input({});
  ir::Value* t = b.node("Add", {x, b.scalar(1.f)});
  b.output(b.node("Clip", {t, b.scalar(0.f), hi}));
  auto before = b.finish();
  run_check(*before, before.get());
}

TEST(FuseElementwiseChain, RuntimeExponentAndSquaredIntermediateAreNotFused) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 5});
  ir::Value* e = b.input({2, 5});
  ir::Value* t = b.node("Abs", {x});
  b.output(b.node("Pow", {t, e}));
  ir::Value* u = b.node("Neg", {x});
  b.output(b.node("Mul", {u, u}));
  auto before = b.finish();
  run_check(*before, before.get());
}

TEST(FuseElementwiseChain, NonFp32IsNotFused) {
  for (DataType dt : {DataType::kInt32, DataType::kFloat16}) {
    GraphBuilder b;
    ir::Value* x = b.input({3, 4}, dt);
    ir::Value* y = b.input({3, 4}, dt);
    b.output(b.node("Relu", {b.node("Add", {x, y})}));
    auto before = b.finish();
    run_check(*before, before.get());
  }
}

TEST(FuseElementwiseChain, StandardPipelineLeavesConvActivationToTheConv) {
  // Conv+Relu and the squeeze-excite Conv+HardSigmoid go to the Conv
  // epilogues first; the Mul (by the SE scale and by a runtime per-channel
  // scale), the skip Add and the final Relu become one fused node.
  GraphBuilder b;
  ir::Value* x = b.input({1, 4, 6, 6});
  ir::Value* s = b.input({1, 4, 1, 1});
  ir::Value* c1 = b.node("Relu", {b.node("Conv", {x, b.random({4, 4, 3, 3}, 1)}, {{"pads", attr_ints({1, 1, 1, 1})}})});
  ir::Value* se = b.node("HardSigmoid", {b.node("Conv", {b.node("GlobalAveragePool", {c1}), b.random({4, 4, 1, 1}, 2)})});
  ir::Value* m = b.node("Mul", {b.node("Mul", {c1, se}), s});
  b.output(b.node("Relu", {b.node("Add", {m, x})}));
  auto before = b.finish();
  Pipeline pipeline;
  auto after = check_pass(pipeline, *before, nullptr);
  int conv_act = 0, fused = 0;
  for (auto& n : after->nodes()) {
    conv_act += n->op_type == "Conv" && n->has("activation");
    fused += n->op_type == "FusedElementwise";
  }
  EXPECT_EQ(conv_act, 2);
  EXPECT_EQ(fused, 1);
  const ir::Node* f = find_fused(*after);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->attrs.at("ops").strings, (std::vector<std::string>{"Mul", "Mul", "Add", "Relu"}));
}

}  // namespace
}  // namespace kiln::test
