#include <gtest/gtest.h>

#include "passes/pass_test.h"

namespace kiln::test {
namespace {

std::map<std::string, ir::Attribute> conv_attrs(int64_t group = 1) {
  return {{"pads", attr_ints({1, 1, 1, 1})}, {"group", attr_i(group)}};
}

// BN statistics drawn so folding is far from the identity.
ir::Value* batchnorm(GraphBuilder& b, ir::Value* x, int64_t c, uint32_t seed) {
  return b.node("BatchNormalization",
                {x, b.random({c}, seed, 0.5, 1.5), b.random({c}, seed + 1), b.random({c}, seed + 2),
                 b.random({c}, seed + 3, 0.5, 1.5)},
                {{"epsilon", attr_f(1e-3f)}});
}

TEST(FoldBatchNorm, ConvWithAndWithoutBiasAndGroups) {
  for (int64_t group : {1, 4}) {
    for (bool bias : {false, true}) {
      GraphBuilder b;
      ir::Value* x = b.input({2, 8, 9, 9});
      std::vector<ir::Value*> ins = {x, b.random({12, 8 / group, 3, 3}, 1)};
      if (bias) ins.push_back(b.random({12}, 2));
      b.output(batchnorm(b, b.node("Conv", ins, conv_attrs(group)), 12, 10));
      auto before = b.finish();

      GraphBuilder e;
      ir::Value* ex = e.input({2, 8, 9, 9});
      e.output(e.node("Conv", {ex, e.random({12, 8 / group, 3, 3}, 1), e.random({12}, 2)}, conv_attrs(group)));
      auto expected = e.finish();
      auto pass = passes::make_fold_batchnorm();
      auto after = check_pass(*pass, *before, expected.get());
      EXPECT_EQ(after->nodes()[0]->fused.size(), 2u);
    }
  }
}

TEST(FoldBatchNorm, ConvTransposeGroupedAndGemm) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 4, 5, 5});
  ir::Value* y = b.node("ConvTranspose", {x, b.random({4, 3, 3, 3}, 3)}, {{"group", attr_i(2)}, {"strides", attr_ints({2, 2})}});
  b.output(batchnorm(b, y, 6, 20));
  ir::Value* a = b.input({3, 5});
  ir::Value* g = b.node("Gemm", {a, b.random({7, 5}, 4), b.random({7}, 5)},
                        {{"transB", attr_i(1)}, {"alpha", attr_f(0.5f)}, {"beta", attr_f(2.f)}});
  b.output(batchnorm(b, g, 7, 30));
  auto before = b.finish();
  auto pass = passes::make_fold_batchnorm();
  auto after = check_pass(*pass, *before, nullptr);
  ASSERT_EQ(after->nodes().size(), 2u);
  EXPECT_EQ(after->nodes()[0]->op_type, "ConvTranspose");
  EXPECT_EQ(after->nodes()[1]->op_type, "Gemm");
}

TEST(FoldBatchNorm, LeavesSharedConvOutputAlone) {
  // The conv output is also a graph output: folding would change it.
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 6, 6});
  ir::Value* c = b.node("Conv", {x, b.random({4, 3, 3, 3}, 1)}, conv_attrs());
  b.output(c);
  b.output(batchnorm(b, c, 4, 40));
  auto before = b.finish();
  auto pass = passes::make_fold_batchnorm();
  auto after = check_pass(*pass, *before, before.get());
  EXPECT_EQ(after->nodes().size(), 2u);
}

// BNs fold_batchnorm cannot fold (here after a bias Add, and on a graph
// input) become Mul + Add by per-channel [C, 1, 1] constants.
TEST(LowerBatchNorm, UnfoldableBatchNormBecomesMulAdd) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 6, 5, 7});
  ir::Value* d = b.node("ConvTranspose", {x, b.random({6, 6, 2, 2}, 1)}, {{"strides", attr_ints({2, 2})}});
  ir::Value* biased = b.node("Add", {d, b.random({6, 1, 1}, 2)});
  b.output(b.node("Relu", {batchnorm(b, biased, 6, 50)}));
  ir::Value* z = b.input({3, 4, 8});  // rank 3: constants [4, 1]
  b.output(batchnorm(b, z, 4, 60));
  auto before = b.finish();

  GraphBuilder e;
  ir::Value* ex = e.input({2, 6, 5, 7});
  ir::Value* ed = e.node("ConvTranspose", {ex, e.random({6, 6, 2, 2}, 1)}, {{"strides", attr_ints({2, 2})}});
  ir::Value* eb = e.node("Add", {ed, e.random({6, 1, 1}, 2)});
  ir::Value* em = e.node("Add", {e.node("Mul", {eb, e.random({6, 1, 1}, 3)}), e.random({6, 1, 1}, 4)});
  e.output(e.node("Relu", {em}));
  ir::Value* ez = e.input({3, 4, 8});
  e.output(e.node("Add", {e.node("Mul", {ez, e.random({4, 1}, 5)}), e.random({4, 1}, 6)}));
  auto expected = e.finish();

  auto fold = passes::make_fold_batchnorm();
  check_pass(*fold, *before, before.get());  // nothing it can fold
  auto lower = passes::make_lower_batchnorm();
  check_pass(*lower, *before, expected.get());
}

TEST(LowerBatchNorm, RuntimeStatisticsStay) {
  // A scale that is a graph input cannot become constants.
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 4, 4});
  ir::Value* gamma = b.input({3});
  b.output(b.node("BatchNormalization", {x, gamma, b.random({3}, 2), b.random({3}, 3), b.random({3}, 4, 0.5, 1.5)}));
  auto before = b.finish();
  auto lower = passes::make_lower_batchnorm();
  check_pass(*lower, *before, before.get());
}

}  // namespace
}  // namespace kiln::test
