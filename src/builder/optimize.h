// The graph-optimization stage of the builder: kiln's standard passes.
#pragma once

#include <vector>

#include "ir/graph.h"
#include "passes/pass.h"

namespace kiln {

// Rewrites `g` in place (shape-inferred afterwards); returns what each pass did.
std::vector<passes::PassRecord> optimize_graph(ir::Graph& g);

}  // namespace kiln
