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

}  // namespace
}  // namespace kiln::test
