// INT8 sensitivity guard: runs the FP32 graph and its INT8 assignment on the
// CPU over calibration batches and returns the layers that add the most
// error to float, one at a time, until the network's output error is within
// a bound.
//
// Errors are relative L2 norms, ||int8 - fp32|| / ||fp32||, over all batches.
// The network error is the worst over the watched tensors: the graph's float
// outputs, except that an output made by a plugin (NMS, whose selections jump
// with tiny score changes) is replaced by the plugin's float inputs. A
// layer's added error is the part of its output's error that the largest
// error among its activation inputs does not explain, sqrt(out^2 - in^2)
// (independent errors add in quadrature), so a layer is not blamed for what
// it was fed.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"
#include "kiln/types.h"
#include "quant/assign_int8.h"

namespace kiln::quant {

using Batch = std::map<std::string, HostTensor>;

struct GuardResult {
  std::vector<std::string> returned;  // layers sent back to float, in the order chosen
  double error_before = 0, error_after = 0;
  bool met = false;  // error_after <= bound
  // The last measurement's added error per INT8 layer, worst first.
  std::vector<std::pair<std::string, double>> layer_errors;
};

// `fp32` is the optimized float graph (unchanged). opts.keep_float is
// respected; the result's `returned` layers are to be added to it.
GuardResult run_int8_guard(const ir::Graph& fp32, const std::map<std::string, float>& scales,
                           const Int8Options& opts, const std::vector<Batch>& batches, double bound);

// One line for logs and plan metadata.
std::string describe(const GuardResult& r, double bound);

}  // namespace kiln::quant
