// Building for the CUDA backend: after the graph passes, give every value the
// dtype and layout its kernels want (inserting Reformat layers where they
// change), then time every tactic of every layer and keep the fastest.
#pragma once

#include <set>
#include <string>

#include "ir/graph.h"

namespace kiln::cuda_build {

struct Options {
  bool fp16 = false;                  // FP16 wherever a layer has an FP16 kernel
  std::set<std::string> fp32_layers;  // layer names kept in FP32 even with fp16
  std::string timing_cache;           // file to read and update ("" = none)
  int timing_runs = 10;               // timed runs per tactic (median kept)
};

// Assigns dtypes and layouts; returns the number of Reformat layers inserted.
// Throws kUnsupported naming the first layer no CUDA kernel can run.
int assign_formats(ir::Graph& g, const Options& o);

struct TimingStats { int timed = 0, cached = 0, single = 0; };
// Picks every node's tactic, recording each candidate's median time in
// g.metadata["tactics/<node index>"] as "name=ms;name=ms" ("name=error").
TimingStats select_tactics(ir::Graph& g, const Options& o);

}  // namespace kiln::cuda_build
