// INT8 builds: scales (the model's Q/DQ pairs, else calibration or its
// cache), the sensitivity guard, the INT8 assignment and, on the GPU, the
// timed choice that returns an INT8 conv to float where float is faster.
#pragma once

#include "builder/network.h"
#include "ir/graph.h"
#include "kiln/kiln.h"
#ifdef KILN_WITH_CUDA
#include "builder/cuda/cuda_build.h"
#endif

namespace kiln {

// Rewrites the optimized graph `g` for an INT8 build. The GPU choice is
// recorded per layer in g.metadata["int8_timing/<layer>"].
void apply_int8(ir::Graph& g, const Network& network, const BuilderConfig& c);

#ifdef KILN_WITH_CUDA
// The CUDA builder's options for `c` (timing cache opened).
cuda_build::Options cuda_options(const BuilderConfig& c);
#endif

}  // namespace kiln
