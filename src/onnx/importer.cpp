// ONNX ModelProto -> ir::Graph: reading and validating the model, opsets,
// initializers, graph inputs/outputs and the node loop. Old-opset rewrites
// live in canonicalize.cpp, function expansion in functions.cpp.
#include "onnx/importer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <queue>
#include <sys/stat.h>
#include <unordered_map>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <onnx/defs/schema.h>

#include "ir/op_registry.h"
#include "kiln/error.h"
#include "onnx/import_context.h"
#include "onnx/input_shapes.h"
#include "onnx/tensor_proto.h"
#include "plugins/bridge.h"

namespace kiln::onnx_import {

namespace {

constexpr int kMinOpset = 7;
constexpr int kMaxOpset = 24;

std::string norm_domain(const std::string& d) { return d == "ai.onnx" ? "" : d; }
std::string domain_display(const std::string& d) { return d.empty() ? "ai.onnx" : d; }

// Graphs nest through subgraph attributes only; 100 (protobuf's default) is
// too tight for some exporters, so allow more while still bounding the stack.
constexpr int kRecursionLimit = 1024;

void parse_model(google::protobuf::io::ZeroCopyInputStream* in, onnx::ModelProto& m, const std::string& origin) {
  google::protobuf::io::CodedInputStream cis(in);
  cis.SetTotalBytesLimit(INT_MAX);
  cis.SetRecursionLimit(kRecursionLimit);
  if (!m.ParseFromCodedStream(&cis) || !cis.ConsumedEntireMessage())
    throw_bad_input(origin + " is not a valid ONNX model (protobuf parsing failed)");
  if (!m.has_graph()) throw_bad_input(origin + " is not a valid ONNX model (it has no graph)");
}

// Kahn's algorithm over producer/consumer names; keeps file order where it
// is already topological (ONNX requires it, some exporters do not comply).
std::vector<int> topo_order(const onnx::GraphProto& gp) {
  const int n = gp.node_size();
  std::unordered_map<std::string, int> producer;
  for (int i = 0; i < n; ++i)
    for (const auto& o : gp.node(i).output())
      if (!o.empty()) producer.emplace(o, i);
  std::vector<std::vector<int>> dependents(static_cast<size_t>(n));
  std::vector<int> pending(static_cast<size_t>(n), 0);
  for (int i = 0; i < n; ++i) {
    std::vector<int> deps;
    for (const auto& in : gp.node(i).input()) {
      auto it = producer.find(in);
      if (it != producer.end() && it->second != i) deps.push_back(it->second);
    }
    std::sort(deps.begin(), deps.end());
    deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
    pending[size_t(i)] = int(deps.size());
    for (int d : deps) dependents[size_t(d)].push_back(i);
  }
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
  for (int i = 0; i < n; ++i)
    if (!pending[size_t(i)]) ready.push(i);
  std::vector<int> order;
  while (!ready.empty()) {
    int i = ready.top();
    ready.pop();
    order.push_back(i);
    for (int d : dependents[size_t(i)])
      if (--pending[size_t(d)] == 0) ready.push(d);
  }
  if (int(order.size()) != n) throw_bad_input("graph '" + gp.name() + "' has a cycle among its nodes");
  return order;
}

void add_graph_input(Ctx& c, const onnx::ValueInfoProto& vi) {
  const std::string& name = vi.name();
  if (name.empty()) throw_bad_input("a graph input has an empty name");
  const auto& type = vi.type();
  if (type.value_case() != onnx::TypeProto::kTensorType)
    throw_unsupported("graph input '" + name + "' is not a tensor (sequence, map, optional or sparse); kiln "
                      "supports tensor inputs only");
  const auto& tt = type.tensor_type();
  DataType dt;
  if (!dtype_from_onnx(tt.elem_type(), &dt))
    throw_unsupported("graph input '" + name + "' has element type " + onnx_type_name(tt.elem_type()) +
                      ", which kiln does not support (supported: float32, float16, int8, uint8, int32, int64, bool)");
  int batch_axis = -1;
  ir::Dims dims = resolve_input_dims(name, tt, c.opts, &batch_axis);
  if (c.g.value(name)) throw_bad_input("graph input '" + name + "' is declared twice");
  try {
    ir::numel_of(dims);  // overflow is refused here, naming the input, before anything is sized by it
  } catch (const Error& e) {
    throw_bad_input("graph input '" + name + "': " + e.what());
  }
  ir::Value* v = c.g.add_value(name);
  v->dtype = dt;
  v->dims = std::move(dims);
  v->has_shape = true;
  v->batch_axis = batch_axis;
  c.g.inputs.push_back(v);
  c.set_elem_type(v, tt.elem_type());
}

void emit_constant(Ctx& c, Scope& s, const onnx::NodeProto& np, const std::string& label) {
  if (np.output_size() < 1 || np.output(0).empty()) return;
  if (np.attribute_size() != 1)
    throw_bad_input(label + ": a Constant node needs exactly one value attribute, it has " +
                    std::to_string(np.attribute_size()));
  const auto& a = np.attribute(0);
  ir::Tensor t;
  if (a.name() == "value") {
    t = tensor_from_proto(a.t(), c.base_dir, label + " value");
  } else if (a.name() == "value_float") {
    t = ir::Tensor::from_float({a.f()}, {});
  } else if (a.name() == "value_floats") {
    t = ir::Tensor::from_float(std::vector<float>(a.floats().begin(), a.floats().end()), {int64_t(a.floats_size())});
  } else if (a.name() == "value_int") {
    t = ir::Tensor::from_int64({a.i()}, {});
  } else if (a.name() == "value_ints") {
    t = ir::Tensor::from_int64(std::vector<int64_t>(a.ints().begin(), a.ints().end()), {int64_t(a.ints_size())});
  } else if (a.name() == "value_string" || a.name() == "value_strings") {
    throw_unsupported(label + ": string constants are not supported by kiln");
  } else if (a.name() == "sparse_value") {
    throw_unsupported(label + ": sparse constants are not supported by kiln");
  } else {
    throw_bad_input(label + ": unknown Constant attribute '" + a.name() + "'");
  }
  ir::Value* v = c.define(s, np.output(0), &t);
  c.set_elem_type(v, onnx_from_dtype(t.dtype()));
}

std::string unsupported_message(const std::string& name, const std::string& op, const std::string& domain, int opset) {
  std::string d = domain_display(domain);
  // Ops newer than libonnx 1.12 may have a body in newer ONNX that kiln cannot see.
  const bool newer = domain.empty() && !onnx::OpSchemaRegistry::Schema(op, "");
  return "node '" + name + "' (op '" + op + "', domain '" + d + "', opset " + std::to_string(opset) +
         ") is not supported: kiln has no kernel for it, " +
         (newer ? "kiln's ONNX schemas (opset 17 and older) define no function body for it"
                : "ONNX defines no function body") +
         ", and no plugin is registered for (" + d + ", " + op + "). Register a plugin for this op type (see "
         "docs/plugins.md) or replace the op.";
}

// Opsets below 7 are accepted for ops whose definition did not change since.
void check_old_opset(const std::string& label, const std::string& op, int opset) {
  if (opset >= kMinOpset) return;
  const auto* old_schema = onnx::OpSchemaRegistry::Schema(op, opset, "");
  const auto* s7 = onnx::OpSchemaRegistry::Schema(op, kMinOpset, "");
  if (old_schema && s7 && old_schema->SinceVersion() == s7->SinceVersion()) return;
  throw_unsupported(label + ": ai.onnx opset " + std::to_string(opset) + " form of '" + op +
                    "' is not supported; kiln supports opset " + std::to_string(kMinOpset) +
                    " and later. Convert the model to a newer opset (onnx.version_converter)");
}

}  // namespace

// ---- Ctx helpers -------------------------------------------------------------

std::string Ctx::fresh_value_name(const std::string& base) {
  std::string cand = base;
  for (int k = 1; reserved.count(cand) || g.value(cand); ++k) cand = base + "_" + std::to_string(k);
  reserved.insert(cand);
  return cand;
}

std::string Ctx::fresh_node_name(const std::string& base) {
  std::string cand = base;
  for (int k = 1; node_names.count(cand); ++k) cand = base + "_" + std::to_string(k);
  node_names.insert(cand);
  return cand;
}

ir::Value* Ctx::lookup(Scope& s, const std::string& local, const std::string& node) {
  if (s.main) {
    if (dropped.count(local))
      throw_unsupported(node + ": input '" + local + "' is a training-only output that kiln does not compute");
    ir::Value* v = g.value(local);
    if (!v) throw_bad_input(node + ": input '" + local + "' is not produced by any node, graph input or initializer");
    return v;
  }
  auto it = s.bound.find(local);
  if (it == s.bound.end())
    throw_bad_input(node + ": the function body refers to '" + local + "', which it does not define");
  return it->second;
}

std::string Ctx::final_name(Scope& s, const std::string& local) {
  if (s.main) return local;
  auto it = s.out_names.find(local);
  return it != s.out_names.end() ? it->second : fresh_value_name(s.prefix + "/" + local);
}

ir::Value* Ctx::define(Scope& s, const std::string& local, const ir::Tensor* t) {
  if (!s.main && s.bound.count(local))
    throw_bad_input("function body of '" + s.prefix + "' defines '" + local + "' twice");
  std::string name = final_name(s, local);
  if (g.value(name)) throw_bad_input("tensor '" + name + "' is defined more than once in the model");
  ir::Value* v = t ? g.add_constant(name, *t) : g.add_value(name);
  if (!s.main) s.bound[local] = v;
  return v;
}

ir::Value* Ctx::constant(const std::string& base, ir::Tensor t) {
  int et = onnx_from_dtype(t.dtype());
  ir::Value* v = g.add_constant(fresh_value_name(base), std::move(t));
  set_elem_type(v, et);
  return v;
}

ir::Value* Ctx::int64_const(const std::string& base, const std::vector<int64_t>& v, bool scalar) {
  return constant(base, ir::Tensor::from_int64(v, scalar ? ir::Dims{} : ir::Dims{int64_t(v.size())}));
}

ir::Value* Ctx::temp(const std::string& base) { return g.add_value(fresh_value_name(base)); }

ir::Node* Ctx::add_node(const std::string& op, const std::string& base_name, std::vector<ir::Value*> ins,
                        std::vector<ir::Value*> outs, int opset, const std::string& path) {
  ir::Node* n = g.add_node(op, fresh_node_name(base_name), std::move(ins), std::move(outs));
  n->opset = opset;
  n->path = path;
  return n;
}

int Ctx::elem_type(const ir::Value* v) const {
  if (!v) return 0;
  auto it = elem_types.find(v);
  if (it != elem_types.end()) return it->second;
  if (v->is_constant()) return onnx_from_dtype(v->constant->dtype());
  auto d = declared_types.find(v->name);
  return d != declared_types.end() ? d->second : 0;
}

// ---- attributes --------------------------------------------------------------

ir::Attribute convert_attribute(Ctx& c, const onnx::AttributeProto& a, const std::string& node) {
  using AP = onnx::AttributeProto;
  int type = a.type();
  if (type == AP::UNDEFINED) {  // very old writers left the type unset
    if (a.ints_size()) type = AP::INTS;
    else if (a.floats_size()) type = AP::FLOATS;
    else if (a.strings_size()) type = AP::STRINGS;
    else if (a.has_i()) type = AP::INT;
    else if (a.has_f()) type = AP::FLOAT;
    else if (a.has_s()) type = AP::STRING;
    else if (a.has_t()) type = AP::TENSOR;
    else if (a.has_g()) type = AP::GRAPH;
  }
  ir::Attribute r;
  using K = ir::Attribute::Kind;
  switch (type) {
    case AP::INT: r.kind = K::kInt; r.i = a.i(); break;
    case AP::FLOAT: r.kind = K::kFloat; r.f = a.f(); break;
    case AP::STRING: r.kind = K::kString; r.s = a.s(); break;
    case AP::INTS: r.kind = K::kInts; r.ints.assign(a.ints().begin(), a.ints().end()); break;
    case AP::FLOATS: r.kind = K::kFloats; r.floats.assign(a.floats().begin(), a.floats().end()); break;
    case AP::STRINGS: r.kind = K::kStrings; r.strings.assign(a.strings().begin(), a.strings().end()); break;
    case AP::TENSOR:
      r.kind = K::kTensor;
      r.t = tensor_from_proto(a.t(), c.base_dir, node + ": attribute '" + a.name() + "'");
      break;
    case AP::GRAPH:
    case AP::GRAPHS:
      throw_unsupported(node + ": attribute '" + a.name() +
                        "' is a subgraph; kiln does not support control-flow ops (If, Loop, Scan)");
    default:
      throw_unsupported(node + ": attribute '" + a.name() + "' has attribute type " + std::to_string(type) +
                        " (sparse tensor, tensor list or type), which kiln does not support");
  }
  return r;
}

// ---- node loop ---------------------------------------------------------------

void emit_node(Ctx& c, Scope& s, const onnx::NodeProto& np) {
  const std::string domain = norm_domain(np.domain());
  const std::string& op = np.op_type();
  if (op.empty()) throw_bad_input("a node has an empty op_type");
  std::string name;
  if (s.main)
    name = c.fresh_node_name(np.name().empty() ? op + "_" + std::to_string(c.node_index) : np.name());
  else
    name = c.fresh_node_name(s.prefix + "/" + (np.name().empty() ? op : np.name()));
  const std::string label = op + " '" + name + "'";

  auto ot = s.opsets.find(domain);
  if (ot == s.opsets.end() && domain.empty())
    throw_bad_input(label + ": the model imports no opset for the default ONNX domain");
  const int opset = ot != s.opsets.end() ? int(ot->second) : 1;
  if (domain.empty()) check_old_opset(label, op, opset);

  if (domain.empty() && op == "Constant") return emit_constant(c, s, np, label);
  // A plugin registered for NonMaxSuppression replaces kiln's own lowering.
  if (domain.empty() && op == "NonMaxSuppression" && !plugins::has_type(op))
    return emit_nonmax_suppression(c, s, np, name, label);

  const std::string target = domain.empty() ? canonical_op(op, opset) : op;
  const bool kernel = ir::OpRegistry::global().find(domain, target) != nullptr;
  // An op kiln has no kernel for goes to a plugin registered for its op type
  // (in any domain, as TensorRT matches plugins), before any function body.
  const bool plugin = !kernel && plugins::has_type(op);
  if (kernel || plugin) {
    std::map<std::string, ir::Attribute> attrs;
    for (const auto& a : np.attribute()) {
      if (!a.ref_attr_name().empty())
        throw_bad_input(label + ": attribute '" + a.name() + "' refers to '" + a.ref_attr_name() +
                        "' outside a function body");
      attrs[a.name()] = convert_attribute(c, a, label);
    }
    std::vector<ir::Value*> ins;
    for (const auto& in : np.input()) ins.push_back(in.empty() ? nullptr : c.lookup(s, in, label));
    while (!ins.empty() && !ins.back()) ins.pop_back();  // trailing "" = absent
    std::vector<ir::Value*> outs;
    for (const auto& o : np.output()) outs.push_back(o.empty() ? nullptr : c.define(s, o));
    // Trailing "" outputs are simply not requested. One in the middle still
    // occupies its position (ir graphs hold no null outputs): it gets a value
    // nobody reads. Split keeps all, its output count is its meaning.
    if (target != "Split")
      while (!outs.empty() && !outs.back()) outs.pop_back();
    // Every ONNX op yields at least one output; kernels rely on it.
    if (outs.empty()) throw_bad_input(label + ": the node names no outputs; give it at least one output name");
    for (size_t k = 0; k < outs.size(); ++k)
      if (!outs[k]) outs[k] = c.temp(name + "_unused" + std::to_string(k));
    const size_t first_new = c.g.nodes().size();
    ir::Node* n = c.g.add_node(plugin ? op : target, name, ins, outs);
    n->domain = domain;
    n->opset = opset;
    n->attrs = std::move(attrs);
    n->path = s.expanded_from.empty() ? "kernel" : "expanded:" + s.expanded_from;
    if (plugin)
      return plugins::bind_node(*n, [&](size_t k) { return c.temp(name + "_unused" + std::to_string(k)); });
    if (domain.empty()) canonicalize(c, *n, op);
    // Element types feed context-dependent function bodies further on; nodes
    // added by canonicalization may come after their consumers, so two passes.
    for (int pass = 0; pass < 2; ++pass)
      for (size_t k = first_new; k < c.g.nodes().size(); ++k) propagate_elem_types(c, *c.g.nodes()[k]);
    return;
  }
  if (expand_function(c, s, np, name, domain, opset)) return;
  throw_unsupported(unsupported_message(name, op, domain, opset));
}

// ---- model -------------------------------------------------------------------

namespace {

std::unique_ptr<ir::Graph> import_model(onnx::ModelProto& m, const std::string& base_dir, const ImportOptions& opts) {
  auto graph = std::make_unique<ir::Graph>();
  Ctx c(*graph);
  c.base_dir = base_dir;
  c.opts = opts;
  onnx::GraphProto& gp = *m.mutable_graph();
  graph->name = gp.name().empty() ? "main" : gp.name();

  Scope main;
  for (const auto& o : m.opset_import()) main.opsets[norm_domain(o.domain())] = int(o.version());
  auto def = main.opsets.find("");
  if (def != main.opsets.end() && def->second > kMaxOpset)
    throw_unsupported("the model uses ai.onnx opset " + std::to_string(def->second) + "; kiln supports opsets " +
                      std::to_string(kMinOpset) + " to " + std::to_string(kMaxOpset));
  for (const auto& f : m.functions()) c.local_functions[{norm_domain(f.domain()), f.name()}] = &f;

  // Generated names must not collide with any name the model uses anywhere.
  for (const auto& i : gp.input()) c.reserved.insert(i.name());
  for (const auto& i : gp.initializer()) c.reserved.insert(i.name());
  for (const auto& n : gp.node()) {
    c.reserved.insert(n.input().begin(), n.input().end());
    c.reserved.insert(n.output().begin(), n.output().end());
  }
  for (const auto* list : {&gp.value_info(), &gp.output()})
    for (const auto& vi : *list)
      if (vi.type().has_tensor_type() && vi.type().tensor_type().elem_type())
        c.declared_types[vi.name()] = vi.type().tensor_type().elem_type();

  if (gp.sparse_initializer_size())
    throw_unsupported("initializer '" + gp.sparse_initializer(0).values().name() +
                      "' is a sparse tensor; kiln does not support sparse initializers");
  for (int i = 0; i < gp.initializer_size(); ++i) {
    onnx::TensorProto* tp = gp.mutable_initializer(i);
    if (tp->name().empty()) throw_bad_input("an initializer has an empty name");
    if (graph->value(tp->name())) throw_bad_input("initializer '" + tp->name() + "' is declared twice");
    ir::Value* v = graph->add_constant(tp->name(), tensor_from_proto(*tp, base_dir, "initializer '" + tp->name() + "'"));
    c.set_elem_type(v, tp->data_type());
    tp->clear_raw_data();  // the ir tensor holds the bytes now; keep peak memory down
  }
  // An input that is also an initializer is a constant with a default value.
  for (const auto& vi : gp.input())
    if (!graph->value(vi.name())) add_graph_input(c, vi);
  check_input_shape_names(c.opts, graph->inputs);

  for (int idx : topo_order(gp)) {
    c.node_index = idx;
    emit_node(c, main, gp.node(idx));
  }

  if (gp.output_size() == 0) throw_bad_input("the model has no graph outputs");
  for (const auto& o : gp.output()) {
    auto vc = o.type().value_case();
    if (vc != onnx::TypeProto::kTensorType && vc != onnx::TypeProto::VALUE_NOT_SET)
      throw_unsupported("graph output '" + o.name() + "' is not a tensor (sequence, map, optional or sparse); "
                        "kiln supports tensor outputs only");
    if (c.dropped.count(o.name()))
      throw_unsupported("graph output '" + o.name() + "' is a training-only output that kiln does not compute");
    ir::Value* v = graph->value(o.name());
    if (!v) throw_bad_input("graph output '" + o.name() + "' is not produced by any node, input or initializer");
    graph->outputs.push_back(v);
  }
  finish_row_counts(c);
  graph->topo_sort();
  return graph;
}

}  // namespace

std::unique_ptr<ir::Graph> import_file(const std::string& path, const ImportOptions& opts) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw_bad_input("cannot open model file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw_bad_input("cannot read model file '" + path + "': not a regular file");
  }
  if (st.st_size >= INT_MAX) {
    ::close(fd);
    throw_bad_input("model file '" + path + "' is " + std::to_string(st.st_size) +
                    " bytes; protobuf models must be under 2 GB. Save the weights as ONNX external data");
  }
  onnx::ModelProto m;
  {
    google::protobuf::io::FileInputStream in(fd);
    in.SetCloseOnDelete(true);
    try {
      parse_model(&in, m, "'" + path + "'");
    } catch (...) {
      if (in.GetErrno()) throw_bad_input("cannot read model file '" + path + "': " + std::strerror(in.GetErrno()));
      throw;
    }
  }
  std::string dir = ".";
  size_t slash = path.find_last_of('/');
  if (slash != std::string::npos) dir = slash == 0 ? "/" : path.substr(0, slash);
  return import_model(m, dir, opts);
}

std::unique_ptr<ir::Graph> import_bytes(const std::string& bytes, const std::string& base_dir,
                                        const ImportOptions& opts) {
  if (bytes.size() >= size_t(INT_MAX))
    throw_bad_input("the model is " + std::to_string(bytes.size()) +
                    " bytes; protobuf models must be under 2 GB. Save the weights as ONNX external data");
  onnx::ModelProto m;
  google::protobuf::io::ArrayInputStream in(bytes.data(), int(bytes.size()));
  parse_model(&in, m, "'<memory>'");
  return import_model(m, base_dir, opts);
}

}  // namespace kiln::onnx_import
