// Removes ops that pass their input through unchanged: Identity, Dropout (at
// inference), and Reshape/Flatten/Squeeze/Unsqueeze/Cast/Transpose/Expand
// that leave dims, dtype and element order as they were.
#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {
bool is_noop(const ir::Node& n) {
  const ir::Value* x = n.in(0);
  const ir::Value* y = n.outputs.empty() ? nullptr : n.outputs[0];
  if (!x || !y || x->dtype != y->dtype || x->dims != y->dims) return false;
  const std::string& op = n.op_type;
  if (op == "Identity" || op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" ||
      op == "Cast" || op == "Expand")
    return true;
  if (op == "Dropout") return n.outputs.size() < 2 || n.outputs[1] == nullptr;
  if (op == "Transpose") {
    auto perm = n.ints("perm");
    for (size_t k = 0; k < perm.size(); ++k)
      if (perm[k] != int64_t(k)) return false;
    return !perm.empty() || x->dims.size() <= 1;
  }
  return false;
}

class RemoveIdentity : public RewriteRule {
 public:
  const char* name() const override { return "remove_identity"; }
  std::vector<std::string> targets() const override {
    return {"Identity", "Dropout", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Transpose", "Expand"};
  }
  bool apply(ir::Graph& g, ir::Node& n, PassContext& ctx) override {
    if (!is_noop(n)) return false;
    ir::Value* x = n.inputs[0];
    ir::Value* y = n.outputs[0];
    if (!can_reroute(g, y, x)) return false;
    ctx.note("removed no-op " + n.label());
    g.remove_node(&n);
    reroute(g, y, x);
    return true;
  }
};
}  // namespace

std::unique_ptr<Pass> make_remove_identity() { return std::make_unique<RemoveIdentity>(); }

}  // namespace kiln::passes
