#include <gtest/gtest.h>

#include "passes/pass_test.h"

namespace kiln::test {
namespace {

void expect_unchanged(const ir::Graph& before) {
  auto pass = passes::make_fuse_gemm();
  check_pass(*pass, before, &before);
}

TEST(FuseGemm, MatMulAddBecomesGemm) {
  // Bias as [N], [1,N] and scalar, on either side of the Add.
  for (int form = 0; form < 4; ++form) {
    GraphBuilder b;
    ir::Value* a = b.input({3, 5});
    ir::Value* y = b.node("MatMul", {a, b.random({5, 7}, 1)}, {}, 1, "fc");
    ir::Value* c = form == 0 ? b.random({7}, 2) : form == 1 ? b.random({1, 7}, 2) : form == 2 ? b.scalar(0.75f)
                                                                                               : b.random({1}, 2);
    b.output(form == 1 ? b.node("Add", {c, y}, {}, 1, "bias") : b.node("Add", {y, c}, {}, 1, "bias"));
    auto before = b.finish();
    std::string out_name = before->outputs[0]->name;

    GraphBuilder e;
    e.output(e.node("Gemm", {e.input({3, 5}), e.random({5, 7}, 1), e.random({7}, 2)}));
    auto expected = e.finish();
    auto pass = passes::make_fuse_gemm();
    auto after = check_pass(*pass, *before, expected.get());
    ASSERT_EQ(after->nodes().size(), 1u) << "form " << form;
    EXPECT_EQ(after->nodes()[0]->fused, (std::vector<std::string>{"fc", "bias"}));
    EXPECT_EQ(after->outputs[0]->name, out_name);
  }
}

TEST(FuseGemm, GemmAddMergesIntoC) {
  // alpha stays on the product; beta * C joins the new bias.
  for (bool with_c : {false, true}) {
    GraphBuilder b;
    ir::Value* a = b.input({4, 6});
    std::vector<ir::Value*> ins = {a, b.random({3, 6}, 1)};
    if (with_c) ins.push_back(b.random({1, 3}, 2));
    ir::Value* y = b.node("Gemm", ins, {{"transB", attr_i(1)}, {"alpha", attr_f(0.5f)}, {"beta", attr_f(-2.f)}});
    b.output(b.node("Add", {y, b.random({3}, 3)}));
    auto before = b.finish();
    GraphBuilder e;
    e.output(e.node("Gemm", {e.input({4, 6}), e.random({3, 6}, 1), e.random({3}, 2)},
                    {{"transB", attr_i(1)}, {"alpha", attr_f(0.5f)}}));
    auto expected = e.finish();
    auto pass = passes::make_fuse_gemm();
    auto after = check_pass(*pass, *before, expected.get());
    ASSERT_EQ(after->nodes().size(), 1u);
    EXPECT_FALSE(after->nodes()[0]->has("beta"));
    EXPECT_EQ(after->nodes()[0]->f("alpha", 1.f), 0.5f);
  }
}

TEST(FuseGemm, BatchedOrRuntimeOperandsStay) {
  {  // 3-D A: Gemm is 2-D only
    GraphBuilder b;
    ir::Value* a = b.input({2, 3, 5});
    b.output(b.node("Add", {b.node("MatMul", {a, b.random({5, 4}, 1)}), b.random({4}, 2)}));
    expect_unchanged(*b.finish());
  }
  {  // B computed at run time
    GraphBuilder b;
    ir::Value* a = b.input({3, 5});
    ir::Value* w = b.input({5, 4});
    b.output(b.node("Add", {b.node("MatMul", {a, w}), b.random({4}, 2)}));
    expect_unchanged(*b.finish());
  }
  {  // the Add's other operand is not a constant
    GraphBuilder b;
    ir::Value* a = b.input({3, 5});
    ir::Value* r = b.input({4});
    b.output(b.node("Add", {b.node("MatMul", {a, b.random({5, 4}, 1)}), r}));
    expect_unchanged(*b.finish());
  }
}

TEST(FuseGemm, NonRowBiasOrSharedProductStays) {
  {  // per-row bias [M, 1]
    GraphBuilder b;
    ir::Value* a = b.input({3, 5});
    b.output(b.node("Add", {b.node("MatMul", {a, b.random({5, 4}, 1)}), b.random({3, 1}, 2)}));
    expect_unchanged(*b.finish());
  }
  {  // the Add broadcasts the product to a larger shape
    GraphBuilder b;
    ir::Value* a = b.input({3, 5});
    b.output(b.node("Add", {b.node("MatMul", {a, b.random({5, 4}, 1)}), b.random({2, 1, 4}, 2)}));
    expect_unchanged(*b.finish());
  }
  {  // the product is also a graph output
    GraphBuilder b;
    ir::Value* a = b.input({3, 5});
    ir::Value* y = b.node("MatMul", {a, b.random({5, 4}, 1)});
    b.output(b.node("Add", {y, b.random({4}, 2)}));
    b.output(y);
    expect_unchanged(*b.finish());
  }
  {  // Gemm whose C is a full [M, N] matrix: not a row bias
    GraphBuilder b;
    ir::Value* a = b.input({3, 5});
    ir::Value* y = b.node("Gemm", {a, b.random({5, 4}, 1), b.random({3, 4}, 3)});
    b.output(b.node("Add", {y, b.random({4}, 2)}));
    expect_unchanged(*b.finish());
  }
}

TEST(FuseGemm, FlattenBeforeGemmStays) {
  // Classifier head: Gemm reads only 2-D A, so the Flatten must stay (the
  // engine runs it as a free alias).
  GraphBuilder b;
  ir::Value* x = b.input({2, 8, 3, 3});
  ir::Value* f = b.node("Flatten", {b.node("GlobalAveragePool", {x})});
  b.output(b.node("Gemm", {f, b.random({10, 8}, 1), b.random({10}, 2)}, {{"transB", attr_i(1)}}));
  expect_unchanged(*b.finish());
}

}  // namespace
}  // namespace kiln::test
