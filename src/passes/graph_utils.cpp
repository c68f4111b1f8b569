#include "passes/graph_utils.h"

#include <algorithm>

#include "kiln/error.h"

namespace kiln::passes {

bool is_graph_output(const ir::Graph& g, const ir::Value* v) {
  return std::find(g.outputs.begin(), g.outputs.end(), v) != g.outputs.end();
}

ir::Node* sole_consumer(const ir::Graph& g, const ir::Value* v) {
  if (is_graph_output(g, v)) return nullptr;
  auto users = g.consumers(v);
  if (users.size() != 1) return nullptr;
  return users[0];
}

const ir::Tensor* constant_of(const ir::Value* v) { return v && v->constant ? v->constant.get() : nullptr; }

bool can_reroute(const ir::Graph& g, const ir::Value* from, const ir::Value* to) {
  if (!is_graph_output(g, from)) return true;
  // `to` would have to take the output's name: impossible for inputs and other outputs.
  return !is_graph_output(g, to) && std::find(g.inputs.begin(), g.inputs.end(), to) == g.inputs.end();
}

void reroute(ir::Graph& g, ir::Value* from, ir::Value* to) {
  if (from == to) return;
  if (is_graph_output(g, from)) {
    if (!can_reroute(g, from, to)) throw_internal("reroute: cannot rename '" + to->name + "'");
    // Keep the user-visible output name on the surviving value.
    std::string name = from->name;
    g.rename(from, g.unique_name(name + "__replaced"));
    g.rename(to, name);
  }
  g.replace_uses(from, to);
}

std::string fused_label(const ir::Node& n) {
  if (n.fused.empty()) return n.name;
  std::string s;
  for (const auto& f : n.fused) s += (s.empty() ? "" : "+") + f;
  return s;
}

void absorb(ir::Node& into, const ir::Node& absorbed) {
  if (into.fused.empty()) into.fused.push_back(into.name);
  if (absorbed.fused.empty())
    into.fused.push_back(absorbed.name);
  else
    into.fused.insert(into.fused.end(), absorbed.fused.begin(), absorbed.fused.end());
}

void absorb_upstream(ir::Node& into, const ir::Node& upstream) {
  ir::Node merged;
  merged.name = upstream.name;
  merged.fused = upstream.fused;
  absorb(merged, into);
  into.fused = std::move(merged.fused);
}

}  // namespace kiln::passes
