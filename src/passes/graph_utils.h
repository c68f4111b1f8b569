// Small queries and edits shared by the passes.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::passes {

bool is_graph_output(const ir::Graph& g, const ir::Value* v);
// The only node reading `v`, or nullptr if it has several readers, none, or
// is a graph output (then its value must stay materialized).
ir::Node* sole_consumer(const ir::Graph& g, const ir::Value* v);
// `v`'s constant data, or nullptr.
const ir::Tensor* constant_of(const ir::Value* v);
// False when `from` is a graph output and `to` cannot take over its name
// (`to` is a graph input or another output): the rewrite must then be skipped.
bool can_reroute(const ir::Graph& g, const ir::Value* from, const ir::Value* to);
// Makes every reader of `from` read `to` instead, keeping graph output names:
// if `from` is a graph output, `to` takes over its name.
void reroute(ir::Graph& g, ir::Value* from, ir::Value* to);
// "a+b+c" of the source nodes merged into `n` (its own name if none recorded).
std::string fused_label(const ir::Node& n);
// Records that `absorbed` was merged into `into`.
void absorb(ir::Node& into, const ir::Node& absorbed);
// Records that `upstream`, which fed `into`, was merged into it, keeping the
// source names in data-flow order ("pad1+conv1").
void absorb_upstream(ir::Node& into, const ir::Node& upstream);

}  // namespace kiln::passes
