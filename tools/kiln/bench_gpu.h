// GPU timing for `kiln bench` (CUDA events; transfers timed apart).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kiln/kiln.h"

namespace kiln::cli {

struct GpuTimes {
  std::vector<double> latency_ms;  // one inference each, inputs already on the device
  double throughput_ms = 0;        // per inference, back to back
  double h2d_ms = 0, d2h_ms = 0;   // copying all inputs in / all outputs out (pinned)
};

// Batch-profile engines: `batch` is the batch the caller set on `ctx`
// (ExecutionContext::set_batch), the rows the transfers move; 0 otherwise.
GpuTimes bench_gpu(const Engine& engine, ExecutionContext& ctx, const std::map<std::string, HostTensor>& inputs,
                   int64_t batch, int warmup, int iterations, bool cuda_graph);

}  // namespace kiln::cli
