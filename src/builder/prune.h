// Removes nodes the engine must not run: those whose outputs are all
// constants already (Shape/Size publish their result during shape inference,
// so the node stays behind with nothing left to compute) and those whose
// outputs nobody reads (left over once their consumers were folded).
#pragma once

#include "ir/graph.h"

namespace kiln {

// Returns the number of nodes removed; drops values nothing refers to.
size_t prune_graph(ir::Graph& g);

}  // namespace kiln
