// ONNX -> ir::Graph. Uses libonnx's protobuf classes and its schema registry
// (for ops the standard defines as a function body). The graph it returns has
// shapes on inputs and constants only; ir::infer_shapes completes it.
//
// Canonical forms: every node is emitted in its opset-18 form whatever opset
// the model uses, so kernels see one layout per op. In particular: Reduce*
// take `axes` as optional input 1; Split takes `split` as input 1; Squeeze and
// Unsqueeze take `axes` as input 1; Clip takes min/max as inputs 1, 2; Pad
// takes (data, pads, constant_value, axes) with mode attribute; Slice takes
// (data, starts, ends, axes, steps); Upsample becomes Resize(X, roi, scales);
// Constant nodes become constants. Attributes that need shapes (auto_pad,
// a missing kernel_shape) are resolved by the op's shape inference, which
// rewrites them into explicit `pads` / `kernel_shape`.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::onnx_import {

struct ImportOptions {
  int batch = 0;  // value for a symbolic leading input dimension; 0 = 1
  // Values for symbolic input dimensions, a full shape per input (see
  // kiln::ParseOptions::input_shapes; resolved in input_shapes.cpp).
  std::map<std::string, std::vector<int64_t>> input_shapes;
};

// Throws kBadInput (unreadable/corrupt file, bad graph) or kUnsupported
// (op with neither a kiln kernel, a function body nor a plugin), naming the
// node, op type, opset and domain.
std::unique_ptr<ir::Graph> import_file(const std::string& path, const ImportOptions& opts);
// `base_dir` resolves external-data files.
std::unique_ptr<ir::Graph> import_bytes(const std::string& bytes, const std::string& base_dir,
                                        const ImportOptions& opts);

}  // namespace kiln::onnx_import
