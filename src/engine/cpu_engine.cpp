// CPU Engine and ExecutionContext.
//
// Sharing: the engine's kernels (and the weights they pre-packed) are created
// once at load and shared by every context, as TensorRT shares an engine's
// weights. A CPU kernel must therefore be stateless in run(): scratch lives on
// the stack or per call. Each context owns one activation arena laid out by
// the engine's memory plan (engine/memory_plan.h), so several contexts may run
// concurrently; one context runs one inference at a time. Nodes the plan
// elides (reshapes, contiguous concats) run no kernel: their outputs are views.
#include "engine/cpu_engine.h"

#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "backends/cpu/kernel.h"
#include "engine/memory_plan.h"
#include "engine/row_counts.h"
#include "engine/summary.h"
#include "ir/op_registry.h"

namespace kiln {

namespace {

std::string type_str(DataType dt, const std::vector<int64_t>& dims) { return dtype_name(dt) + shape_str(dims); }

// Immutable after load; contexts keep it alive through a shared_ptr.
struct CpuModel {
  std::unique_ptr<ir::Graph> graph;
  std::vector<std::unique_ptr<cpu::Kernel>> kernels;  // one per node, in node order
  MemoryPlan memory;
  std::vector<TensorInfo> inputs, outputs;
  std::unique_ptr<RowCounts> row_counts;
  NetworkSummary summary;
  std::string origin, device;
  // Every runtime tensor (graph input or node output) gets a slot.
  std::unordered_map<const ir::Value*, size_t> slot;
  std::vector<const ir::Value*> slot_values;
};

std::shared_ptr<uint8_t> alloc_arena(int64_t bytes) {
  // Rounded up and never empty, so every view (even of 0 bytes) points inside.
  const size_t n = size_t(std::max<int64_t>((bytes + 63) / 64 * 64, 64));
  void* p = std::aligned_alloc(64, n);
  if (!p) throw_bad_input("out of memory allocating a " + std::to_string(n) + "-byte activation arena");
  std::memset(p, 0, n);
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}

class CpuContext : public ExecutionContext {
 public:
  explicit CpuContext(std::shared_ptr<const CpuModel> m) : m_(std::move(m)) {
    const ir::Graph& g = *m_->graph;
    arena_ = alloc_arena(m_->memory.peak_bytes);
    slots_.reserve(m_->slot_values.size());  // pointers into slots_ must stay valid
    for (const ir::Value* v : m_->slot_values)
      slots_.push_back(ir::Tensor::view(v->dtype, v->dims, arena_, size_t(m_->memory.at(v).offset)));
    // Node outputs are never constants (the plan reader checks), so every
    // written tensor is one of this context's slots.
    auto slot_of = [&](const ir::Value* v) -> ir::Tensor* { return v ? &slots_[m_->slot.at(v)] : nullptr; };
    ins_.resize(g.nodes().size());
    outs_.resize(g.nodes().size());
    out_ptr_.resize(g.nodes().size());
    for (size_t k = 0; k < g.nodes().size(); ++k) {
      const ir::Node& n = *g.nodes()[k];
      for (const ir::Value* v : n.inputs)
        ins_[k].push_back(v && v->is_constant() ? v->constant.get() : slot_of(v));
      for (const ir::Value* v : n.outputs) {
        outs_[k].push_back(slot_of(v));
        out_ptr_[k].push_back(v ? outs_[k].back()->raw() : nullptr);
      }
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
      if (!m_->memory.runs(k)) continue;
      const std::vector<ir::Tensor*>& outs = outs_[k];
      m_->kernels[k]->run(ins_[k], outs);
      const ir::Node& n = *g.nodes()[k];
      for (size_t j = 0; j < n.outputs.size(); ++j) {
        const ir::Value* v = n.outputs[j];
        if (!v) continue;
        // A kernel that swapped in its own buffer would leave the arena (and
        // every view of this output) unwritten.
        if (outs[j]->dtype() != v->dtype || outs[j]->dims() != v->dims || outs[j]->raw() != out_ptr_[k][j])
          throw_internal(n.label() + ": the CPU kernel '" + n.tactic + "' replaced output '" + v->name + "' " +
                         type_str(v->dtype, v->dims) + " with another buffer " +
                         type_str(outs[j]->dtype(), outs[j]->dims()));
      }
    }
    std::map<std::string, HostTensor> out;
    for (const ir::Value* v : g.outputs)
      out[v->name] = v->is_constant() ? v->constant->to_host() : slots_[m_->slot.at(v)].to_host();
    m_->row_counts->trim(out);
    return out;
  }

 private:
  std::string input_names() const {
    std::string s;
    for (const ir::Value* v : m_->graph->inputs) s += (s.empty() ? "'" : ", '") + v->name + "'";
    return s.empty() ? "(none)" : s;
  }

  std::shared_ptr<const CpuModel> m_;
  std::shared_ptr<uint8_t> arena_;
  std::vector<ir::Tensor> slots_;  // views into arena_
  std::vector<std::vector<const ir::Tensor*>> ins_;
  std::vector<std::vector<ir::Tensor*>> outs_;
  std::vector<std::vector<const void*>> out_ptr_;  // where each output view must still point after its kernel
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

// Re-runs each node's shape inference and requires the stored shapes: a plan
// whose shapes disagree with its ops would make kernels index out of bounds.
void check_plan_node(ir::Node& n, const std::string& origin) {
  const ir::OpDef* def = ir::OpRegistry::global().find(n.domain, n.op_type);
  if (!def)
    throw_unsupported("plan " + origin + ": " + n.label() + " uses op '" + n.op_type + "'" +
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
      throw_bad_input("plan " + origin + " is inconsistent: " + n.label() + " computes constant '" + o->name +
                      "' at run time: rebuild it with `kiln build`");
    if (o->dtype != stored[k].first || o->dims != stored[k].second)
      throw_bad_input("plan " + origin + " is inconsistent: " + n.label() + " output '" + o->name +
                      "' is stored as " + type_str(stored[k].first, stored[k].second) + " but its op gives " +
                      type_str(o->dtype, o->dims) + ": rebuild it with `kiln build`");
  }
}

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
    check_plan_node(n, origin);
    for (const ir::Value* v : n.outputs) add_slot(v);
    auto kernel = registry.create(n);
    if (kernel->tactic() != n.tactic)
      throw_bad_input("plan " + origin + " was built with tactic '" + n.tactic + "' for " + n.label() +
                      ", which this kiln lacks (it offers '" + kernel->tactic() + "'): rebuild it with `kiln build`");
    m->kernels.push_back(std::move(kernel));
  }
  for (const ir::Value* v : g.inputs) m->inputs.push_back(tensor_info(*v));
  m->row_counts = std::make_unique<RowCounts>(g, origin);
  m->outputs = m->row_counts->outputs(g);
  // Activation sizes come from the plan file; the planner checks them all,
  // so a hostile plan fails here with kBadInput rather than at a context.
  m->memory = plan_memory(g, memory_plan_options_from_env());
  check_no_overlap(g, m->memory);
  m->summary = summarize_graph(g, &m->memory);
  return std::make_unique<CpuEngine>(std::move(m));
}

}  // namespace kiln
