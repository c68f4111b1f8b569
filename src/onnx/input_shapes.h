// Graph input shapes at import: symbolic dimensions resolved from
// ImportOptions (the batch for axis 0, then the user's input_shapes), static
// ones checked against what the user gave.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

#include "ir/graph.h"
#include "onnx/importer.h"

namespace kiln::onnx_import {

// The dims of graph input `name` declared as `type`; *batch_axis = 0 when
// axis 0 is symbolic, -1 otherwise. Throws kUnsupported for a symbolic axis
// (or a missing shape) nothing gives a value, kBadInput when
// opts.input_shapes disagrees with the model (rank, a static axis, a size
// below 1).
ir::Dims resolve_input_dims(const std::string& name, const onnx::TypeProto_Tensor& type, const ImportOptions& opts,
                            int* batch_axis);

// kBadInput when opts.input_shapes names something that is not a graph input.
void check_input_shape_names(const ImportOptions& opts, const std::vector<ir::Value*>& inputs);

}  // namespace kiln::onnx_import
