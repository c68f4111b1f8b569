// Internals of kiln::export_qdq_onnx (include/kiln/calibrator.h), open to
// tests: the in-memory rewrite, without file reading or writing.
#pragma once

#include <map>
#include <string>

#include <onnx/onnx_pb.h>

namespace kiln::onnx_export {

struct QdqCounts {
  int activations = 0;  // QuantizeLinear/DequantizeLinear pairs inserted
  int weights = 0;      // weights stored as int8 behind a per-axis DequantizeLinear
};

// Rewrites `m` in place (see export_qdq.cpp). `base_dir` resolves external
// data; `origin` names the model in errors. Throws kBadInput for a scale that
// is not finite and > 0 or is given for a tensor declared non-float32, and
// kUnsupported for an opset below 13 that cannot be raised to 13 as is.
QdqCounts add_qdq(onnx::ModelProto& m, const std::map<std::string, float>& scales, const std::string& base_dir,
                  const std::string& origin);

}  // namespace kiln::onnx_export
