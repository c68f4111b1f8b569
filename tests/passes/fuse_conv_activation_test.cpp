#include <gtest/gtest.h>

#include "passes/pass_test.h"

namespace kiln::test {
namespace {

struct Case {
  const char* op;
  std::map<std::string, ir::Attribute> attrs;
  bool clip_bounds;
  std::vector<float> params;  // what the fused Conv must carry
};

TEST(FuseConvActivation, EveryActivationBecomesOneConv) {
  std::vector<Case> cases = {{"Relu", {}, false, {}},
                             {"Clip", {}, true, {0.f, 0.5f}},
                             {"LeakyRelu", {{"alpha", attr_f(0.2f)}}, false, {0.2f}},
                             {"Sigmoid", {}, false, {}},
                             {"HardSigmoid", {{"alpha", attr_f(0.25f)}, {"beta", attr_f(0.4f)}}, false, {0.25f, 0.4f}},
                             {"HardSwish", {}, false, {}},
                             {"Tanh", {}, false, {}}};
  for (const Case& c : cases) {
    GraphBuilder b;
    ir::Value* x = b.input({2, 3, 7, 7});
    ir::Value* y = b.node("Conv", {x, b.random({5, 3, 3, 3}, 1), b.random({5}, 2)}, {{"pads", attr_ints({1, 1, 1, 1})}});
    std::vector<ir::Value*> act_in = {y};
    if (c.clip_bounds) act_in = {y, b.scalar(0.f), b.scalar(0.5f)};
    b.output(b.node(c.op, act_in, c.attrs));
    auto before = b.finish();

    GraphBuilder e;
    ir::Value* ex = e.input({2, 3, 7, 7});
    ir::Value* ey = e.node("Conv", {ex, e.random({5, 3, 3, 3}, 1), e.random({5}, 2)},
                           {{"pads", attr_ints({1, 1, 1, 1})}, {"activation", attr_s(c.op)},
                            {"activation_params", attr_floats(c.params)}});
    e.output(ey);
    auto expected = e.finish();
    auto pass = passes::make_fuse_conv_activation();
    auto after = check_pass(*pass, *before, expected.get());
    EXPECT_EQ(after->outputs[0]->name, before->outputs[0]->name) << c.op;
    EXPECT_EQ(after->nodes()[0]->floats("activation_params"), c.params) << c.op;
  }
}

TEST(FuseConvActivation, KeepsActivationWhenConvOutputIsShared) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 5, 5});
  ir::Value* y = b.node("Conv", {x, b.random({4, 3, 1, 1}, 1)});
  b.output(b.node("Relu", {y}));
  b.output(b.node("Sigmoid", {y}));
  auto before = b.finish();
  auto pass = passes::make_fuse_conv_activation();
  check_pass(*pass, *before, before.get());
}

TEST(FuseConvActivation, ClipWithRuntimeBoundIsNotFused) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 5, 5});
  ir::Value* hi = b.input({});
  ir::Value* y = b.node("Conv", {x, b.random({4, 3, 1, 1}, 1)});
  b.output(b.node("Clip", {y, b.scalar(0.f), hi}));
  auto before = b.finish();
  auto pass = passes::make_fuse_conv_activation();
  check_pass(*pass, *before, before.get());
}

// Gemm carries the same `activation` attributes as Conv.
TEST(FuseConvActivation, GemmTakesEveryActivation) {
  std::vector<Case> cases = {{"Relu", {}, false, {}},
                             {"Clip", {}, true, {-0.25f, 0.5f}},
                             {"LeakyRelu", {{"alpha", attr_f(0.3f)}}, false, {0.3f}},
                             {"Sigmoid", {}, false, {}},
                             {"HardSigmoid", {{"alpha", attr_f(0.25f)}, {"beta", attr_f(0.4f)}}, false, {0.25f, 0.4f}},
                             {"HardSwish", {}, false, {}},
                             {"Tanh", {}, false, {}}};
  const std::map<std::string, ir::Attribute> gemm_attrs = {{"transB", attr_i(1)}, {"alpha", attr_f(0.5f)},
                                                           {"beta", attr_f(2.f)}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.op);
    GraphBuilder b;
    ir::Value* x = b.input({3, 6});
    ir::Value* y = b.node("Gemm", {x, b.random({4, 6}, 1), b.random({4}, 2)}, gemm_attrs);
    std::vector<ir::Value*> act_in = {y};
    if (c.clip_bounds) act_in = {y, b.scalar(-0.25f), b.scalar(0.5f)};
    b.output(b.node(c.op, act_in, c.attrs));
    auto before = b.finish();

    GraphBuilder e;
    ir::Value* ex = e.input({3, 6});
    auto attrs = gemm_attrs;
    attrs["activation"] = attr_s(c.op);
    attrs["activation_params"] = attr_floats(c.params);
    e.output(e.node("Gemm", {ex, e.random({4, 6}, 1), e.random({4}, 2)}, attrs));
    auto expected = e.finish();
    auto pass = passes::make_fuse_conv_activation();
    auto after = check_pass(*pass, *before, expected.get());
    EXPECT_EQ(after->outputs[0]->name, before->outputs[0]->name);
    EXPECT_EQ(after->nodes()[0]->floats("activation_params"), c.params);
  }
}

// x * Sigmoid(x) after a Conv or Gemm becomes its SiLU epilogue, whichever
// operand of the Mul the Sigmoid is.
TEST(FuseConvActivation, SiluPatternEitherOperandOrder) {
  for (const char* layer : {"Conv", "Gemm"})
    for (bool sig_first : {false, true}) {
      SCOPED_TRACE(std::string(layer) + (sig_first ? " Mul(sigmoid, x)" : " Mul(x, sigmoid)"));
      const bool conv = std::string(layer) == "Conv";
      const ir::Dims in_dims = conv ? ir::Dims{2, 3, 7, 7} : ir::Dims{5, 6};
      auto make_layer = [&](GraphBuilder& g, ir::Value* x, std::map<std::string, ir::Attribute> attrs) {
        if (conv) {
          attrs["pads"] = attr_ints({1, 1, 1, 1});
          return g.node("Conv", {x, g.random({4, 3, 3, 3}, 1), g.random({4}, 2)}, attrs);
        }
        return g.node("Gemm", {x, g.random({6, 4}, 1), g.random({4}, 2)}, attrs);
      };
      GraphBuilder b;
      ir::Value* y = make_layer(b, b.input(in_dims), {});
      ir::Value* s = b.node("Sigmoid", {y});
      b.output(sig_first ? b.node("Mul", {s, y}) : b.node("Mul", {y, s}));
      auto before = b.finish();

      GraphBuilder e;
      e.output(make_layer(e, e.input(in_dims), {{"activation", attr_s("SiLU")}, {"activation_params", attr_floats({})}}));
      auto expected = e.finish();
      auto pass = passes::make_fuse_conv_activation();
      auto after = check_pass(*pass, *before, expected.get());
      EXPECT_EQ(after->outputs[0]->name, before->outputs[0]->name);
      EXPECT_EQ(after->nodes()[0]->fused.size(), 3u);
    }
}

// The Conv output has a third reader: the SiLU pattern (and the Sigmoid
// alone) must stay as they are.
TEST(FuseConvActivation, SiluNotFusedWhenConvOutputHasThirdReader) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 6, 6});
  ir::Value* y = b.node("Conv", {x, b.random({4, 3, 3, 3}, 1)}, {{"pads", attr_ints({1, 1, 1, 1})}});
  b.output(b.node("Mul", {y, b.node("Sigmoid", {y})}));
  b.output(b.node("Relu", {y}));
  auto before = b.finish();
  auto pass = passes::make_fuse_conv_activation();
  check_pass(*pass, *before, before.get());
}

// Mul(x, Sigmoid(z)) with z != x is no SiLU of x.
TEST(FuseConvActivation, SigmoidOfAnotherValueIsNoSilu) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 6, 6});
  ir::Value* y = b.node("Conv", {x, b.random({4, 3, 1, 1}, 1)});
  ir::Value* other = b.node("Conv", {x, b.random({4, 3, 1, 1}, 2)});
  b.output(b.node("Mul", {y, b.node("Sigmoid", {other})}));
  auto before = b.finish();

  GraphBuilder e;  // the Sigmoid still fuses into its own Conv
  ir::Value* ex = e.input({1, 3, 6, 6});
  ir::Value* ey = e.node("Conv", {ex, e.random({4, 3, 1, 1}, 1)});
  ir::Value* eo = e.node("Conv", {ex, e.random({4, 3, 1, 1}, 2)},
                         {{"activation", attr_s("Sigmoid")}, {"activation_params", attr_floats({})}});
  e.output(e.node("Mul", {ey, eo}));
  auto expected = e.finish();
  auto pass = passes::make_fuse_conv_activation();
  check_pass(*pass, *before, expected.get());
}

}  // namespace
}  // namespace kiln::test
