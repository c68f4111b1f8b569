// Plugin nodes in the IR: binding at import, shape inference, CPU kernel,
// and the plan reader's check. See bridge.h for the node layout.
#include "plugins/bridge.h"

#include <algorithm>
#include <cstdlib>
#include <new>

#include "backends/cpu/kernel.h"
#include "ir/op_registry.h"

namespace kiln::plugins {

namespace {

// Runs a call into plugin code. A plugin knows its fields, not its layer, so
// its errors get the layer prefixed; exceptions that are not kiln errors
// become kBadInput rather than escaping as something the CLI calls a kiln bug.
template <typename F> auto guarded(const ir::Node& n, const char* stage, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.find(n.label()) == std::string::npos) msg = n.label() + ": " + msg;
    throw Error(e.code(), msg);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kBadInput, n.label() + ": plugin " + n.op_type + " failed in " + stage + ": " + e.what());
  }
}

std::string node_version(const ir::Node& n) { return n.s(kVersionAttr, "1"); }
std::string node_namespace(const ir::Node& n) { return n.s(kNamespaceAttr, ""); }

std::unique_ptr<Plugin> instantiate(const ir::Node& n) {
  const std::string ver = node_version(n), ns = node_namespace(n);
  const PluginCreator* cr = PluginRegistry::global().find(n.op_type, ver, ns);
  if (!cr)
    throw_bad_input(n.label() + " needs plugin " + describe(n.op_type, ver, ns) +
                    ", which is not registered: load its library with --plugins");
  auto it = n.attrs.find(kDataAttr);
  if (it == n.attrs.end() || it->second.kind != ir::Attribute::Kind::kTensor ||
      it->second.t.dtype() != DataType::kUInt8)
    throw_bad_input(n.label() + ": plugin node without its serialized fields: rebuild the plan with `kiln build`");
  const ir::Tensor& t = it->second.t;
  std::vector<uint8_t> bytes(t.data<uint8_t>(), t.data<uint8_t>() + t.numel());
  std::unique_ptr<Plugin> p = guarded(n, "deserialize", [&] { return cr->deserialize(n.name, bytes); });
  if (!p) throw_bad_input(n.label() + ": the creator of plugin " + n.op_type + " returned no plugin");
  p->set_name(n.name);
  p->set_plugin_namespace(ns);
  return p;
}

std::vector<PluginTensorDesc> descs(const ir::Node& n, const std::vector<ir::Value*>& values, const char* what) {
  std::vector<PluginTensorDesc> out;
  for (size_t k = 0; k < values.size(); ++k) {
    const ir::Value* v = values[k];
    if (!v)
      throw_unsupported(n.label() + ": " + what + " " + std::to_string(k) +
                        " is omitted; a plugin takes no omitted inputs or outputs before the last one");
    out.push_back({v->dtype, v->dims, TensorFormat::kLinear});
  }
  return out;
}

void infer(ir::Node& n) {
  auto p = instantiate(n);
  for (size_t k = 0; k < n.inputs.size(); ++k)
    if (n.inputs[k]) ir::input_checked(n, k);
  const auto ins = descs(n, n.inputs, "input");
  const int nout = guarded(n, "num_outputs", [&] { return p->num_outputs(); });
  if (nout < 0 || size_t(nout) != n.outputs.size())
    throw_bad_input(n.label() + ": plugin " + n.op_type + " produces " + std::to_string(nout) + " outputs, the node has " +
                    std::to_string(n.outputs.size()));
  std::vector<DataType> in_types;
  std::vector<std::vector<int64_t>> in_dims;
  for (auto& d : ins) {
    in_types.push_back(d.dtype);
    in_dims.push_back(d.dims);
  }
  auto types = guarded(n, "output_dtypes", [&] { return p->output_dtypes(in_types); });
  auto dims = guarded(n, "output_shapes", [&] { return p->output_shapes(in_dims); });
  if (types.size() != size_t(nout) || dims.size() != size_t(nout))
    throw_bad_input(n.label() + ": plugin " + n.op_type + " gave " + std::to_string(types.size()) + " dtypes and " +
                    std::to_string(dims.size()) + " shapes for its " + std::to_string(nout) + " outputs");
  for (size_t k = 0; k < size_t(nout); ++k) ir::set_output(n, k, types[k], dims[k]);
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

class PluginKernel : public cpu::Kernel {
 public:
  PluginKernel(const ir::Node& n, std::unique_ptr<Plugin> p, std::vector<PluginTensorDesc> ins,
               std::vector<PluginTensorDesc> outs, size_t workspace, std::string tactic)
      : node_(n.label()), type_(n.op_type), plugin_(std::move(p)), ins_(std::move(ins)), outs_(std::move(outs)),
        workspace_(workspace), tactic_(std::move(tactic)) {}

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    std::vector<const void*> ip(in.size());
    for (size_t k = 0; k < in.size(); ++k) ip[k] = in[k] ? in[k]->raw() : nullptr;
    // An output nobody reads may come without a buffer; the plugin still writes it.
    std::vector<ir::Tensor> scratch;
    scratch.reserve(out.size());
    std::vector<void*> op(out.size());
    for (size_t k = 0; k < out.size(); ++k) {
      if (!out[k]) scratch.emplace_back(outs_[k].dtype, outs_[k].dims);
      op[k] = out[k] ? out[k]->raw() : scratch.back().raw();
    }
    std::unique_ptr<void, FreeDeleter> ws;
    if (workspace_) {
      ws.reset(std::aligned_alloc(64, (workspace_ + 63) / 64 * 64));
      if (!ws) throw_bad_input(node_ + ": out of memory allocating a " + std::to_string(workspace_) + "-byte workspace");
    }
    try {
      plugin_->execute(ins_, outs_, ip.data(), op.data(), ws.get());
    } catch (const Error& e) {
      std::string msg = e.what();
      throw Error(e.code(), msg.find(node_) == std::string::npos ? node_ + ": " + msg : msg);
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(ErrorCode::kBadInput, node_ + ": plugin " + type_ + " failed in execute: " + e.what());
    }
  }
  std::string tactic() const override { return tactic_; }

 private:
  std::string node_, type_;
  std::unique_ptr<Plugin> plugin_;
  std::vector<PluginTensorDesc> ins_, outs_;
  size_t workspace_;
  std::string tactic_;
};

std::unique_ptr<cpu::Kernel> make_kernel(const ir::Node& n) {
  auto p = instantiate(n);
  auto ins = descs(n, n.inputs, "input");
  auto outs = descs(n, n.outputs, "output");
  const int nin = int(ins.size());
  for (int pos = 0; pos < nin + int(outs.size()); ++pos) {
    const PluginTensorDesc& d = pos < nin ? ins[size_t(pos)] : outs[size_t(pos - nin)];
    if (!guarded(n, "supports_format", [&] { return p->supports_format(pos, nin, d.dtype, d.format); }))
      throw_unsupported(n.label() + ": plugin " + n.op_type + " does not support " +
                        (pos < nin ? "input " + std::to_string(pos) : "output " + std::to_string(pos - nin)) + " as " +
                        dtype_name(d.dtype) + " " + format_name(d.format));
  }
  const auto tactics = guarded(n, "tactics", [&] { return p->tactics(); });
  if (tactics.empty()) throw_bad_input(n.label() + ": plugin " + n.op_type + " lists no tactics");
  // A plan names its tactic; a fresh build takes the first (timing comes later).
  const bool known = std::find(tactics.begin(), tactics.end(), n.tactic) != tactics.end();
  const std::string tactic = known ? n.tactic : tactics.front();
  guarded(n, "set_tactic", [&] { p->set_tactic(tactic); });
  guarded(n, "configure", [&] { p->configure(ins, outs); });
  const size_t ws = guarded(n, "workspace_size", [&] { return p->workspace_size(ins, outs); });
  return std::make_unique<PluginKernel>(n, std::move(p), std::move(ins), std::move(outs), ws, tactic);
}

// ONNX attribute -> plugin field value; the field type follows the attribute.
Field to_field(const ir::Node& n, const std::string& key, const ir::Attribute& a) {
  using K = ir::Attribute::Kind;
  Field f;
  f.name = key;
  switch (a.kind) {
    case K::kInt: f.type = FieldType::kInt; f.i = a.i; break;
    case K::kFloat: f.type = FieldType::kFloat; f.f = a.f; break;
    case K::kString: f.type = FieldType::kString; f.s = a.s; break;
    case K::kInts: f.type = FieldType::kInts; f.ints = a.ints; break;
    case K::kFloats: f.type = FieldType::kFloats; f.floats = a.floats; break;
    case K::kTensor: {
      const DataType dt = a.t.dtype();
      if (dt == DataType::kUInt8 || dt == DataType::kInt8 || dt == DataType::kBool) {
        f.type = FieldType::kBytes;
        const auto* b = static_cast<const uint8_t*>(a.t.raw());
        f.bytes.assign(b, b + a.t.nbytes());
      } else if (dt == DataType::kFloat32) {
        f.type = FieldType::kFloats;
        for (double v : a.t.to_double()) f.floats.push_back(float(v));
      } else if (dt == DataType::kInt32 || dt == DataType::kInt64) {
        f.type = FieldType::kInts;
        f.ints = a.t.to_int64();
      } else {
        throw_bad_input(n.label() + ": attribute '" + key + "' is a " + dtype_name(dt) +
                        " tensor; plugin fields take uint8/int8 (bytes), fp32 (floats) or int32/int64 (ints) tensors");
      }
      break;
    }
    case K::kStrings:
      throw_bad_input(n.label() + ": attribute '" + key + "' is a list of strings, which no plugin field type holds");
  }
  return f;
}

std::string decls_text(const std::vector<FieldDecl>& decls) {
  std::string s;
  for (auto& d : decls) {
    s += (s.empty() ? "" : ", ") + d.name + " (" + field_type_name(d.type);
    if (d.length >= 0 && (d.type == FieldType::kInts || d.type == FieldType::kFloats || d.type == FieldType::kBytes))
      s += "[" + std::to_string(d.length) + "]";
    s += d.required ? ", required)" : ")";
  }
  return s.empty() ? "(none)" : s;
}

FieldCollection checked_fields(const ir::Node& n, const PluginCreator& cr) {
  const auto decls = guarded(n, "field_decls", [&] { return cr.field_decls(); });
  const std::string who = "plugin " + describe(cr.type(), cr.version(), cr.plugin_namespace());
  FieldCollection fields;
  for (auto& [key, a] : n.attrs) {
    auto d = std::find_if(decls.begin(), decls.end(), [&k = key](const FieldDecl& x) { return x.name == k; });
    if (d == decls.end())
      throw_bad_input(n.label() + ": attribute '" + key + "' is not a field of " + who + "; its fields are " +
                      decls_text(decls));
    Field f = to_field(n, key, a);
    if (f.type != d->type)
      throw_bad_input(n.label() + ": attribute '" + key + "' is " + field_type_name(f.type) + ", " + who +
                      " declares field '" + key + "' as " + field_type_name(d->type));
    const bool list = d->type == FieldType::kInts || d->type == FieldType::kFloats || d->type == FieldType::kBytes;
    if (list && d->length >= 0 && f.length() != d->length)
      throw_bad_input(n.label() + ": attribute '" + key + "' has " + std::to_string(f.length()) + " elements, " + who +
                      " declares field '" + key + "' with " + std::to_string(d->length));
    fields.set(std::move(f));
  }
  for (auto& d : decls)
    if (d.required && !fields.has(d.name))
      throw_bad_input(n.label() + ": " + who + " needs field '" + d.name + "' (" + field_type_name(d.type) +
                      "), the node has no attribute '" + d.name + "'");
  return fields;
}

}  // namespace

std::string describe(const std::string& type, const std::string& version, const std::string& ns) {
  return type + " (version " + version + ", namespace '" + ns + "')";
}

std::string registered_list() {
  std::string s;
  for (const PluginCreator* c : PluginRegistry::global().list())
    s += (s.empty() ? "" : ", ") + describe(c->type(), c->version(), c->plugin_namespace());
  return s.empty() ? "(none)" : s;
}

bool has_type(const std::string& op_type) {
  for (const PluginCreator* c : PluginRegistry::global().list())
    if (c->type() == op_type) return true;
  return false;
}

void register_type(const std::string& type) {
  if (ir::OpRegistry::global().find(kDomain, type)) return;
  ir::OpDef def;
  def.domain = kDomain;
  def.op_type = type;
  def.infer = infer;
  def.foldable = false;  // plugins run in the engine, never at build time
  ir::OpRegistry::global().add(std::move(def));
  cpu::KernelRegistry::global().add(type, make_kernel, kDomain);
}

void bind_node(ir::Node& n, const std::function<ir::Value*(size_t k)>& make_output) {
  std::string ver = "1", ns;
  if (auto it = n.attrs.find(kVersionAttr); it != n.attrs.end()) {
    if (it->second.kind == ir::Attribute::Kind::kString) ver = it->second.s;
    else if (it->second.kind == ir::Attribute::Kind::kInt) ver = std::to_string(it->second.i);
    else throw_bad_input(n.label() + ": attribute 'plugin_version' must be a string such as \"1\"");
    n.attrs.erase(it);
  }
  if (auto it = n.attrs.find(kNamespaceAttr); it != n.attrs.end()) {
    if (it->second.kind != ir::Attribute::Kind::kString)
      throw_bad_input(n.label() + ": attribute 'plugin_namespace' must be a string");
    ns = it->second.s;
    n.attrs.erase(it);
  }
  PluginRegistry& reg = PluginRegistry::global();
  std::string matched = ns;
  const PluginCreator* cr = reg.find(n.op_type, ver, ns);
  if (!cr && !ns.empty()) {  // TensorRT's fallback: the empty namespace
    matched.clear();
    cr = reg.find(n.op_type, ver, matched);
  }
  if (!cr)
    throw_unsupported(n.label() + ": no registered plugin matches op type '" + n.op_type + "', version '" + ver +
                      "', namespace '" + ns + "'" + (ns.empty() ? "" : " (nor the empty namespace)") +
                      "; registered plugins: " + registered_list() +
                      ". Set the node's plugin_version / plugin_namespace attributes to one of these, or load the "
                      "library that provides this version with --plugins");
  FieldCollection fields = checked_fields(n, *cr);
  std::unique_ptr<Plugin> p = guarded(n, "create", [&] { return cr->create(n.name, fields); });
  if (!p) throw_bad_input(n.label() + ": the creator of plugin " + n.op_type + " returned no plugin");
  p->set_name(n.name);
  p->set_plugin_namespace(matched);
  const std::vector<uint8_t> bytes = guarded(n, "serialize", [&] { return p->serialize(); });
  const int nout = guarded(n, "num_outputs", [&] { return p->num_outputs(); });
  if (nout < 1 || n.outputs.size() > size_t(nout))
    throw_bad_input(n.label() + ": the node has " + std::to_string(n.outputs.size()) + " outputs, plugin " +
                    describe(n.op_type, ver, matched) + " produces " + std::to_string(nout));

  ir::Tensor data(DataType::kUInt8, {int64_t(bytes.size())});
  if (!bytes.empty()) std::copy(bytes.begin(), bytes.end(), data.data<uint8_t>());
  n.attrs.clear();
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::kString;
  a.s = ver;
  n.attrs[kVersionAttr] = a;
  a.s = matched;
  n.attrs[kNamespaceAttr] = a;
  ir::Attribute d;
  d.kind = ir::Attribute::Kind::kTensor;
  d.t = std::move(data);
  n.attrs[kDataAttr] = std::move(d);
  n.domain = kDomain;
  n.path = "plugin";
  // Outputs the model leaves out still get a value: the plugin writes them all.
  for (size_t k = n.outputs.size(); k < size_t(nout); ++k) {
    ir::Value* v = make_output(k);
    v->producer = &n;
    n.outputs.push_back(v);
  }
}

void require_registered(const ir::Node& n, const std::string& origin) {
  const std::string ver = node_version(n), ns = node_namespace(n);
  if (!PluginRegistry::global().find(n.op_type, ver, ns))
    throw_bad_input("plan " + origin + " needs plugin " + describe(n.op_type, ver, ns) + " for layer '" + n.name +
                    "'; load it with --plugins");
}

}  // namespace kiln::plugins
