// Removes nodes none of whose outputs reach a graph output.
#include <set>

#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {
class EliminateDeadCode : public Pass {
 public:
  const char* name() const override { return "eliminate_dead_code"; }
  bool run(ir::Graph& g, PassContext& ctx) override {
    std::set<const ir::Value*> live(g.outputs.begin(), g.outputs.end());
    std::vector<ir::Node*> dead;
    // Reverse topological walk: a node is live if any output is read by a live node.
    for (auto it = g.nodes().rbegin(); it != g.nodes().rend(); ++it) {
      ir::Node* n = it->get();
      bool used = false;
      for (ir::Value* o : n->outputs) used = used || (o && live.count(o));
      if (!used) {
        dead.push_back(n);
        continue;
      }
      for (ir::Value* in : n->inputs)
        if (in) live.insert(in);
    }
    for (ir::Node* n : dead) {
      ctx.note("removed unused " + n->label());
      g.remove_node(n);
    }
    return !dead.empty();
  }
};
}  // namespace

std::unique_ptr<Pass> make_eliminate_dead_code() { return std::make_unique<EliminateDeadCode>(); }

}  // namespace kiln::passes
