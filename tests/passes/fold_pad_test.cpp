#include <gtest/gtest.h>

#include <limits>

#include "passes/pass_test.h"

namespace kiln::test {
namespace {

const float kNegInf = -std::numeric_limits<float>::infinity();

std::map<std::string, ir::Attribute> conv_attrs(std::vector<int64_t> pads, int64_t group = 1) {
  return {{"pads", attr_ints(std::move(pads))}, {"group", attr_i(group)}};
}

std::map<std::string, ir::Attribute> pool_attrs(std::vector<int64_t> pads, int64_t extra_key = -1) {
  std::map<std::string, ir::Attribute> a = {{"kernel_shape", attr_ints({3, 3})}, {"pads", attr_ints(std::move(pads))}};
  if (extra_key >= 0) a["count_include_pad"] = attr_i(extra_key);
  return a;
}

// Runs fold_pad and expects it to leave `before` exactly as it was.
void expect_unchanged(const ir::Graph& before) {
  auto pass = passes::make_fold_pad();
  auto after = check_pass(*pass, before, &before);
  size_t pads = 0;
  for (auto& n : after->nodes()) pads += n->op_type == "Pad";
  EXPECT_EQ(pads, 1u);
}

TEST(FoldPad, ZeroPadIntoGroupedConv) {
  // Pad begins [1,2] ends [2,1] on H,W, plus the Conv's own [1,1,1,1].
  GraphBuilder b;
  ir::Value* x = b.input({2, 4, 7, 6});
  ir::Value* p = b.node("Pad", {x, b.ints({0, 0, 1, 2, 0, 0, 2, 1})}, {}, 1, "pad1");
  b.output(b.node("Conv", {p, b.random({6, 2, 3, 3}, 1), b.random({6}, 2)}, conv_attrs({1, 1, 1, 1}, 2), 1, "conv1"));
  auto before = b.finish();

  GraphBuilder e;
  ir::Value* ex = e.input({2, 4, 7, 6});
  e.output(e.node("Conv", {ex, e.random({6, 2, 3, 3}, 1), e.random({6}, 2)}, conv_attrs({2, 3, 3, 2}, 2)));
  auto expected = e.finish();

  auto pass = passes::make_fold_pad();
  auto after = check_pass(*pass, *before, expected.get());
  ASSERT_EQ(after->nodes().size(), 1u);
  const ir::Node& conv = *after->nodes()[0];
  EXPECT_EQ(conv.ints("pads"), (std::vector<int64_t>{2, 3, 3, 2}));
  EXPECT_EQ(conv.fused, (std::vector<std::string>{"pad1", "conv1"}));
  EXPECT_EQ(after->outputs[0]->dims, (ir::Dims{2, 6, 10, 9}));
}

TEST(FoldPad, ExplicitZeroValueAndAxesInput) {
  // opset 18 form: constant_value 0 given, pads only for axes [-1, 2].
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 5, 5});
  ir::Value* p = b.node("Pad", {x, b.ints({2, 0, 1, 3}), b.scalar(0.f), b.ints({-1, 2})});
  b.output(b.node("Conv", {p, b.random({4, 3, 2, 2}, 3)}, conv_attrs({0, 0, 0, 0})));
  auto before = b.finish();

  GraphBuilder e;
  ir::Value* ex = e.input({1, 3, 5, 5});
  e.output(e.node("Conv", {ex, e.random({4, 3, 2, 2}, 3)}, conv_attrs({0, 2, 3, 1})));
  auto expected = e.finish();

  auto pass = passes::make_fold_pad();
  auto after = check_pass(*pass, *before, expected.get());
  EXPECT_EQ(after->nodes()[0]->ints("pads"), (std::vector<int64_t>{0, 2, 3, 1}));
}

TEST(FoldPad, ZeroPadIntoAveragePoolCountingPads) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 2, 6, 6});
  ir::Value* p = b.node("Pad", {x, b.ints({0, 0, 1, 1, 0, 0, 1, 0})});
  b.output(b.node("AveragePool", {p}, pool_attrs({0, 0, 0, 1}, 1)));
  auto before = b.finish();

  GraphBuilder e;
  e.output(e.node("AveragePool", {e.input({1, 2, 6, 6})}, pool_attrs({1, 1, 1, 1}, 1)));
  auto expected = e.finish();

  auto pass = passes::make_fold_pad();
  auto after = check_pass(*pass, *before, expected.get());
  EXPECT_EQ(after->nodes()[0]->ints("pads"), (std::vector<int64_t>{1, 1, 1, 1}));
}

TEST(FoldPad, NegInfPadIntoMaxPool) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 5, 6});
  ir::Value* p = b.node("Pad", {x, b.ints({0, 0, 2, 1, 0, 0, 0, 2}), b.scalar(kNegInf)});
  b.output(b.node("MaxPool", {p}, {{"kernel_shape", attr_ints({3, 3})}, {"strides", attr_ints({2, 2})}}));
  auto before = b.finish();

  GraphBuilder e;
  e.output(e.node("MaxPool", {e.input({1, 3, 5, 6})},
                  {{"kernel_shape", attr_ints({3, 3})}, {"strides", attr_ints({2, 2})}, {"pads", attr_ints({2, 1, 0, 2})}}));
  auto expected = e.finish();

  auto pass = passes::make_fold_pad();
  auto after = check_pass(*pass, *before, expected.get());
  EXPECT_EQ(after->nodes()[0]->ints("pads"), (std::vector<int64_t>{2, 1, 0, 2}));
}

TEST(FoldPad, ZeroPadNeverFoldsIntoMaxPool) {
  // Zeros win over negative inputs; MaxPool's own padding never wins.
  GraphBuilder b;
  ir::Value* x = b.input({1, 2, 4, 4});
  ir::Value* p = b.node("Pad", {x, b.ints({0, 0, 1, 1, 0, 0, 1, 1})});
  b.output(b.node("MaxPool", {p}, pool_attrs({0, 0, 0, 0})));
  expect_unchanged(*b.finish());
}

TEST(FoldPad, LowestFloatPadStaysBeforeMaxPool) {
  // -FLT_MAX differs from MaxPool padding when a window's inputs are all -inf.
  GraphBuilder b;
  ir::Value* x = b.input({1, 2, 4, 4});
  ir::Value* p = b.node("Pad", {x, b.ints({0, 0, 1, 1, 0, 0, 1, 1}), b.scalar(std::numeric_limits<float>::lowest())});
  b.output(b.node("MaxPool", {p}, pool_attrs({0, 0, 0, 0})));
  expect_unchanged(*b.finish());
}

TEST(FoldPad, AveragePoolExcludingPadsStays) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 2, 5, 5});
  ir::Value* p = b.node("Pad", {x, b.ints({0, 0, 1, 1, 0, 0, 1, 1})});
  b.output(b.node("AveragePool", {p}, pool_attrs({0, 0, 0, 0}, 0)));
  expect_unchanged(*b.finish());
}

TEST(FoldPad, PoolPadsMustStaySmallerThanTheWindow) {
  // 2 + 1 >= 3: AveragePool would reject the folded pads.
  GraphBuilder b;
  ir::Value* x = b.input({1, 2, 5, 5});
  ir::Value* p = b.node("Pad", {x, b.ints({0, 0, 2, 0, 0, 0, 0, 0})});
  b.output(b.node("AveragePool", {p}, pool_attrs({1, 0, 0, 0}, 1)));
  expect_unchanged(*b.finish());
}

TEST(FoldPad, CeilModePoolStays) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 1, 6, 6});
  ir::Value* p = b.node("Pad", {x, b.ints({0, 0, 0, 0, 0, 0, 1, 1})});
  auto attrs = pool_attrs({0, 0, 0, 0}, 1);
  attrs["strides"] = attr_ints({2, 2});
  attrs["ceil_mode"] = attr_i(1);
  b.output(b.node("AveragePool", {p}, attrs));
  expect_unchanged(*b.finish());
}

TEST(FoldPad, MaxPoolWithIndicesStays) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 2, 4, 4});
  ir::Value* p = b.node("Pad", {x, b.ints({0, 0, 1, 1, 0, 0, 1, 1}), b.scalar(kNegInf)});
  b.output(b.node("MaxPool", {p}, pool_attrs({0, 0, 0, 0}), 2));
  b.output(b.last_outputs()[1]);
  expect_unchanged(*b.finish());
}

TEST(FoldPad, CroppingNonSpatialNonZeroAndReflectPadsStay) {
  auto conv_after = [](GraphBuilder& b, ir::Value* p, int64_t c) {
    b.output(b.node("Conv", {p, b.random({3, c, 3, 3}, 9)}, conv_attrs({1, 1, 1, 1})));
  };
  {  // negative pad crops
    GraphBuilder b;
    ir::Value* x = b.input({1, 2, 6, 6});
    conv_after(b, b.node("Pad", {x, b.ints({0, 0, -1, 1, 0, 0, 1, 1})}), 2);
    expect_unchanged(*b.finish());
  }
  {  // channel padding is not a Conv pad
    GraphBuilder b;
    ir::Value* x = b.input({1, 2, 6, 6});
    conv_after(b, b.node("Pad", {x, b.ints({0, 1, 1, 1, 0, 0, 1, 1})}), 3);
    expect_unchanged(*b.finish());
  }
  {  // constant value 0.5
    GraphBuilder b;
    ir::Value* x = b.input({1, 2, 6, 6});
    conv_after(b, b.node("Pad", {x, b.ints({0, 0, 1, 1, 0, 0, 1, 1}), b.scalar(0.5f)}), 2);
    expect_unchanged(*b.finish());
  }
  {  // reflect padding
    GraphBuilder b;
    ir::Value* x = b.input({1, 2, 6, 6});
    conv_after(b, b.node("Pad", {x, b.ints({0, 0, 1, 1, 0, 0, 1, 1})}, {{"mode", attr_s("reflect")}}), 2);
    expect_unchanged(*b.finish());
  }
  {  // pad value decided at run time
    GraphBuilder b;
    ir::Value* x = b.input({1, 2, 6, 6});
    ir::Value* v = b.input({});
    conv_after(b, b.node("Pad", {x, b.ints({0, 0, 1, 1, 0, 0, 1, 1}), v}), 2);
    expect_unchanged(*b.finish());
  }
}

TEST(FoldPad, SharedPadOutputStays) {
  // The padded tensor is also a graph output, so it must still be produced.
  GraphBuilder b;
  ir::Value* x = b.input({1, 2, 5, 5});
  ir::Value* p = b.node("Pad", {x, b.ints({0, 0, 1, 1, 0, 0, 1, 1})});
  b.output(b.node("Conv", {p, b.random({3, 2, 3, 3}, 4)}, conv_attrs({0, 0, 0, 0})));
  b.output(p);
  expect_unchanged(*b.finish());
}

TEST(FoldPad, AutoPadConvIsResolvedBeforeFolding) {
  // SAME_UPPER is made explicit by inference ([1,1,1,1] for a 3x3 window),
  // and the Pad adds to that.
  GraphBuilder b;
  ir::Value* x = b.input({1, 2, 5, 5});
  ir::Value* p = b.node("Pad", {x, b.ints({0, 0, 1, 0, 0, 0, 0, 1})});
  b.output(b.node("Conv", {p, b.random({3, 2, 3, 3}, 5)}, {{"auto_pad", attr_s("SAME_UPPER")}}));
  auto before = b.finish();
  auto pass = passes::make_fold_pad();
  auto after = check_pass(*pass, *before, nullptr);
  ASSERT_EQ(after->nodes().size(), 1u);
  EXPECT_EQ(after->nodes()[0]->ints("pads"), (std::vector<int64_t>{2, 1, 1, 2}));
}

}  // namespace
}  // namespace kiln::test
