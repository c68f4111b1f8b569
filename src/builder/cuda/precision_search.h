// The graph side of choosing FP16 or FP32 per layer (choose_fp32_layers in
// cuda_build.h): the two candidate plans that are timed, the problem
// choose_precision solves from their times, and how the answer is recorded.
// Kept apart from the timing so all of it is tested without a GPU.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "builder/cuda/choose_precision.h"
#include "builder/cuda/cuda_build.h"

namespace kiln::cuda_build {

// Per node of g: free, or pinned (fp16_layers / fp32_layers, or FP32 for a
// layer without an FP16 kernel). Throws kUsage for a layer named in both
// lists, or forced to FP16 without an FP16 kernel.
std::vector<PrecisionLayer::Pin> precision_pins(const ir::Graph& g, const Options& o);

// Copies of g with formats assigned: `fp16` runs every layer that can in
// FP16 (but o.fp32_layers), `fp32` runs everything in FP32.
struct PrecisionRounds {
  std::unique_ptr<ir::Graph> fp16, fp32;
  std::vector<const ir::Node*> fp16_node, fp32_node;  // g.nodes()[i]'s copy in each
  std::map<const ir::Node*, double> ms;              // timed nodes of both copies (Reformats too)
};
PrecisionRounds make_precision_rounds(const ir::Graph& g, const Options& o);

// A conversion to time for one tensor of the problem: the tensor as the
// FP16 copy stores it, converted to the other precision, row-major.
struct ReformatProbe {
  int tensor = -1;                  // index in PrecisionProblem::tensors
  const ir::Value* from = nullptr;  // in PrecisionRounds::fp16
  DataType to = DataType::kFloat32;
};

// Layers are g's nodes (same order); tensors are the float activations whose
// precision some free or forced layer decides. Reformat times are left 0 and
// listed in `probes` for the caller to time.
PrecisionProblem precision_problem(const ir::Graph& g, const PrecisionRounds& r,
                                   const std::vector<PrecisionLayer::Pin>& pins, std::vector<ReformatProbe>* probes);

// One Reformat layer per probe, in order, each on its own graph input.
std::unique_ptr<ir::Graph> reformat_probe_graph(const std::vector<ReformatProbe>& probes);

// Records the choice in g.metadata ("precision/<layer>" per layer with an
// FP16 kernel, "precision" for the counts), logs one verbose line per layer
// switched to FP32 and an info line; returns o.fp32_layers plus the layers
// chosen FP32.
std::set<std::string> record_precision(ir::Graph& g, const PrecisionProblem& p, const PrecisionChoice& c,
                                       const Options& o);

}  // namespace kiln::cuda_build
