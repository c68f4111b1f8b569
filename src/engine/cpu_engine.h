// The CPU Engine: a loaded plan with one kernel per layer.
#pragma once

#include <memory>
#include <string>

#include "ir/graph.h"
#include "kiln/kiln.h"

namespace kiln {

// Validates the decoded graph against this kiln (ops known, stored shapes
// agree with shape inference, tactics available) and creates every kernel.
// Throws kBadInput / kUnsupported naming `origin` and the layer.
// Re-runs a decoded layer's shape inference and requires the stored output
// dtypes and shapes: kernels index by them. Shared by every engine.
void check_plan_node(ir::Node& n, const std::string& origin);

std::unique_ptr<Engine> make_cpu_engine(std::unique_ptr<ir::Graph> graph, const std::string& origin,
                                        const std::string& device);

}  // namespace kiln
