#include "builder/clone.h"

#include <unordered_map>

#include "kiln/error.h"

namespace kiln {

std::unique_ptr<ir::Graph> clone_graph(const ir::Graph& src) {
  auto g = std::make_unique<ir::Graph>();
  g->name = src.name;
  g->metadata = src.metadata;
  std::unordered_map<const ir::Value*, ir::Value*> map;
  for (auto& [name, vp] : src.values()) {
    ir::Value* v = g->add_value(name);
    v->dtype = vp->dtype;
    v->dims = vp->dims;
    v->has_shape = vp->has_shape;
    v->batch_axis = vp->batch_axis;
    v->layout = vp->layout;
    v->constant = vp->constant;  // shared, immutable
    map[vp.get()] = v;
  }
  auto m = [&](const ir::Value* v) -> ir::Value* {
    if (!v) return nullptr;
    auto it = map.find(v);
    if (it == map.end()) throw_internal("clone_graph: graph '" + src.name + "' refers to a value it does not own");
    return it->second;
  };
  for (const ir::Value* v : src.inputs) g->inputs.push_back(m(v));
  for (const ir::Value* v : src.outputs) g->outputs.push_back(m(v));
  for (auto& np : src.nodes()) {
    std::vector<ir::Value*> ins;
    for (const ir::Value* v : np->inputs) ins.push_back(m(v));
    // Outputs are attached by hand: add_node expects no omitted (null) outputs.
    ir::Node* n = g->add_node(np->op_type, np->name, std::move(ins), {});
    for (const ir::Value* v : np->outputs) {
      ir::Value* o = m(v);
      if (o) o->producer = n;
      n->outputs.push_back(o);
    }
    n->domain = np->domain;
    n->opset = np->opset;
    n->attrs = np->attrs;  // tensor attributes share storage, like constants
    n->path = np->path;
    n->fused = np->fused;
    n->tactic = np->tactic;
    n->precision = np->precision;
  }
  return g;
}

}  // namespace kiln
