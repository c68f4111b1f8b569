// The element-wise ops a kiln FusedElementwise node can chain (see
// src/ir/ops/fused.cpp): one list shared by the fusion pass, shape inference
// and the CPU kernel.
#pragma once

#include <string>

namespace kiln::ir {

bool fusable_unary(const std::string& op);   // Relu, Sigmoid, Clip, ...
bool fusable_binary(const std::string& op);  // Add, Sub, Mul, Div, Max, Min, Pow

}  // namespace kiln::ir
