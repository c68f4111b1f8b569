// CPU Engine and ExecutionContext.
//
// Sharing: the engine's kernels (and the weights they pre-packed) are created
// once at load and shared by every context, as TensorRT shares an engine's
// weights. A CPU kernel must therefore be stateless in run(): scratch lives on
// the stack or per call. Each context owns its activation buffers, so several
// contexts may run concurrently; one context runs one inference at a time.
#include "engine/cpu_engine.h"

#include <cstring>
#include <unordered_map>

#include "backends/cpu/kernel.h"
#include "engine/summary.h"
#include "ir/op_registry.h"

namespace kiln {

namespace {

std::string type_str(DataType dt, const std::vector<int64_t>& dims) { return dtype_name(dt) + shape_str(dims); }

// Immutable after load; contexts keep it alive through a shared_ptr.
struct CpuModel {
  std::unique_ptr<ir::Graph> graph;
  std::vector<std::unique_ptr<cpu::Kernel>> kernels;  // one per node, in node order
  std::vector<TensorInfo> inputs, outputs;
  NetworkSummary summary;
  std::string origin, device;
  // Every runtime tensor (graph input or node output) gets a slot.
  std::unordered_map<const ir::Value*, size_t> slot;
  std::vector<const ir::Value*> slot_values;
};

// Re-runs each node's shape inference and requires the stored shapes: a plan
// whose shapes disagree with its ops would make kernels index out of bounds.
void check_node(const CpuModel& m, ir::Node& n) {
  const ir::OpDef* def = ir::OpRegistry::global().find(n.domain, n.op_type);
  if (!def)
    throw_unsupported("plan " + m.origin + ": " + n.label() + " uses op '" + n.op_type + "'" +
                      (n.domain.empty() ? "" : " of domain '" + n.domain + "'") +
                      ", which this kiln does not know: rebuild the plan with this kiln");
  std::vector<std::pair<DataType, ir::Dims>> stored;
  for (const ir::Value* o : n.outputs) stored.emplace_back(o ? o->dtype : DataType::kFloat32, o ? o->dims : ir::Dims{});
  def->infer(n);
  for (size_t k = 0; k < n.outputs.size(); ++k) {
    const ir::Value* o = n.outputs[k];
    if (!o) continue;
    // Shape/Size publish their output as a constant; the builder drops such
    // nodes, so finding one here means the plan was not made by `kiln build`.
    if (o->is_constant())
      throw_bad_input("plan " + m.origin + " is inconsistent: " + n.label() + " computes constant '" + o->name +
                      "' at run time: rebuild it with `kiln build`");
    if (o->dtype != stored[k].first || o->dims != stored[k].second)
      throw_bad_input("plan " + m.origin + " is inconsistent: " + n.label() + " output '" + o->name +
                      "' is stored as " + type_str(stored[k].first, stored[k].second) + " but its op gives " +
                      type_str(o->dtype, o->dims) + ": rebuild it with `kiln build`");
  }
}

class CpuContext : public ExecutionContext {
 public:
  explicit CpuContext(std::shared_ptr<const CpuModel> m) : m_(std::move(m)) {
    const ir::Graph& g = *m_->graph;
    slots_.reserve(m_->slot_values.size());  // pointers into slots_ must stay valid
    for (const ir::Value* v : m_->slot_values) slots_.emplace_back(v->dtype, v->dims);
    // Node outputs are never constants (the plan reader checks), so every
    // written tensor is one of this context's slots.
    auto slot_of = [&](const ir::Value* v) -> ir::Tensor* { return v ? &slots_[m_->slot.at(v)] : nullptr; };
    ins_.resize(g.nodes().size());
    outs_.resize(g.nodes().size());
    for (size_t k = 0; k < g.nodes().size(); ++k) {
      const ir::Node& n = *g.nodes()[k];
      for (const ir::Value* v : n.inputs)
        ins_[k].push_back(v && v->is_constant() ? v->constant.get() : slot_of(v));
      for (const ir::Value* v : n.outputs) outs_[k].push_back(slot_of(v));
    }
  }

  std::map<std::string, HostTensor> run(const std::map<std::string, HostTensor>& inputs) override {
    const ir::Graph& g = *m_->graph;
    for (auto& [name, t] : inputs) {
      bool known = false;
      for (const ir::Value* v : g.inputs) known = known || v->name == name;
      if (!known) throw_bad_input("unknown input '" + name + "': the engine's inputs are " + input_names());
    }
    for (const ir::Value* v : g.inputs) {
      auto it = inputs.find(v->name);
      if (it == inputs.end())
        throw_bad_input("input '" + v->name + "' (" + type_str(v->dtype, v->dims) + ") is missing");
      const HostTensor& t = it->second;
      if (t.dtype != v->dtype || t.shape != v->dims)
        throw_bad_input("input '" + v->name + "': expected " + type_str(v->dtype, v->dims) + ", got " +
                        type_str(t.dtype, t.shape));
      ir::Tensor& dst = slots_[m_->slot.at(v)];
      if (t.data.size() != dst.nbytes())
        throw_bad_input("input '" + v->name + "' of shape " + shape_str(t.shape) + " holds " +
                        std::to_string(t.data.size()) + " bytes, expected " + std::to_string(dst.nbytes()));
      if (dst.nbytes()) std::memcpy(dst.raw(), t.data.data(), dst.nbytes());
    }
    for (size_t k = 0; k < m_->kernels.size(); ++k) {
      m_->kernels[k]->run(ins_[k], outs_[k]);
      const ir::Node& n = *g.nodes()[k];
      for (size_t j = 0; j < n.outputs.size(); ++j) {
        const ir::Value* v = n.outputs[j];
        if (v && (outs_[k][j]->dtype() != v->dtype || outs_[k][j]->dims() != v->dims))
          throw_internal(n.label() + ": the CPU kernel '" + n.tactic + "' changed output '" + v->name + "' from " +
                         type_str(v->dtype, v->dims) + " to " +
                         type_str(outs_[k][j]->dtype(), outs_[k][j]->dims()));
      }
    }
    std::map<std::string, HostTensor> out;
    for (const ir::Value* v : g.outputs)
      out[v->name] = v->is_constant() ? v->constant->to_host() : slots_[m_->slot.at(v)].to_host();
    return out;
  }

 private:
  std::string input_names() const {
    std::string s;
    for (const ir::Value* v : m_->graph->inputs) s += (s.empty() ? "'" : ", '") + v->name + "'";
    return s.empty() ? "(none)" : s;
  }

  std::shared_ptr<const CpuModel> m_;
  std::vector<ir::Tensor> slots_;
  std::vector<std::vector<const ir::Tensor*>> ins_;
  std::vector<std::vector<ir::Tensor*>> outs_;
};

class CpuEngine : public Engine {
 public:
  explicit CpuEngine(std::shared_ptr<const CpuModel> m) : m_(std::move(m)) {}
  const std::vector<TensorInfo>& inputs() const override { return m_->inputs; }
  const std::vector<TensorInfo>& outputs() const override { return m_->outputs; }
  NetworkSummary summary() const override { return m_->summary; }
  std::string device() const override { return m_->device; }
  std::unique_ptr<ExecutionContext> create_context() const override { return std::make_unique<CpuContext>(m_); }

 private:
  std::shared_ptr<const CpuModel> m_;
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(std::unique_ptr<ir::Graph> graph, const std::string& origin,
                                        const std::string& device) {
  auto m = std::make_shared<CpuModel>();
  m->graph = std::move(graph);
  m->origin = origin;
  m->device = device;
  ir::Graph& g = *m->graph;
  auto add_slot = [&](const ir::Value* v) {
    if (v && !v->is_constant() && m->slot.emplace(v, m->slot_values.size()).second) m->slot_values.push_back(v);
  };
  for (const ir::Value* v : g.inputs) add_slot(v);
  auto& registry = cpu::KernelRegistry::global();
  for (auto& np : g.nodes()) {
    ir::Node& n = *np;
    check_node(*m, n);
    for (const ir::Value* v : n.outputs) add_slot(v);
    auto kernel = registry.create(n);
    if (kernel->tactic() != n.tactic)
      throw_bad_input("plan " + origin + " was built with tactic '" + n.tactic + "' for " + n.label() +
                      ", which this kiln lacks (it offers '" + kernel->tactic() + "'): rebuild it with `kiln build`");
    m->kernels.push_back(std::move(kernel));
  }
  for (const ir::Value* v : g.inputs) m->inputs.push_back(tensor_info(*v));
  for (const ir::Value* v : g.outputs) m->outputs.push_back(tensor_info(*v));
  m->summary = summarize_graph(g);
  // Activation sizes come from the plan: check them all now so a hostile
  // plan fails at load with kBadInput rather than at the first context.
  for (const ir::Value* v : m->slot_values) ir::numel_of(v->dims);
  return std::make_unique<CpuEngine>(std::move(m));
}

}  // namespace kiln
