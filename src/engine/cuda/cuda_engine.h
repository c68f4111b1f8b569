// The CUDA Engine: a loaded GPU plan with one kernel (the tactic the builder
// chose) per layer, weights on the device, and per-context activation memory.
#pragma once

#include <memory>
#include <string>

#include "ir/graph.h"
#include "kiln/kiln.h"

namespace kiln {

std::unique_ptr<Engine> make_cuda_engine(std::unique_ptr<ir::Graph> graph, const std::string& origin,
                                         const std::string& device);

}  // namespace kiln
