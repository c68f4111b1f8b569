#include "builder/prune.h"

#include <set>

namespace kiln {

size_t prune_graph(ir::Graph& g) {
  size_t removed = 0;
  // One backward sweep: a node's consumers come after it, so by the time it
  // is visited every consumer that will be removed already is.
  std::set<const ir::Value*> used(g.outputs.begin(), g.outputs.end());
  std::vector<ir::Node*> order;
  for (auto& n : g.nodes()) order.push_back(n.get());
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    ir::Node* n = *it;
    bool all_constant = true, any_used = false;
    for (const ir::Value* o : n->outputs) {
      if (!o) continue;
      all_constant = all_constant && o->is_constant();
      any_used = any_used || used.count(o);
    }
    if (all_constant || !any_used) {
      // Outputs that stay (constants) must not point at the removed node.
      for (ir::Value* o : n->outputs)
        if (o && o->producer == n) o->producer = nullptr;
      n->outputs.clear();
      g.remove_node(n);
      ++removed;
      continue;
    }
    used.insert(n->inputs.begin(), n->inputs.end());
  }
  g.remove_unused_values();
  return removed;
}

}  // namespace kiln
