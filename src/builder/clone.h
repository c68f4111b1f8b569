// Deep copy of a graph's structure for the builder, which rewrites its copy
// and leaves the user's Network untouched. Constant data is shared, not
// copied: constants are immutable, so sharing is safe and keeps builds of
// large models cheap.
#pragma once

#include <memory>

#include "ir/graph.h"

namespace kiln {

std::unique_ptr<ir::Graph> clone_graph(const ir::Graph& g);

}  // namespace kiln
