#include <gtest/gtest.h>

#include <cmath>

#include "passes/pass_test.h"

namespace kiln::test {
namespace {

std::map<std::string, ir::Attribute> conv_attrs(int64_t pad = 1, int64_t group = 1) {
  return {{"pads", attr_ints({pad, pad, pad, pad})}, {"group", attr_i(group)}};
}

ir::Value* conv(GraphBuilder& b, ir::Value* x, int64_t m, int64_t c, bool bias, int64_t group = 1, int64_t pad = 1,
                const std::string& name = "") {
  std::vector<ir::Value*> ins = {x, b.random({m, c / group, 3, 3}, 1)};
  if (bias) ins.push_back(b.random({m}, 2));
  return b.node("Conv", ins, conv_attrs(pad, group), 1, name);
}

// The graph a successful fold leaves: one Conv with a bias.
std::unique_ptr<ir::Graph> single_conv(ir::Dims in, int64_t m, int64_t group = 1, int64_t pad = 1) {
  GraphBuilder e;
  ir::Value* x = e.input(std::move(in));
  e.output(conv(e, x, m, x->dims[1], true, group, pad));
  return e.finish();
}

void expect_unchanged(const ir::Graph& before) {
  auto pass = passes::make_fold_scale_shift();
  check_pass(*pass, before, &before);
}

TEST(FoldScaleShift, MulAfterGroupedConvScalesWeightsAndBias) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 4, 6, 6});
  ir::Value* y = conv(b, x, 6, 4, true, 2, 1, "conv1");
  b.output(b.node("Mul", {y, b.random({1, 6, 1, 1}, 3, -2, 2)}, {}, 1, "mul1"));
  auto before = b.finish();
  auto expected = single_conv({2, 4, 6, 6}, 6, 2);
  auto pass = passes::make_fold_scale_shift();
  auto after = check_pass(*pass, *before, expected.get());
  EXPECT_EQ(after->nodes()[0]->fused, (std::vector<std::string>{"conv1", "mul1"}));
}

TEST(FoldScaleShift, ScaleWithoutBiasStaysWithoutBias) {
  // Constant on the left, shape [C,1,1].
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 5, 5});
  ir::Value* y = conv(b, x, 4, 3, false);
  b.output(b.node("Mul", {b.random({4, 1, 1}, 3), y}));
  auto before = b.finish();
  GraphBuilder e;
  ir::Value* ex = e.input({1, 3, 5, 5});
  e.output(conv(e, ex, 4, 3, false));
  auto expected = e.finish();
  auto pass = passes::make_fold_scale_shift();
  check_pass(*pass, *before, expected.get());
}

TEST(FoldScaleShift, AddAfterConvCreatesBias) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 5, 5});
  b.output(b.node("Add", {conv(b, x, 4, 3, false), b.random({4, 1, 1}, 3)}));
  auto before = b.finish();
  auto expected = single_conv({1, 3, 5, 5}, 4);
  auto pass = passes::make_fold_scale_shift();
  check_pass(*pass, *before, expected.get());
}

TEST(FoldScaleShift, ChainOfSubDivMulAddFoldsIntoOneConv) {
  // ((conv - s) / d) * 2 + t with scalar and per-channel constants.
  GraphBuilder b;
  ir::Value* x = b.input({2, 3, 6, 6});
  ir::Value* y = conv(b, x, 5, 3, true);
  y = b.node("Sub", {y, b.random({1, 5, 1, 1}, 4)});
  y = b.node("Div", {y, b.random({5, 1, 1}, 5, 0.5, 2.0)});
  y = b.node("Mul", {y, b.scalar(2.f)});
  b.output(b.node("Add", {y, b.scalar(-0.25f)}));
  auto before = b.finish();
  auto expected = single_conv({2, 3, 6, 6}, 5);
  auto pass = passes::make_fold_scale_shift();
  auto after = check_pass(*pass, *before, expected.get());
  EXPECT_EQ(after->nodes()[0]->fused.size(), 5u);
}

TEST(FoldScaleShift, MulBeforeGroupedConvScalesInputChannels) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 6, 7, 7});
  ir::Value* s = b.node("Mul", {x, b.random({1, 6, 1, 1}, 6, -2, 2)}, {}, 1, "mul1");
  b.output(conv(b, s, 4, 6, true, 2, 1, "conv1"));  // pads are fine: 0 * s = 0
  auto before = b.finish();
  auto expected = single_conv({1, 6, 7, 7}, 4, 2);
  auto pass = passes::make_fold_scale_shift();
  auto after = check_pass(*pass, *before, expected.get());
  EXPECT_EQ(after->nodes()[0]->fused, (std::vector<std::string>{"mul1", "conv1"}));
}

TEST(FoldScaleShift, AddBeforeUnpaddedConvShiftsBias) {
  // Normalization in front of the first layer: (x - mean) / std.
  GraphBuilder b;
  ir::Value* x = b.input({2, 3, 6, 6});
  ir::Value* n = b.node("Sub", {x, b.random({1, 3, 1, 1}, 7)});
  n = b.node("Div", {n, b.random({1, 3, 1, 1}, 8, 0.2, 0.3)});
  b.output(conv(b, n, 4, 3, false, 1, 0));
  auto before = b.finish();
  auto expected = single_conv({2, 3, 6, 6}, 4, 1, 0);
  auto pass = passes::make_fold_scale_shift();
  check_pass(*pass, *before, expected.get());
}

TEST(FoldScaleShift, AddBeforePaddedConvStays) {
  // The border would see x + c where the Conv's zero padding sees 0.
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 5, 5});
  ir::Value* n = b.node("Add", {x, b.random({1, 3, 1, 1}, 7)});
  b.output(conv(b, n, 4, 3, true, 1, 1));
  expect_unchanged(*b.finish());
}

TEST(FoldScaleShift, ConvWithFusedActivationTakesNothingAfterIt) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 5, 5});
  auto attrs = conv_attrs();
  attrs["activation"] = attr_s("Relu");
  attrs["activation_params"] = attr_floats({});
  ir::Value* y = b.node("Conv", {x, b.random({4, 3, 3, 3}, 1), b.random({4}, 2)}, attrs);
  b.output(b.node("Mul", {y, b.random({1, 4, 1, 1}, 3, -2, -0.5)}));  // negative: relu does not commute
  expect_unchanged(*b.finish());
}

TEST(FoldScaleShift, NonChannelConstantsStay) {
  {  // [C] aligns with W, not with the channels (W == C here so it broadcasts)
    GraphBuilder b;
    ir::Value* x = b.input({1, 3, 4, 4});
    b.output(b.node("Mul", {conv(b, x, 4, 3, true), b.random({4}, 3)}));
    expect_unchanged(*b.finish());
  }
  {  // varies along H
    GraphBuilder b;
    ir::Value* x = b.input({1, 3, 4, 4});
    b.output(b.node("Add", {conv(b, x, 4, 3, true), b.random({4, 4, 1}, 3)}));
    expect_unchanged(*b.finish());
  }
  {  // would broadcast the result to a larger shape
    GraphBuilder b;
    ir::Value* x = b.input({1, 3, 4, 4});
    b.output(b.node("Mul", {conv(b, x, 4, 3, true), b.random({2, 1, 1, 1}, 3)}));
    expect_unchanged(*b.finish());
  }
}

TEST(FoldScaleShift, NonAffineOrUnsafeConstantsStay) {
  {  // c - y
    GraphBuilder b;
    ir::Value* x = b.input({1, 3, 4, 4});
    b.output(b.node("Sub", {b.random({1, 4, 1, 1}, 3), conv(b, x, 4, 3, true)}));
    expect_unchanged(*b.finish());
  }
  {  // c / y
    GraphBuilder b;
    ir::Value* x = b.input({1, 3, 4, 4});
    b.output(b.node("Div", {b.random({1, 4, 1, 1}, 3), conv(b, x, 4, 3, true)}));
    expect_unchanged(*b.finish());
  }
  {  // division by a zero channel
    GraphBuilder b;
    ir::Value* x = b.input({1, 3, 4, 4});
    b.output(b.node("Div", {conv(b, x, 2, 3, true), b.constant(ir::Tensor::from_float({1.f, 0.f}, {2, 1, 1}))}));
    expect_unchanged(*b.finish());
  }
  {  // infinite scale: inf * 0 weights would turn into NaN
    GraphBuilder b;
    ir::Value* x = b.input({1, 3, 4, 4});
    b.output(b.node("Mul", {conv(b, x, 2, 3, true), b.constant(ir::Tensor::from_float({1.f, INFINITY}, {2, 1, 1}))}));
    auto g = b.finish();
    // Checked by structure only: the outputs hold inf, which a relative error cannot compare.
    const std::string was = structure(*g);
    passes::PassContext ctx;
    auto pass = passes::make_fold_scale_shift();
    EXPECT_FALSE(pass->run(*g, ctx));
    EXPECT_EQ(structure(*g), was);
  }
}

TEST(FoldScaleShift, SharedIntermediatesStay) {
  {  // the Conv output is read twice
    GraphBuilder b;
    ir::Value* x = b.input({1, 3, 4, 4});
    ir::Value* y = conv(b, x, 4, 3, true);
    b.output(b.node("Mul", {y, b.random({1, 4, 1, 1}, 3)}));
    b.output(b.node("Relu", {y}));
    expect_unchanged(*b.finish());
  }
  {  // the scaled input also feeds a second op
    GraphBuilder b;
    ir::Value* x = b.input({1, 3, 4, 4});
    ir::Value* s = b.node("Mul", {x, b.random({1, 3, 1, 1}, 3)});
    b.output(conv(b, s, 4, 3, true));
    b.output(s);
    expect_unchanged(*b.finish());
  }
}

}  // namespace
}  // namespace kiln::test
