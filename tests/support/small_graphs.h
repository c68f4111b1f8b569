// Small graphs shared by builder tests that only need a realistic shape of
// network, not particular values.
#pragma once

#include <memory>
#include <string>

#include "ir/graph.h"

namespace kiln::test {

// x [1,3,8,8] -> Conv "conv" (4 random 3x3 filters, pads 1) -> c -> Relu
// "relu" -> r -> `tail_op` node `tail_name` -> y, shapes inferred. A MatMul
// tail multiplies by a random constant "m" [8,8]; any other tail op takes r
// alone.
std::unique_ptr<ir::Graph> conv_relu_then(const std::string& tail_op, const std::string& tail_name);

}  // namespace kiln::test
