// Function expansion: a node kiln has no kernel for is replaced inline by its
// function body, taken from the model (ModelProto.functions) or from the ONNX
// schema (static or context-dependent body). Body nodes go through emit_node
// again, so they are canonicalized and expanded recursively.
#include <onnx/defs/schema.h>

#include "kiln/error.h"
#include "onnx/import_context.h"

namespace kiln::onnx_import {

namespace {

constexpr int kMaxDepth = 16;
constexpr int kNewestSchemaOpset = 17;  // libonnx 1.12 knows ai.onnx up to opset 17
constexpr int kFunctionAttributeProtoField = 11;

std::string norm_domain(const std::string& d) { return d == "ai.onnx" ? "" : d; }

using AttrMap = std::map<std::string, onnx::AttributeProto>;

// Attribute defaults of a model-local function live in FunctionProto field 11
// (attribute_proto), newer than libonnx 1.12's proto: read them from the
// unknown fields protobuf kept.
AttrMap local_defaults(const onnx::FunctionProto& f) {
  AttrMap out;
  const auto& uf = f.unknown_fields();
  for (int i = 0; i < uf.field_count(); ++i) {
    const auto& fld = uf.field(i);
    if (fld.number() != kFunctionAttributeProtoField ||
        fld.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED)
      continue;
    onnx::AttributeProto a;
    if (a.ParseFromString(fld.length_delimited()) && !a.name().empty()) out[a.name()] = a;
  }
  return out;
}

const onnx::OpSchema* schema_for(const std::string& domain, const std::string& op, int opset) {
  return onnx::OpSchemaRegistry::Schema(op, domain.empty() ? std::min(opset, kNewestSchemaOpset) : opset, domain);
}

// A node newer than libonnx's newest schema may only use that schema's body
// if the schema still describes the node (same inputs, outputs, attributes).
bool schema_fits(const onnx::OpSchema& s, const onnx::NodeProto& np) {
  if (np.input_size() > s.max_input() || np.output_size() > s.max_output()) return false;
  for (const auto& a : np.attribute())
    if (!s.attributes().count(a.name())) return false;
  return true;
}

bool schema_has_body(const onnx::OpSchema* s) {
  return s && (s->HasFunction() || s->HasContextDependentFunction());
}

// Replaces attribute references (ref_attr_name) with the caller's values;
// a reference to an attribute the caller did not give (and that has no
// default) is dropped, as ONNX specifies.
onnx::NodeProto resolve_refs(const onnx::NodeProto& body_node, const AttrMap& caller) {
  onnx::NodeProto r = body_node;
  r.clear_attribute();
  for (const auto& a : body_node.attribute()) {
    if (a.ref_attr_name().empty()) {
      *r.add_attribute() = a;
      continue;
    }
    auto it = caller.find(a.ref_attr_name());
    if (it == caller.end()) continue;
    onnx::AttributeProto* x = r.add_attribute();
    *x = it->second;
    x->set_name(a.name());
    x->clear_ref_attr_name();
  }
  return r;
}

onnx::TypeProto type_of(const Ctx& c, const ir::Value* v) {
  onnx::TypeProto tp;
  int et = c.elem_type(v);
  if (!v || !et) return tp;
  auto* tt = tp.mutable_tensor_type();
  tt->set_elem_type(et);
  if (v->has_shape) {
    auto* sh = tt->mutable_shape();
    for (int64_t d : v->dims) sh->add_dim()->set_dim_value(d);
  }
  return tp;
}

}  // namespace

bool has_function(const Ctx& c, const std::string& domain, const std::string& op, int opset) {
  return c.local_functions.count({domain, op}) || schema_has_body(schema_for(domain, op, opset));
}

bool expand_function(Ctx& c, Scope& s, const onnx::NodeProto& np, const std::string& node_name,
                     const std::string& domain, int opset) {
  const std::string& op = np.op_type();
  const std::string label = op + " '" + node_name + "'";
  AttrMap attrs;
  for (const auto& a : np.attribute()) {
    if (!a.ref_attr_name().empty() && s.main)
      throw_bad_input(label + ": attribute '" + a.name() + "' refers to '" + a.ref_attr_name() +
                      "' outside a function body");
    attrs[a.name()] = a;
  }
  std::vector<ir::Value*> ins;
  for (const auto& in : np.input()) ins.push_back(in.empty() ? nullptr : c.lookup(s, in, label));

  const onnx::FunctionProto* body = nullptr;
  onnx::FunctionProto built;
  int body_default_opset = 0;
  auto lf = c.local_functions.find({domain, op});
  if (lf != c.local_functions.end()) {
    body = lf->second;
    for (auto& [k, a] : local_defaults(*body)) attrs.emplace(k, a);
    auto d = s.opsets.find("");
    body_default_opset = d != s.opsets.end() ? d->second : 0;
  } else {
    const onnx::OpSchema* schema = schema_for(domain, op, opset);
    if (!schema_has_body(schema)) return false;
    if (domain.empty() && opset > kNewestSchemaOpset && !schema_fits(*schema, np)) return false;
    for (const auto& [name, attr] : schema->attributes())
      if (attr.default_value.type() != onnx::AttributeProto::UNDEFINED) {
        onnx::AttributeProto a = attr.default_value;
        a.set_name(name);
        attrs.emplace(name, a);
      }
    body_default_opset = schema->since_version();
    if (schema->HasFunction()) {
      body = schema->GetFunction();
    } else {
      std::vector<onnx::TypeProto> types;
      for (ir::Value* v : ins) types.push_back(type_of(c, v));
      onnx::FunctionBodyBuildContextImpl fctx(np, types);
      bool ok = false;
      try {
        ok = schema->BuildContextDependentFunction(fctx, built);
      } catch (const std::exception&) {
        ok = false;
      }
      if (!ok)
        throw_unsupported(label + " (opset " + std::to_string(opset) + "): kiln has no kernel for it and ONNX's "
                          "function body for it could not be built for these input types");
      body = &built;
    }
  }
  if (!body) return false;
  if (s.depth + 1 > kMaxDepth)
    throw_unsupported(label + ": function expansion is nested deeper than " + std::to_string(kMaxDepth) + " levels");
  if (np.input_size() > body->input_size() || np.output_size() > body->output_size())
    throw_bad_input(label + ": has more inputs or outputs than the function '" + op + "' declares");

  Scope inner;
  inner.main = false;
  inner.depth = s.depth + 1;
  inner.prefix = node_name;
  inner.expanded_from = s.expanded_from.empty() ? op : s.expanded_from;
  for (const auto& o : body->opset_import()) inner.opsets[norm_domain(o.domain())] = int(o.version());
  if (body_default_opset) inner.opsets.emplace("", body_default_opset);
  for (const auto& [d, v] : s.opsets) inner.opsets.emplace(d, v);
  for (int k = 0; k < body->input_size(); ++k) inner.bound[body->input(k)] = size_t(k) < ins.size() ? ins[size_t(k)] : nullptr;
  for (int k = 0; k < np.output_size(); ++k)
    if (!np.output(k).empty()) inner.out_names[body->output(k)] = c.final_name(s, np.output(k));

  try {
    for (const auto& bn : body->node()) emit_node(c, inner, resolve_refs(bn, attrs));
  } catch (const Error& e) {
    throw Error(e.code(), std::string(e.what()) + " (in the expansion of " + label + ")");
  }

  for (int k = 0; k < np.output_size(); ++k) {
    if (np.output(k).empty()) continue;
    const std::string& formal = body->output(k);
    auto it = inner.bound.find(formal);
    if (it == inner.bound.end() || !it->second)
      throw_bad_input(label + ": the function body of '" + op + "' does not compute its output '" + formal + "'");
    ir::Value* v = it->second;
    const std::string& want = inner.out_names[formal];
    if (v->name != want) {  // the body passes an input (or an earlier value) straight through
      if (c.g.value(want)) throw_bad_input("tensor '" + want + "' is defined more than once in the model");
      ir::Value* out = c.g.add_value(want);
      c.add_node("Identity", node_name + "/passthrough", {v}, {out}, inner.opsets[""],
                 "expanded:" + inner.expanded_from);
      c.set_elem_type(out, c.elem_type(v));
      v = out;
    }
    if (!s.main) s.bound[np.output(k)] = v;
  }
  return true;
}

}  // namespace kiln::onnx_import
