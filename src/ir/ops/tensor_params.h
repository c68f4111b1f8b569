// Parameters of the tensor-family ops that both shape inference and the CPU
// kernels need (defined in src/ir/ops/tensor.cpp). They read the node's
// constant inputs and input shapes and throw kBadInput / kUnsupported naming
// the node.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::ir {

// Per input axis: first element, step (never 0) and output length.
struct SliceParams {
  std::vector<int64_t> start, step;
  Dims out;
};
SliceParams slice_params(const Node& n);

// Output sizes along the split axis, one per node output.
std::vector<int64_t> split_sizes(const Node& n, int64_t axis);

// Per input axis: elements added before / after (negative crops).
struct PadParams {
  std::vector<int64_t> begin, end;
  std::string mode;  // constant | reflect | edge | wrap
};
PadParams pad_params(const Node& n);

}  // namespace kiln::ir
