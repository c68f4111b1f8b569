// The data half of INT8 calibration: which tensors get a scale, and their
// statistics over a calibrator's batches, gathered by running the optimized
// graph in FP32 on the CPU with every such tensor exposed as an output.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/calibrator.h"
#include "quant/histogram.h"

namespace kiln::quant {

// The tensors that get an INT8 scale: the fp32 graph inputs, then every fp32
// node output that is not a constant, in graph order, each name once.
std::vector<std::string> calibration_tensor_names(const ir::Graph& g);

struct CollectedStats {
  std::map<std::string, TensorStats> stats;  // one entry per calibration_tensor_names(g)
  int batches = 0;
};

// Runs every batch of `calibrator` through a CPU FP32 engine made from a copy
// of `g` (already optimized; it is not changed) and accumulates each tensor's
// statistics. Each batch must hold every graph input with its dtype and
// shape: kBadInput naming the input and the 0-based batch index otherwise;
// kUsage when the calibrator gives no batch. `progress`: a one-line progress
// bar on stderr.
CollectedStats collect_stats(const ir::Graph& g, Calibrator& calibrator, bool progress);

// calibrate() for a graph that is already optimized, as the builder holds it
// (so the names are exactly those it will quantize): statistics, thresholds,
// scales, and the cache read or written as `config` says.
std::map<std::string, float> calibrate_graph(const ir::Graph& g, const CalibrationConfig& config);

}  // namespace kiln::quant
