#include <gtest/gtest.h>

#include "passes/graph_utils.h"
#include "passes/pass_test.h"

namespace kiln::test {
namespace {

ir::Attribute perm(std::vector<int64_t> p) { return attr_ints(std::move(p)); }

size_t count_op(const ir::Graph& g, const std::string& op) {
  size_t k = 0;
  for (auto& n : g.nodes()) k += n->op_type == op;
  return k;
}

TEST(CancelTransposeReshape, InverseTransposesVanish) {
  // NCHW -> NHWC -> NCHW between two real ops.
  GraphBuilder b;
  ir::Value* x = b.input({2, 3, 4, 5});
  ir::Value* r = b.node("Relu", {x});
  ir::Value* t1 = b.node("Transpose", {r}, {{"perm", perm({0, 2, 3, 1})}});
  ir::Value* t2 = b.node("Transpose", {t1}, {{"perm", perm({0, 3, 1, 2})}});
  b.output(b.node("Sigmoid", {t2}));
  auto before = b.finish();

  GraphBuilder e;
  e.output(e.node("Sigmoid", {e.node("Relu", {e.input({2, 3, 4, 5})})}));
  auto expected = e.finish();
  auto pass = passes::make_cancel_transpose_reshape();
  check_pass(*pass, *before, expected.get());
}

TEST(CancelTransposeReshape, TransposesComposeIntoOne) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 3, 4, 5});
  ir::Value* t1 = b.node("Transpose", {x}, {{"perm", perm({0, 2, 3, 1})}}, 1, "t1");
  ir::Value* t2 = b.node("Transpose", {t1}, {{"perm", perm({2, 0, 3, 1})}}, 1, "t2");
  b.output(t2);
  auto before = b.finish();
  // t1 gives [2,4,5,3]; t2 picks axes (2,0,3,1) of it = input axes (3,0,1,2).
  GraphBuilder e;
  e.output(e.node("Transpose", {e.input({2, 3, 4, 5})}, {{"perm", perm({3, 0, 1, 2})}}));
  auto expected = e.finish();
  auto pass = passes::make_cancel_transpose_reshape();
  auto after = check_pass(*pass, *before, expected.get());
  ASSERT_EQ(after->nodes().size(), 1u);
  EXPECT_EQ(after->nodes()[0]->ints("perm"), (std::vector<int64_t>{3, 0, 1, 2}));
  EXPECT_EQ(after->outputs[0]->dims, (ir::Dims{5, 2, 3, 4}));
  EXPECT_EQ(passes::fused_label(*after->nodes()[0]), "t1+t2");
}

TEST(CancelTransposeReshape, DefaultPermsReverseAxes) {
  // Two perm-less Transposes reverse twice: identity.
  GraphBuilder b;
  ir::Value* x = b.input({2, 3, 4});
  ir::Value* r = b.node("Relu", {x});
  b.output(b.node("Transpose", {b.node("Transpose", {r})}));
  auto before = b.finish();
  std::string out_name = before->outputs[0]->name;
  GraphBuilder e;
  e.output(e.node("Relu", {e.input({2, 3, 4})}));
  auto expected = e.finish();
  auto pass = passes::make_cancel_transpose_reshape();
  auto after = check_pass(*pass, *before, expected.get());
  EXPECT_EQ(after->outputs[0]->name, out_name);  // the Relu now carries the output name
}

TEST(CancelTransposeReshape, TransposeOfUnitAxesBecomesReshape) {
  // Only size-1 axes move: the element order is unchanged.
  GraphBuilder b;
  ir::Value* x = b.input({2, 1, 3, 1});
  b.output(b.node("Transpose", {b.node("Relu", {x})}, {{"perm", perm({1, 0, 3, 2})}}));
  auto before = b.finish();
  GraphBuilder e;
  e.output(e.node("Reshape", {e.node("Relu", {e.input({2, 1, 3, 1})}), e.ints({1, 2, 1, 3})}));
  auto expected = e.finish();
  auto pass = passes::make_cancel_transpose_reshape();
  check_pass(*pass, *before, expected.get());
}

TEST(CancelTransposeReshape, DataMovingTransposeStays) {
  // [1,3,4,5] -> NHWC really reorders elements; the Reshape after it restores
  // only the dims, not the order.
  GraphBuilder b;
  ir::Value* x = b.input({1, 3, 4, 5});
  ir::Value* t = b.node("Transpose", {b.node("Relu", {x})}, {{"perm", perm({0, 2, 3, 1})}});
  b.output(b.node("Reshape", {t, b.ints({1, 3, 4, 5})}));
  auto before = b.finish();
  auto pass = passes::make_cancel_transpose_reshape();
  check_pass(*pass, *before, before.get());
}

TEST(CancelTransposeReshape, ReshapeChainCollapses) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 3, 4, 5});
  ir::Value* r = b.node("Relu", {x});
  ir::Value* a = b.node("Flatten", {r}, {{"axis", attr_i(2)}});         // [6, 20]
  ir::Value* u = b.node("Unsqueeze", {a, b.ints({0, 3})});              // [1, 6, 20, 1]
  ir::Value* s = b.node("Squeeze", {u, b.ints({3})});                   // [1, 6, 20]
  ir::Value* rs = b.node("Reshape", {s, b.ints({0, 3, -1, 10})});       // [1, 3, 4, 10]
  b.output(b.node("Sigmoid", {rs}));
  auto before = b.finish();
  GraphBuilder e;
  ir::Value* er = e.node("Relu", {e.input({2, 3, 4, 5})});
  e.output(e.node("Sigmoid", {e.node("Reshape", {er, e.ints({1, 3, 4, 10})})}));
  auto expected = e.finish();
  auto pass = passes::make_cancel_transpose_reshape();
  auto after = check_pass(*pass, *before, expected.get());
  EXPECT_EQ(count_op(*after, "Reshape"), 1u);
  EXPECT_EQ(after->outputs[0]->dims, (ir::Dims{1, 3, 4, 10}));
}

TEST(CancelTransposeReshape, ReshapeBackToInputDimsVanishes) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 12});
  ir::Value* r = b.node("Relu", {x});
  ir::Value* a = b.node("Reshape", {r, b.ints({2, 3, 4})});
  b.output(b.node("Reshape", {a, b.ints({2, -1})}));
  auto before = b.finish();
  std::string out_name = before->outputs[0]->name;
  GraphBuilder e;
  e.output(e.node("Relu", {e.input({2, 12})}));
  auto expected = e.finish();
  auto pass = passes::make_cancel_transpose_reshape();
  auto after = check_pass(*pass, *before, expected.get());
  EXPECT_EQ(after->outputs[0]->name, out_name);
}

TEST(CancelTransposeReshape, GraphInputToOutputPairStays) {
  // Input -> T -> T -> output cannot become nothing: a graph input cannot
  // take the output's name. The pair is kept.
  GraphBuilder b;
  ir::Value* x = b.input({2, 3});
  b.output(b.node("Transpose", {b.node("Transpose", {x})}));
  auto before = b.finish();
  auto pass = passes::make_cancel_transpose_reshape();
  check_pass(*pass, *before, before.get());
}

TEST(CancelTransposeReshape, SharedIntermediatesStay) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 3, 4});
  ir::Value* r = b.node("Relu", {x});
  ir::Value* a = b.node("Reshape", {r, b.ints({6, 4})});
  b.output(b.node("Reshape", {a, b.ints({24})}));
  b.output(b.node("Neg", {a}));  // second reader of the first Reshape
  ir::Value* t = b.node("Transpose", {r}, {{"perm", perm({1, 0, 2})}});
  b.output(b.node("Transpose", {t}, {{"perm", perm({1, 0, 2})}}));
  b.output(t);  // the first Transpose's output is a graph output
  auto before = b.finish();
  auto pass = passes::make_cancel_transpose_reshape();
  check_pass(*pass, *before, before.get());
}

TEST(CancelTransposeReshape, SsdHeadOnOneByOneMap) {
  // torchvision SSD head on a 1x1 feature map: view(N, A, K, 1, 1) ->
  // permute(0, 3, 4, 1, 2) -> reshape(N, -1, K) is a single reshape.
  GraphBuilder b;
  ir::Value* x = b.input({2, 8, 1, 1});
  ir::Value* c = b.node("Conv", {x, b.random({12, 8, 1, 1}, 1), b.random({12}, 2)});
  ir::Value* v = b.node("Reshape", {c, b.ints({2, 3, 4, 1, 1})});
  ir::Value* p = b.node("Transpose", {v}, {{"perm", perm({0, 3, 4, 1, 2})}});
  b.output(b.node("Reshape", {p, b.ints({2, -1, 4})}));
  auto before = b.finish();
  GraphBuilder e;
  ir::Value* ec = e.node("Conv", {e.input({2, 8, 1, 1}), e.random({12, 8, 1, 1}, 1), e.random({12}, 2)});
  e.output(e.node("Reshape", {ec, e.ints({2, 3, 4})}));
  auto expected = e.finish();
  auto pass = passes::make_cancel_transpose_reshape();
  check_pass(*pass, *before, expected.get());
}

TEST(CancelTransposeReshape, SsdHeadOnLargerMapKeepsTranspose) {
  // Same head on a 3x3 map: the permute moves data and must stay.
  GraphBuilder b;
  ir::Value* x = b.input({1, 8, 3, 3});
  ir::Value* c = b.node("Conv", {x, b.random({12, 8, 1, 1}, 1)});
  ir::Value* v = b.node("Reshape", {c, b.ints({1, 3, 4, 3, 3})});
  ir::Value* p = b.node("Transpose", {v}, {{"perm", perm({0, 3, 4, 1, 2})}});
  b.output(b.node("Reshape", {p, b.ints({1, -1, 4})}));
  auto before = b.finish();
  auto pass = passes::make_cancel_transpose_reshape();
  check_pass(*pass, *before, before.get());
}

}  // namespace
}  // namespace kiln::test
