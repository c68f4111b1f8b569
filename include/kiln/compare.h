// kiln public API: where a built engine loses accuracy, layer by layer.
//
// compare_layers runs the model in FP32 on kiln's CPU engine (the graph as
// the builder optimizes it, every float tensor kept) and the plan on the
// device it was built for (CPU or CUDA) with every layer output kept, on the
// same inputs, and measures each tensor that both hold: the tensors at the
// plan's fused-layer boundaries. INT8 tensors are dequantized with their
// scale and FP16 ones widened before comparing.
//
//   auto net = kiln::parse_onnx("model.onnx");
//   auto report = kiln::compare_layers(*net, kiln::read_file("model.plan"), inputs, "model.plan");
//   report.tensors.front();  // the tensor with the lowest cosine similarity
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kiln/kiln.h"

namespace kiln {

// One tensor, engine (a) against the FP32 reference (b).
struct TensorError {
  std::string tensor;     // its name, the same in the plan and the reference
  std::string layer;      // the plan's layer that wrote it
  std::string op_type;    // that layer's op, as `kiln inspect` names it ("Conv", "kiln::QConv", ...)
  std::string precision;  // the tensor's dtype in the engine: "fp32", "fp16", "int8", ...
  std::vector<int64_t> shape;
  bool network_output = false;
  double cosine = 1;   // a.b / (|a| |b|); 1 when both are all zeros, 0 when only one is; NaN if either holds NaN
  double max_abs = 0;  // max |a - b|
  double max_rel = 0;  // max |a - b| / max |b| (0 / 0 = 0)
  double ref_max = 0;  // max |b|
};

struct LayerComparison {
  std::string device;                 // the plan's target ("cpu", "cuda:sm_90:...")
  int batch = 0;                      // the batch compared, 0 when the inputs have no batch axis
  // Every float tensor both hold (float network outputs included), lowest
  // cosine first. Integer outputs (class ids, counts) are only in `outputs`.
  std::vector<TensorError> tensors;
  std::vector<TensorError> outputs;   // the network outputs, in the plan's order
  std::vector<std::string> skipped;   // plan tensors the reference graph does not have (reformats, ...)
  std::vector<std::string> mismatched;  // "name: plan fp32[..], reference fp32[..]": same name, other shape
};

// `model` is parsed at the batch the plan runs; `inputs` holds every network
// input. A profile plan runs the specialization whose batch the inputs have.
// Throws kBadInput when the plan's inputs do not match the model's (names,
// dtypes, shapes: both are named), for a plan this kiln cannot run (as
// Runtime::deserialize), and for inputs of the wrong dtype or shape; kUsage
// when a profile plan has no specialization at the inputs' batch.
LayerComparison compare_layers(const Network& model, const std::vector<uint8_t>& plan,
                               const std::map<std::string, HostTensor>& inputs,
                               const std::string& origin = "<memory>");

}  // namespace kiln
