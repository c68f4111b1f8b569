// onnx::TensorProto <-> kiln types. Shared by the importer (initializers,
// Constant nodes, tensor attributes) and the conformance runner (test data).
#pragma once

#include <string>

#include <onnx/onnx_pb.h>

#include "ir/tensor.h"

namespace kiln::onnx_import {

// ONNX element type (TensorProto::DataType value) -> kiln dtype; false when
// kiln has no such dtype.
bool dtype_from_onnx(int onnx_type, DataType* out);
int onnx_from_dtype(DataType t);
// "FLOAT", "DOUBLE", "FLOAT8E4M3FN", ... (also for types libonnx 1.12 predates).
std::string onnx_type_name(int onnx_type);

// Converts `tp` to a dense tensor. `what` names it in errors ("initializer 'w'").
// External data is read relative to `base_dir`; its location must stay inside
// that directory. Sizes are checked against the bytes present before anything
// is allocated. Throws kBadInput (inconsistent / missing data) or kUnsupported
// (dtype kiln lacks, sparse or segmented tensors).
ir::Tensor tensor_from_proto(const onnx::TensorProto& tp, const std::string& base_dir, const std::string& what);

}  // namespace kiln::onnx_import
