// QuantizeLinear / DequantizeLinear layout rules shared by shape inference
// (src/ir/ops/quantize.cpp) and the CPU kernels
// (src/backends/cpu/quantize.cpp), so both read a node the same way.
//
// The scale is per tensor when it holds one element and has rank 0 or 1 (as
// onnxruntime reads a one-element vector), and per axis when it is a vector
// as long as x's dimension `axis`. The zero point, when given, has the
// scale's shape. Blocked quantization (opset 21 block_size > 0) is refused.
#pragma once

#include <string>

#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::ir {

struct QuantLayout {
  bool per_axis = false;
  int64_t outer = 1, channels = 1, inner = 1;  // x viewed as [outer, channels, inner]
};

inline QuantLayout quant_layout(const Node& n, const Dims& x, const Dims& scale, const Dims* zero_point) {
  if (n.i("block_size", 0) != 0)
    throw_unsupported(n.label() + ": blocked quantization (block_size=" + std::to_string(n.i("block_size", 0)) +
                      ") is not supported by kiln; use per-tensor or per-axis scales");
  QuantLayout l;
  const int64_t scale_count = numel_of(scale);
  if (zero_point && *zero_point != scale)
    throw_bad_input(n.label() + ": the zero point has shape " + shape_str(*zero_point) + " but the scale has " +
                    shape_str(scale) + "; they must match");
  if (scale.size() <= 1 && scale_count == 1) {
    l.inner = numel_of(x);
    return l;
  }
  if (scale.size() != 1)
    throw_bad_input(n.label() + ": the scale must be a scalar or a 1-D tensor, it has shape " + shape_str(scale));
  const int64_t rank = int64_t(x.size());
  if (rank == 0) throw_bad_input(n.label() + ": a per-axis scale needs an input of rank >= 1, the input is a scalar");
  const int64_t axis = normalize_axis(n, n.i("axis", 1), rank);
  if (scale[0] != x[size_t(axis)])
    throw_bad_input(n.label() + ": per-axis scale has " + std::to_string(scale[0]) + " entries but axis " +
                    std::to_string(axis) + " of the input " + shape_str(x) + " has " + std::to_string(x[size_t(axis)]));
  l.per_axis = true;
  l.channels = scale[0];
  for (int64_t k = 0; k < axis; ++k) l.outer *= x[size_t(k)];
  for (int64_t k = axis + 1; k < rank; ++k) l.inner *= x[size_t(k)];
  return l;
}

}  // namespace kiln::ir
