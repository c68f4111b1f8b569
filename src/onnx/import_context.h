// State shared by the importer's parts (importer.cpp: model and node loop,
// canonicalize.cpp: old-opset rewrites, functions.cpp: function expansion,
// elem_types.cpp: element-type tracking for context-dependent functions,
// import_nms.cpp: NonMaxSuppression).
#pragma once

#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <onnx/onnx_pb.h>

#include "ir/graph.h"
#include "onnx/importer.h"

namespace kiln::onnx_import {

// Name resolution for the main graph or one inlined function body.
struct Scope {
  std::map<std::string, int> opsets;  // domain ("" = ai.onnx) -> version
  bool main = true;
  // Function scopes only: body-local name -> value (nullptr = omitted input),
  // and formal outputs -> the caller's value name they must be created under.
  std::map<std::string, ir::Value*> bound;
  std::map<std::string, std::string> out_names;
  std::string prefix;         // caller node name, prefixes body-internal names
  std::string expanded_from;  // top-level op type whose body this is ("" in main)
  int depth = 0;
};

struct Ctx {
  ir::Graph& g;
  std::string base_dir;
  ImportOptions opts;
  std::map<std::pair<std::string, std::string>, const onnx::FunctionProto*> local_functions;
  std::set<std::string> reserved;     // every name in the model: generated names avoid them
  std::set<std::string> node_names;   // names given to ir nodes so far
  std::set<std::string> dropped;      // training-only outputs removed by canonicalization
  std::unordered_map<const ir::Value*, int> elem_types;  // ONNX elem type where known
  std::map<std::string, int> declared_types;             // value_info / graph outputs (hints)
  int node_index = 0;  // index in the model of the main-graph node being emitted

  explicit Ctx(ir::Graph& graph) : g(graph) {}

  std::string fresh_value_name(const std::string& base);
  std::string fresh_node_name(const std::string& base);

  // Looks `local` up in `s`; throws kBadInput naming `node` when unknown.
  ir::Value* lookup(Scope& s, const std::string& local, const std::string& node);
  // The graph name `local` gets when defined in `s`.
  std::string final_name(Scope& s, const std::string& local);
  // Defines `local` in `s` (a constant when `t` is given).
  ir::Value* define(Scope& s, const std::string& local, const ir::Tensor* t = nullptr);

  // Helpers for canonicalization: constants and extra nodes.
  ir::Value* constant(const std::string& base, ir::Tensor t);
  ir::Value* int64_const(const std::string& base, const std::vector<int64_t>& v, bool scalar = false);
  ir::Value* temp(const std::string& base);  // a fresh activation value
  ir::Node* add_node(const std::string& op, const std::string& base_name, std::vector<ir::Value*> ins,
                     std::vector<ir::Value*> outs, int opset, const std::string& path);

  int elem_type(const ir::Value* v) const;  // 0 = unknown
  void set_elem_type(const ir::Value* v, int t) { if (v && t) elem_types[v] = t; }
};

// Emits one ONNX node (attribute references already resolved) into ctx.g:
// Constant -> constant, known op -> canonical ir node, else function expansion,
// else kUnsupported. Defined in importer.cpp.
void emit_node(Ctx& c, Scope& s, const onnx::NodeProto& np);

// Attribute conversion (importer.cpp). Throws kUnsupported for subgraphs etc.
ir::Attribute convert_attribute(Ctx& c, const onnx::AttributeProto& a, const std::string& node);

// canonicalize.cpp: the op type a node of `op`/`opset` becomes in canonical form.
std::string canonical_op(const std::string& op, int opset);
// Rewrites `n` (already in the graph, op type already canonical) from its
// opset-`n.opset` form into the opset-18 form. Throws kUnsupported naming the
// node for forms kiln cannot express.
void canonicalize(Ctx& c, ir::Node& n, const std::string& original_op);

// functions.cpp: expands `np` inline if the model or ONNX defines a function
// for it; returns false when there is none (or none that applies).
bool expand_function(Ctx& c, Scope& s, const onnx::NodeProto& np, const std::string& node_name,
                     const std::string& domain, int opset);
// Does (domain, op) name a model-local function or an ONNX function body?
bool has_function(const Ctx& c, const std::string& domain, const std::string& op, int opset);

// import_nms.cpp: ONNX NonMaxSuppression, lowered onto the EfficientNMS
// kernels; finish_row_counts (after the graph outputs are set) checks that
// its data-dependent outputs are graph outputs and appends their row counts.
void emit_nonmax_suppression(Ctx& c, Scope& s, const onnx::NodeProto& np, const std::string& name,
                             const std::string& label);
void finish_row_counts(Ctx& c);

// import_nms.cpp: ONNX NonMaxSuppression, lowered onto the EfficientNMS
// kernels; finish_row_counts (after the graph outputs are set) checks that
// its data-dependent outputs are graph outputs and appends their row counts.
void emit_nonmax_suppression(Ctx& c, Scope& s, const onnx::NodeProto& np, const std::string& name,
                             const std::string& label);
void finish_row_counts(Ctx& c);

// elem_types.cpp: fills ctx.elem_types for the outputs of `n` when its
// input types are known (via libonnx's schema type constraints).
void propagate_elem_types(Ctx& c, const ir::Node& n);

}  // namespace kiln::onnx_import
