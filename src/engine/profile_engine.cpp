// Profile Engine and ExecutionContext.
//
// Specialization choice: a batch b runs on the smallest specialization whose
// batch B >= b. With B > b the context copies the inputs into B-row tensors
// whose extra rows are zero and cuts every output back to b rows along its
// batch axis; the builder refused models where padding could show (outputs
// without a batch axis or with data-dependent rows). The specializations'
// constants are the same Tensor objects (one table in the plan), so weights
// are held once; each specialization keeps its own kernels.
//
// Contexts: the max-batch specialization's context is made with the context
// (device_address / enqueue serve it until set_batch picks another); the
// others on the first run or set_batch that needs them, so a server that
// only sees large batches never pays for the small ones' activation memory.
#include "engine/profile_engine.h"

#include <cstring>

#include "engine/cpu_engine.h"
#include "engine/summary.h"

namespace kiln {

namespace {

std::string type_str(DataType dt, const std::vector<int64_t>& dims) { return dtype_name(dt) + shape_str(dims); }

// "fp32[b,3,8,8]": a tensor of the profile with its batch axis as `b`.
std::string profile_type(const TensorInfo& t) {
  std::string s = std::string(dtype_name(t.dtype)) + "[";
  for (size_t a = 0; a < t.shape.size(); ++a)
    s += (a ? "," : "") + (int(a) == t.batch_axis ? std::string("b") : std::to_string(t.shape[a]));
  return s + "]";
}

struct ProfileModel {
  BatchProfile profile;
  std::vector<int> batches;                       // ascending, one per engine
  std::vector<std::unique_ptr<Engine>> engines;   // the last runs the max batch
  std::vector<TensorInfo> inputs, outputs;        // the max-batch engine's
  NetworkSummary summary;
  std::string origin;
};

// Bytes per slice and slice counts around `axis` of `shape`.
struct RowLayout {
  int64_t outer = 1;
  size_t row_bytes = 0;  // one batch row of one outer slice
};
RowLayout row_layout(const std::vector<int64_t>& shape, int axis, DataType dt) {
  RowLayout l;
  int64_t inner = 1;
  for (size_t a = 0; a < shape.size(); ++a) {
    if (int(a) < axis) l.outer *= shape[a];
    if (int(a) > axis) inner *= shape[a];
  }
  l.row_bytes = size_t(inner) * dtype_size(dt);
  return l;
}

// Copies the first `rows` rows along `axis` between tensors of `src_rows`
// and `dst_rows` rows there (the other axes equal).
void copy_rows(const uint8_t* src, int64_t src_rows, uint8_t* dst, int64_t dst_rows, const RowLayout& l,
               int64_t rows) {
  const size_t n = size_t(rows) * l.row_bytes;
  if (!n) return;
  for (int64_t o = 0; o < l.outer; ++o)
    std::memcpy(dst + size_t(o * dst_rows) * l.row_bytes, src + size_t(o * src_rows) * l.row_bytes, n);
}

class ProfileContext : public ExecutionContext {
 public:
  explicit ProfileContext(std::shared_ptr<const ProfileModel> m) : m_(std::move(m)) {
    ctx_.resize(m_->engines.size());
    ctx_.back() = m_->engines.back()->create_context();
    cur_ = ctx_.size() - 1;
  }

  std::map<std::string, HostTensor> run(const std::map<std::string, HostTensor>& inputs) override {
    const int64_t b = batch_of(inputs);
    size_t k = 0;
    while (m_->batches[k] < b) ++k;
    ExecutionContext& ctx = context(k);
    if (m_->batches[k] == b) return ctx.run(inputs);

    const int64_t rows = m_->batches[k];
    std::map<std::string, HostTensor> padded;
    for (const TensorInfo& info : m_->inputs) {
      const HostTensor& t = inputs.at(info.name);
      if (info.batch_axis < 0) {
        padded[info.name] = t;
        continue;
      }
      std::vector<int64_t> shape = t.shape;
      shape[size_t(info.batch_axis)] = rows;
      HostTensor p = HostTensor::zeros(t.dtype, shape);
      copy_rows(t.data.data(), b, p.data.data(), rows, row_layout(shape, info.batch_axis, t.dtype), b);
      padded[info.name] = std::move(p);
    }
    std::map<std::string, HostTensor> out = ctx.run(padded);
    for (const TensorInfo& info : m_->outputs) {
      auto it = out.find(info.name);
      if (it == out.end()) continue;
      HostTensor& t = it->second;
      const int axis = info.batch_axis;
      if (axis < 0 || size_t(axis) >= t.shape.size() || t.shape[size_t(axis)] != rows)
        throw_internal("output '" + info.name + "' of the batch-" + std::to_string(rows) +
                       " specialization has shape " + shape_str(t.shape));
      std::vector<int64_t> shape = t.shape;
      shape[size_t(axis)] = b;
      HostTensor cut = HostTensor::zeros(t.dtype, shape);
      copy_rows(t.data.data(), rows, cut.data.data(), b, row_layout(shape, axis, t.dtype), b);
      t = std::move(cut);
    }
    return out;
  }

  // The GPU interface serves the specialization set_batch chose (the max
  // until then).
  void* device_address(const std::string& name) override { return ctx_[cur_]->device_address(name); }
  void enqueue(void* stream) override { ctx_[cur_]->enqueue(stream); }
  int64_t set_batch(int64_t b) override {
    const BatchProfile& p = m_->profile;
    if (b < p.min || b > p.max)
      throw_bad_input("set_batch(" + std::to_string(b) + "): outside this engine's batch profile [" +
                      std::to_string(p.min) + ", " + std::to_string(p.max) + "]: rebuild with other " +
                      "--min-batch/--max-batch to run it");
    size_t k = 0;
    while (m_->batches[k] < b) ++k;
    context(k);
    cur_ = k;
    return m_->batches[k];
  }
  void set_cuda_graph(bool on) override {
    graph_ = on;
    graph_set_ = true;
    for (auto& c : ctx_)
      if (c) c->set_cuda_graph(on);
  }
  std::vector<LayerTime> profile(int runs) override { return ctx_[cur_]->profile(runs); }

 private:
  ExecutionContext& context(size_t k) {
    if (!ctx_[k]) {
      ctx_[k] = m_->engines[k]->create_context();
      if (graph_set_) ctx_[k]->set_cuda_graph(graph_);
    }
    return *ctx_[k];
  }

  // The batch every input agrees on, after checking names, dtypes and the
  // axes that do not scale with the batch.
  int64_t batch_of(const std::map<std::string, HostTensor>& inputs) const {
    const BatchProfile& p = m_->profile;
    const std::string range = "[" + std::to_string(p.min) + ", " + std::to_string(p.max) + "]";
    for (auto& [name, t] : inputs) {
      bool known = false;
      for (const TensorInfo& info : m_->inputs) known = known || info.name == name;
      if (!known) {
        std::string names;
        for (const TensorInfo& info : m_->inputs) names += (names.empty() ? "'" : ", '") + info.name + "'";
        throw_bad_input("unknown input '" + name + "': the engine's inputs are " + names);
      }
    }
    int64_t batch = -1;
    std::string first;
    for (const TensorInfo& info : m_->inputs) {
      auto it = inputs.find(info.name);
      if (it == inputs.end())
        throw_bad_input("input '" + info.name + "' (" + profile_type(info) + ", b in " + range + ") is missing");
      const HostTensor& t = it->second;
      bool fits = t.dtype == info.dtype && t.shape.size() == info.shape.size();
      for (size_t a = 0; fits && a < t.shape.size(); ++a)
        fits = int(a) == info.batch_axis || t.shape[a] == info.shape[a];
      if (!fits)
        throw_bad_input("input '" + info.name + "': expected " + profile_type(info) +
                        (info.batch_axis >= 0 ? " with b in " + range : std::string()) + ", got " +
                        type_str(t.dtype, t.shape));
      if (t.data.size() != size_t(t.numel()) * dtype_size(t.dtype))
        throw_bad_input("input '" + info.name + "' of shape " + shape_str(t.shape) + " holds " +
                        std::to_string(t.data.size()) + " bytes, expected " +
                        std::to_string(size_t(t.numel()) * dtype_size(t.dtype)));
      if (info.batch_axis < 0) continue;
      const int64_t b = t.shape[size_t(info.batch_axis)];
      if (b < p.min || b > p.max)
        throw_bad_input("input '" + info.name + "' has batch " + std::to_string(b) + ", outside this engine's batch " +
                        "profile " + range + ": run batches " + std::to_string(p.min) + " to " +
                        std::to_string(p.max) + ", or rebuild with other --min-batch/--max-batch");
      if (batch >= 0 && b != batch)
        throw_bad_input("input '" + info.name + "' has batch " + std::to_string(b) + " but input '" + first +
                        "' has batch " + std::to_string(batch) + ": give every input the same batch in " + range);
      if (batch < 0) first = info.name;
      batch = b;
    }
    return batch;
  }

  std::shared_ptr<const ProfileModel> m_;
  std::vector<std::unique_ptr<ExecutionContext>> ctx_;  // per specialization; null until used
  size_t cur_ = 0;                                       // the one device_address / enqueue serve
  bool graph_ = true, graph_set_ = false;
};

class ProfileEngine : public Engine {
 public:
  explicit ProfileEngine(std::shared_ptr<const ProfileModel> m) : m_(std::move(m)) {}
  const std::vector<TensorInfo>& inputs() const override { return m_->inputs; }
  const std::vector<TensorInfo>& outputs() const override { return m_->outputs; }
  NetworkSummary summary() const override { return m_->summary; }
  std::string device() const override { return m_->engines.back()->device(); }
  std::unique_ptr<ExecutionContext> create_context() const override {
    return std::make_unique<ProfileContext>(m_);
  }
  BatchProfile profile() const override { return m_->profile; }

 private:
  std::shared_ptr<const ProfileModel> m_;
};

// `got` (a specialization's tensors at `batch`) against `want` (the max's).
void check_alike(const std::vector<TensorInfo>& got, const std::vector<TensorInfo>& want, int batch, bool outputs,
                 const std::string& origin) {
  const char* kind = outputs ? "output" : "input";
  auto bad = [&](const std::string& what) {
    throw_bad_input("plan " + origin + " is inconsistent: " + what + ": rebuild it with `kiln build`");
  };
  if (got.size() != want.size())
    bad("its batch-" + std::to_string(batch) + " specialization has " + std::to_string(got.size()) + " " + kind +
        "s, the max-batch one " + std::to_string(want.size()));
  for (size_t k = 0; k < got.size(); ++k) {
    const TensorInfo& g = got[k];
    const TensorInfo& w = want[k];
    const std::string name = std::string(kind) + " '" + w.name + "'";
    if (outputs && (w.batch_axis < 0 || w.dynamic_rows))
      bad(name + (w.dynamic_rows ? " has a data-dependent row count" : " has no batch axis") +
          ", which a batch profile cannot pad");
    bool alike = g.name == w.name && g.dtype == w.dtype && g.batch_axis == w.batch_axis &&
                 g.dynamic_rows == w.dynamic_rows && g.shape.size() == w.shape.size();
    for (size_t a = 0; alike && a < g.shape.size(); ++a)
      alike = int(a) == w.batch_axis ? g.shape[a] == batch : g.shape[a] == w.shape[a];
    if (!alike)
      bad(name + " is " + type_str(g.dtype, g.shape) + " in the batch-" + std::to_string(batch) +
          " specialization, which does not match " + profile_type(w) + " at b = " + std::to_string(batch));
  }
}

}  // namespace

std::unique_ptr<Engine> make_profile_engine(plan::ProfilePlan plan, const std::string& origin,
                                            const SpecializationEngineFactory& make) {
  auto m = std::make_shared<ProfileModel>();
  m->profile = plan.profile;
  m->origin = origin;
  for (plan::Specialization& s : plan.specs) {
    m->batches.push_back(s.batch);
    m->engines.push_back(make(std::move(s.graph)));
  }
  const Engine& top = *m->engines.back();
  bool batched_input = false;
  for (const TensorInfo& t : top.inputs()) batched_input = batched_input || t.batch_axis >= 0;
  if (!batched_input)
    throw_bad_input("plan " + origin + " is inconsistent: a batch profile but no input with a batch axis: rebuild "
                    "it with `kiln build`");
  for (size_t k = 0; k < m->engines.size(); ++k) {
    check_alike(m->engines[k]->inputs(), top.inputs(), m->batches[k], false, origin);
    check_alike(m->engines[k]->outputs(), top.outputs(), m->batches[k], true, origin);
  }
  m->inputs = top.inputs();
  m->outputs = top.outputs();
  m->summary = top.summary();
  m->summary.profile = m->profile;
  m->summary.weight_bytes = 0;
  for (const auto& t : plan.constants) m->summary.weight_bytes += int64_t(t->nbytes());
  return std::make_unique<ProfileEngine>(std::move(m));
}

NetworkSummary summarize_profile_plan(plan::ProfilePlan& plan, const std::string& origin) {
  for (plan::Specialization& s : plan.specs)
    for (auto& n : s.graph->nodes()) check_plan_node(*n, origin);
  NetworkSummary summary = summarize_graph(*plan.specs.back().graph);
  summary.profile = plan.profile;
  summary.weight_bytes = 0;
  for (const auto& t : plan.constants) summary.weight_bytes += int64_t(t->nbytes());
  return summary;
}

}  // namespace kiln
