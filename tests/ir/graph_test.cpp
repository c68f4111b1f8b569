#include <gtest/gtest.h>

#include "ir/graph.h"
#include "kiln/error.h"

using namespace kiln;
using namespace kiln::ir;

TEST(Graph, TopoSortReordersAndDetectsCycles) {
  Graph g;
  Value* a = g.add_value("a");
  Value* b = g.add_value("b");
  Value* c = g.add_value("c");
  g.inputs = {a};
  g.outputs = {c};
  g.add_node("Relu", "second", {b}, {c});
  g.add_node("Relu", "first", {a}, {b});
  g.topo_sort();
  ASSERT_EQ(g.nodes().size(), 2u);
  EXPECT_EQ(g.nodes()[0]->name, "first");
  EXPECT_EQ(g.nodes()[1]->name, "second");

  Graph cyc;
  Value* x = cyc.add_value("x");
  Value* y = cyc.add_value("y");
  cyc.add_node("Relu", "n1", {x}, {y});
  cyc.add_node("Relu", "n2", {y}, {x});
  EXPECT_THROW(cyc.topo_sort(), Error);
}

TEST(Tensor, HalfRoundTripAndRounding) {
  for (float f : {0.f, 1.f, -2.5f, 65504.f, 6.1035156e-05f, 5.9604645e-08f})
    EXPECT_EQ(half_to_float(float_to_half(f)), f) << f;
  EXPECT_EQ(float_to_half(1e6f), 0x7c00);             // overflow -> inf
  EXPECT_EQ(half_to_float(float_to_half(1.0009765625f + 1e-7f)), 1.0009765625f);
}

TEST(Tensor, RejectsHugeShapes) {
  EXPECT_THROW(Tensor(DataType::kFloat32, {int64_t(1) << 40, 1024}), Error);
  EXPECT_THROW(Tensor(DataType::kFloat32, {-1}), Error);
}
