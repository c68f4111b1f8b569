#include "support/small_graphs.h"

#include "ir/op_registry.h"
#include "support/op_test.h"

namespace kiln::test {

std::unique_ptr<ir::Graph> conv_relu_then(const std::string& tail_op, const std::string& tail_name) {
  auto g = std::make_unique<ir::Graph>();
  ir::Value* x = g->add_value("x");
  x->dtype = DataType::kFloat32;
  x->dims = {1, 3, 8, 8};
  x->has_shape = true;
  g->inputs.push_back(x);
  ir::Value* w = g->add_constant("w", random_tensor(DataType::kFloat32, {4, 3, 3, 3}, 1));
  ir::Value* c = g->add_value("c");
  ir::Value* r = g->add_value("r");
  ir::Value* y = g->add_value("y");
  ir::Node* conv = g->add_node("Conv", "conv", {x, w}, {c});
  conv->attrs["pads"] = attr_ints({1, 1, 1, 1});
  g->add_node("Relu", "relu", {c}, {r});
  std::vector<ir::Value*> tail_in{r};
  if (tail_op == "MatMul") tail_in.push_back(g->add_constant("m", random_tensor(DataType::kFloat32, {8, 8}, 2)));
  g->add_node(tail_op, tail_name, tail_in, {y});
  g->outputs.push_back(y);
  ir::infer_shapes(*g, nullptr);
  return g;
}

}  // namespace kiln::test
