// Merges nodes that compute the same thing: same op, attributes and inputs
// (kiln's ops are deterministic), and constants with identical contents.
#include <cstring>
#include <map>

#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {
bool same_attr(const ir::Attribute& a, const ir::Attribute& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case ir::Attribute::Kind::kInt: return a.i == b.i;
    case ir::Attribute::Kind::kFloat: return std::memcmp(&a.f, &b.f, sizeof(float)) == 0;
    case ir::Attribute::Kind::kString: return a.s == b.s;
    case ir::Attribute::Kind::kInts: return a.ints == b.ints;
    case ir::Attribute::Kind::kFloats:
      return a.floats.size() == b.floats.size() &&
             std::memcmp(a.floats.data(), b.floats.data(), a.floats.size() * sizeof(float)) == 0;
    case ir::Attribute::Kind::kStrings: return a.strings == b.strings;
    case ir::Attribute::Kind::kTensor:
      return a.t.dtype() == b.t.dtype() && a.t.dims() == b.t.dims() &&
             std::memcmp(a.t.raw(), b.t.raw(), a.t.nbytes()) == 0;
  }
  return false;
}

bool same_constant(const ir::Value* a, const ir::Value* b) {
  const ir::Tensor *x = constant_of(a), *y = constant_of(b);
  return x && y && x->dtype() == y->dtype() && x->dims() == y->dims() &&
         (x->raw() == y->raw() || std::memcmp(x->raw(), y->raw(), x->nbytes()) == 0);
}

bool same_computation(const ir::Node& a, const ir::Node& b) {
  if (a.op_type != b.op_type || a.domain != b.domain || a.inputs.size() != b.inputs.size() ||
      a.outputs.size() != b.outputs.size() || a.attrs.size() != b.attrs.size())
    return false;
  for (size_t k = 0; k < a.inputs.size(); ++k)
    if (a.inputs[k] != b.inputs[k] && !same_constant(a.inputs[k], b.inputs[k])) return false;
  for (auto& [key, attr] : a.attrs) {
    auto it = b.attrs.find(key);
    if (it == b.attrs.end() || !same_attr(attr, it->second)) return false;
  }
  return true;
}

class EliminateCommonSubexpressions : public Pass {
 public:
  const char* name() const override { return "eliminate_common_subexpressions"; }
  bool run(ir::Graph& g, PassContext& ctx) override {
    bool changed = false;
    // Bucket by op type and first input to keep the search short.
    std::map<std::pair<std::string, const ir::Value*>, std::vector<ir::Node*>> seen;
    std::vector<ir::Node*> order;
    for (auto& n : g.nodes()) order.push_back(n.get());
    for (ir::Node* n : order) {
      auto& bucket = seen[{n->op_type, n->in(0)}];
      ir::Node* twin = nullptr;
      for (ir::Node* c : bucket)
        if (same_computation(*c, *n)) { twin = c; break; }
      bool ok = twin != nullptr;
      for (size_t k = 0; ok && k < n->outputs.size(); ++k)
        ok = !n->outputs[k] || (twin->outputs[k] && can_reroute(g, n->outputs[k], twin->outputs[k]));
      if (!ok) {
        bucket.push_back(n);
        continue;
      }
      ctx.note("merged " + n->label() + " into " + twin->label());
      std::vector<ir::Value*> outs = n->outputs;
      g.remove_node(n);
      for (size_t k = 0; k < outs.size(); ++k)
        if (outs[k]) reroute(g, outs[k], twin->outputs[k]);
      changed = true;
    }
    return changed;
  }
};
}  // namespace

std::unique_ptr<Pass> make_eliminate_common_subexpressions() {
  return std::make_unique<EliminateCommonSubexpressions>();
}

}  // namespace kiln::passes
