// prune_graph: drops nodes with all-constant outputs and nodes nobody reads.
#include "builder/prune.h"

#include <gtest/gtest.h>

#include "engine/test_ops.h"
#include "ir/op_registry.h"
#include "support/op_test.h"

namespace kiln {
namespace {

TEST(Prune, DropsConstantAndDeadNodes) {
  test::register_test_ops();
  ir::Graph g;
  ir::Value* x = g.add_value("X");
  x->dtype = DataType::kFloat32;
  x->dims = {2, 3};
  x->has_shape = true;
  g.inputs = {x};
  ir::Value *r = g.add_value("R"), *d = g.add_value("D"), *d2 = g.add_value("D2"), *s = g.add_value("S"),
            *z = g.add_value("Z");
  auto node = [&](const char* op, const char* name, std::vector<ir::Value*> ins, ir::Value* out) {
    ir::Node* n = g.add_node(op, name, std::move(ins), {out});
    n->domain = test::kTestDomain;
    return n;
  };
  node("Relu", "relu", {x}, r);
  node("Relu", "dead", {x}, d);
  node("Relu", "dead_consumer", {d}, d2);  // only feeds nothing: both go
  ir::Node* shape_like = node("Relu", "shape_like", {x}, s);
  node("Add", "add", {r, s}, z);
  g.outputs = {z};
  ir::infer_shapes(g);
  // What Shape/Size do during inference: publish the output as a constant.
  s->constant = std::make_shared<const ir::Tensor>(test::random_tensor(DataType::kFloat32, {2, 3}, 1));
  (void)shape_like;

  EXPECT_EQ(prune_graph(g), 3u);
  ASSERT_EQ(g.nodes().size(), 2u);
  EXPECT_EQ(g.nodes()[0]->name, "relu");
  EXPECT_EQ(g.nodes()[1]->name, "add");
  EXPECT_EQ(g.value("D"), nullptr);
  EXPECT_EQ(g.value("D2"), nullptr);
  ASSERT_NE(g.value("S"), nullptr);
  EXPECT_TRUE(g.value("S")->is_constant());
  EXPECT_EQ(g.value("S")->producer, nullptr);
  EXPECT_EQ(prune_graph(g), 0u);  // idempotent
}

TEST(Prune, KeepsNodesFeedingGraphOutputs) {
  auto g = test::make_test_graph();
  EXPECT_EQ(prune_graph(*g), 0u);
  EXPECT_EQ(g->nodes().size(), 4u);
}

}  // namespace
}  // namespace kiln
