// Nodes whose inputs are all constants are evaluated at build time (with the
// CPU kernels) and replaced by their results.
#include <algorithm>

#include "passes/pass.h"

namespace kiln::passes {

namespace {
class FoldConstants : public Pass {
 public:
  const char* name() const override { return "fold_constants"; }
  bool run(ir::Graph& g, PassContext& ctx) override {
    if (!ctx.evaluator) return false;
    std::vector<std::string> names;
    for (auto& n : g.nodes()) names.push_back(n->label());
    size_t before = g.nodes().size();
    ir::infer_shapes(g, ctx.evaluator);  // folds as it infers
    if (g.nodes().size() == before) return false;
    std::vector<std::string> left;
    for (auto& n : g.nodes()) left.push_back(n->label());
    for (auto& n : names)
      if (std::find(left.begin(), left.end(), n) == left.end()) ctx.note("folded " + n);
    return true;
  }
};
}  // namespace

std::unique_ptr<Pass> make_fold_constants() { return std::make_unique<FoldConstants>(); }

}  // namespace kiln::passes
