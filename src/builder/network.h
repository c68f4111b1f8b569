// Definition of the public kiln::Network: a parsed, shape-inferred graph.
#pragma once

#include <memory>
#include <string>

#include "ir/graph.h"
#include "kiln/kiln.h"

namespace kiln {

// `class` to match the public forward declaration.
class Network {
 public:
  std::unique_ptr<ir::Graph> graph;  // shapes inferred, constant subgraphs folded
  std::string source;                // model path, or "<memory>"
};

}  // namespace kiln
