// Tests of the small clean-up passes: constant folding, dead code, no-op
// removal, common subexpressions (one TEST per pass).
#include <gtest/gtest.h>

#include "passes/pass_test.h"

namespace kiln::test {
namespace {

TEST(FoldConstants, ShapeArithmeticFoldsIntoAConstant) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 3, 4});
  ir::Value* w = b.random({3, 4}, 1);
  ir::Value* w2 = b.node("Mul", {w, b.scalar(2.f)});     // constant-only: folds
  ir::Value* y = b.node("Add", {x, w2});
  b.output(y);
  auto before = b.finish();
  GraphBuilder e;
  ir::Value* ex = e.input({2, 3, 4});
  e.output(e.node("Add", {ex, e.random({3, 4}, 1)}));
  auto expected = e.finish();
  auto pass = passes::make_fold_constants();
  check_pass(*pass, *before, expected.get());
}

TEST(EliminateDeadCode, RemovesUnreadBranches) {
  GraphBuilder b;
  ir::Value* x = b.input({4});
  b.node("Exp", {b.node("Relu", {x})});  // nobody reads this chain
  b.output(b.node("Neg", {x}));
  auto before = b.finish();
  GraphBuilder e;
  e.output(e.node("Neg", {e.input({4})}));
  auto expected = e.finish();
  auto pass = passes::make_eliminate_dead_code();
  check_pass(*pass, *before, expected.get());
}

TEST(RemoveIdentity, DropsNoOpsButKeepsOutputNamesAndRealReshapes) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 6});
  ir::Value* a = b.node("Identity", {x});
  ir::Value* r = b.node("Relu", {a});
  ir::Value* same = b.node("Reshape", {r, b.ints({2, 6})});  // no-op
  ir::Value* d = b.node("Dropout", {same});
  ir::Value* t = b.node("Transpose", {d}, {{"perm", attr_ints({0, 1})}});
  ir::Value* real = b.node("Reshape", {t, b.ints({3, 4})});  // changes dims: stays
  b.output(real);
  b.output(b.node("Identity", {x}));  // graph input straight to output: must stay
  auto before = b.finish();
  std::string out_name = before->outputs[0]->name;
  GraphBuilder e;
  ir::Value* ex = e.input({2, 6});
  e.output(e.node("Reshape", {e.node("Relu", {ex}), e.ints({3, 4})}));
  e.output(e.node("Identity", {ex}));
  auto expected = e.finish();
  auto pass = passes::make_remove_identity();
  auto after = check_pass(*pass, *before, expected.get());
  EXPECT_EQ(after->outputs[0]->name, out_name);
}

TEST(EliminateCommonSubexpressions, MergesTwinsWithEqualConstants) {
  GraphBuilder b;
  ir::Value* x = b.input({3, 3});
  ir::Value* a = b.node("Mul", {x, b.scalar(3.f)});
  ir::Value* c = b.node("Mul", {x, b.scalar(3.f)});  // distinct constant, same value
  ir::Value* d = b.node("Mul", {x, b.scalar(4.f)});  // different: stays
  b.output(b.node("Add", {b.node("Add", {a, c}), d}));
  auto before = b.finish();
  GraphBuilder e;
  ir::Value* ex = e.input({3, 3});
  ir::Value* ea = e.node("Mul", {ex, e.scalar(3.f)});
  ir::Value* ed = e.node("Mul", {ex, e.scalar(4.f)});
  e.output(e.node("Add", {e.node("Add", {ea, ea}), ed}));
  auto expected = e.finish();
  auto pass = passes::make_eliminate_common_subexpressions();
  check_pass(*pass, *before, expected.get());
}

}  // namespace
}  // namespace kiln::test
