// The user-facing view of a graph (kiln inspect, Engine::summary).
#pragma once

#include "engine/memory_plan.h"
#include "ir/graph.h"
#include "kiln/kiln.h"

namespace kiln {

TensorInfo tensor_info(const ir::Value& v);
// One LayerInfo per node; launches counts the nodes that run a kernel or a
// plugin under the memory plan (elided views and concats run none);
// activation_bytes is the plan's arena; weight_bytes sums every constant that
// a node or output uses, once. Without `plan`, plans `g` as an engine would.
NetworkSummary summarize_graph(const ir::Graph& g, const MemoryPlan* plan = nullptr);

}  // namespace kiln
