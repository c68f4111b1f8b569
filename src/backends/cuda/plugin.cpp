// CUDA kernel for plugin nodes (domain kiln.plugin, see plugins/bridge.h).
// The plugin stored in the node runs through Plugin::enqueue on the layer's
// stream. Every name in Plugin::tactics() becomes a tactic "plugin:<name>",
// so the builder times a plugin's implementations like any layer's and the
// plan records the winner. Plugins get FP32, row-major tensors (the registry
// entry lists no FP16 inputs and no layout freedom).
#include <algorithm>
#include <new>

#include "backends/cuda/common.h"
#include "backends/cuda/kernel.h"
#include "kiln/plugin.h"
#include "plugins/bridge.h"

namespace kiln::cuda {

namespace {

constexpr const char* kTacticPrefix = "plugin:";

// Calls into plugin code: a plugin knows its fields, not its layer, so its
// errors get the layer prefixed; foreign exceptions become kBadInput.
template <typename F> auto guarded(const std::string& label, const std::string& type, const char* stage, F f)
    -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.find(label) == std::string::npos) msg = label + ": " + msg;
    throw Error(e.code(), msg);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kBadInput, label + ": plugin " + type + " failed in " + stage + ": " + e.what());
  }
}

// The node's plugin, rebuilt from its stored fields.
std::unique_ptr<Plugin> instantiate(const ir::Node& n) {
  const std::string ver = n.s(plugins::kVersionAttr, "1"), ns = n.s(plugins::kNamespaceAttr, "");
  const PluginCreator* cr = PluginRegistry::global().find(n.op_type, ver, ns);
  if (!cr)
    throw_bad_input(n.label() + " needs plugin " + plugins::describe(n.op_type, ver, ns) +
                    ", which is not registered: load its library with --plugins");
  auto it = n.attrs.find(plugins::kDataAttr);
  if (it == n.attrs.end() || it->second.kind != ir::Attribute::Kind::kTensor ||
      it->second.t.dtype() != DataType::kUInt8)
    throw_bad_input(n.label() + ": plugin node without its serialized fields: rebuild the plan with `kiln build`");
  const ir::Tensor& t = it->second.t;
  std::vector<uint8_t> bytes(t.data<uint8_t>(), t.data<uint8_t>() + t.numel());
  std::unique_ptr<Plugin> p =
      guarded(n.label(), n.op_type, "deserialize", [&] { return cr->deserialize(n.name, bytes); });
  if (!p) throw_bad_input(n.label() + ": the creator of plugin " + n.op_type + " returned no plugin");
  p->set_name(n.name);
  p->set_plugin_namespace(ns);
  return p;
}

struct Io {
  std::vector<PluginTensorDesc> ins, outs;
};

// The plugin's view of n's tensors; false with `why` when they cannot be given to it.
bool describe_io(const ir::Node& n, Io* io, std::string* why) {
  for (int side = 0; side < 2; ++side) {
    const std::vector<ir::Value*>& values = side == 0 ? n.inputs : n.outputs;
    const char* what = side == 0 ? "input " : "output ";
    for (size_t k = 0; k < values.size(); ++k) {
      const ir::Value* v = values[k];
      if (!v) {
        *why = what + std::to_string(k) + " is omitted; a plugin takes no omitted inputs or outputs";
        return false;
      }
      if (v->layout != ir::Layout::kLinear) {
        *why = what + std::to_string(k) + " is channels-last; plugins read row-major tensors";
        return false;
      }
      (side == 0 ? io->ins : io->outs).push_back({v->dtype, v->dims, TensorFormat::kLinear});
    }
  }
  return true;
}

class PluginCudaKernel : public Kernel {
 public:
  PluginCudaKernel(std::string label, std::string type, std::unique_ptr<Plugin> p, Io io, size_t workspace)
      : label_(std::move(label)), type_(std::move(type)), plugin_(std::move(p)), io_(std::move(io)),
        workspace_(workspace) {}

  size_t workspace_bytes() const override { return workspace_; }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (in.size() != io_.ins.size() || out.size() != io_.outs.size())
      throw_internal(label_ + ": plugin kernel got " + std::to_string(in.size()) + " inputs and " +
                     std::to_string(out.size()) + " outputs, expected " + std::to_string(io_.ins.size()) + " and " +
                     std::to_string(io_.outs.size()));
    // The plugin writes every output, so each needs a buffer (the engine gives one to every value).
    for (size_t k = 0; k < out.size(); ++k)
      if (!out[k]) throw_internal(label_ + ": no device buffer for plugin output " + std::to_string(k));
    guarded(label_, type_, "enqueue", [&] {
      plugin_->enqueue(io_.ins, io_.outs, in.data(), out.data(), workspace_ ? l.workspace : nullptr,
                       static_cast<void*>(l.stream));
    });
  }

 private:
  std::string label_, type_;
  std::unique_ptr<Plugin> plugin_;
  Io io_;
  size_t workspace_;
};

std::vector<Tactic> plugin_tactics(const ir::Node& n, std::string* why) {
  std::string reason;
  Io io;
  if (!describe_io(n, &io, &reason)) {
    if (why) *why = reason;
    return {};
  }
  std::shared_ptr<const Plugin> proto = instantiate(n);
  const int nin = int(io.ins.size());
  for (int pos = 0; pos < nin + int(io.outs.size()); ++pos) {
    const PluginTensorDesc& d = pos < nin ? io.ins[size_t(pos)] : io.outs[size_t(pos - nin)];
    if (!guarded(n.label(), n.op_type, "supports_format",
                 [&] { return proto->supports_format(pos, nin, d.dtype, d.format); })) {
      if (why)
        *why = "plugin " + n.op_type + " does not support " +
               (pos < nin ? "input " + std::to_string(pos) : "output " + std::to_string(pos - nin)) + " as " +
               dtype_name(d.dtype) + " " + format_name(d.format);
      return {};
    }
  }
  const std::vector<std::string> names = guarded(n.label(), n.op_type, "tactics", [&] { return proto->tactics(); });
  if (names.empty()) throw_bad_input(n.label() + ": plugin " + n.op_type + " lists no tactics");
  std::vector<Tactic> out;
  for (const std::string& name : names) {
    const std::string label = n.label(), type = n.op_type;
    out.push_back({kTacticPrefix + name, [proto, io, label, type, name]() -> std::unique_ptr<Kernel> {
                     // A fresh plugin per kernel: configure may keep state in it.
                     std::unique_ptr<Plugin> p = guarded(label, type, "clone", [&] { return proto->clone(); });
                     if (!p) throw_bad_input(label + ": plugin " + type + " returned no clone");
                     p->set_name(proto->name());
                     p->set_plugin_namespace(proto->plugin_namespace());
                     guarded(label, type, "set_tactic", [&] { p->set_tactic(name); });
                     guarded(label, type, "configure", [&] { p->configure(io.ins, io.outs); });
                     const size_t ws =
                         guarded(label, type, "workspace_size", [&] { return p->workspace_size(io.ins, io.outs); });
                     return std::make_unique<PluginCudaKernel>(label, type, std::move(p), io, ws);
                   }});
  }
  return out;
}

}  // namespace

void register_plugin_kernels(Registry& r) {
  OpTraits traits;  // FP32 only, row-major only
  r.add("*", plugin_tactics, traits, plugins::kDomain);
}

}  // namespace kiln::cuda
