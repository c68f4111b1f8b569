// The user-facing view of a graph (kiln inspect, Engine::summary).
#pragma once

#include "ir/graph.h"
#include "kiln/kiln.h"

namespace kiln {

TensorInfo tensor_info(const ir::Value& v);
// One LayerInfo per node; launches counts the nodes that run a kernel or a
// plugin; weight_bytes sums every constant that a node or output uses, once.
NetworkSummary summarize_graph(const ir::Graph& g);

}  // namespace kiln
