// CUDA Engine and ExecutionContext.
//
// Sharing: kernels (and the weights they uploaded) and the device copies of
// constants belong to the engine and serve every context. Each context owns a
// stream, library handles, one device arena laid out by the memory plan (the
// peak the plan records), one workspace (layers run one after another, so the
// largest suffices), pinned staging buffers for run(), and its CUDA graph.
//
// CUDA graphs: the first enqueue captures every layer's launches on the
// context's stream into a graph; later ones replay it with one launch, which
// removes the per-kernel launch gaps that dominate small-batch latency. The
// addresses baked into the graph are the context's own, so it stays valid.
#include "engine/cuda/cuda_engine.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <unordered_map>
#include <utility>

#include "backends/cuda/common.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/libraries.h"
#include "engine/cpu_engine.h"
#include "engine/memory_plan.h"
#include "engine/row_counts.h"
#include "engine/summary.h"

namespace kiln {

namespace {

std::string type_str(DataType dt, const std::vector<int64_t>& dims) { return dtype_name(dt) + shape_str(dims); }

struct CudaModel {
  std::unique_ptr<ir::Graph> graph;
  std::vector<std::unique_ptr<cuda::Kernel>> kernels;  // per node; null for elided nodes
  std::unordered_map<const ir::Value*, cuda::DevicePtr> constants;
  MemoryPlan memory;
  size_t workspace = 0;
  std::vector<TensorInfo> inputs, outputs;
  std::unique_ptr<RowCounts> row_counts;
  NetworkSummary summary;
  std::string origin, device;
};

struct PinnedDeleter { void operator()(void* p) const { cudaFreeHost(p); } };

class CudaContext : public ExecutionContext {
 public:
  explicit CudaContext(std::shared_ptr<const CudaModel> m) : m_(std::move(m)) {
    KILN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // KILN_CUDA_GRAPH=0: launch layer by layer (debugging, comparing).
    const char* env = std::getenv("KILN_CUDA_GRAPH");
    use_graph_ = !(env && std::string(env) == "0");
    libs_ = std::make_unique<cuda::Libraries>(stream_);
    arena_ = cuda::device_alloc(size_t(std::max<int64_t>(m_->memory.peak_bytes, 256)));
    if (m_->workspace) workspace_ = cuda::device_alloc(m_->workspace);
    const ir::Graph& g = *m_->graph;
    auto addr = [&](const ir::Value* v) -> void* {
      if (!v) return nullptr;
      if (v->is_constant()) {
        auto it = m_->constants.find(v);  // only layers that run have theirs on the device
        return it == m_->constants.end() ? nullptr : it->second.get();
      }
      return static_cast<uint8_t*>(arena_.get()) + m_->memory.at(v).offset;
    };
    ins_.resize(g.nodes().size());
    outs_.resize(g.nodes().size());
    for (size_t k = 0; k < g.nodes().size(); ++k) {
      for (const ir::Value* v : g.nodes()[k]->inputs) ins_[k].push_back(addr(v));
      for (const ir::Value* v : g.nodes()[k]->outputs) outs_[k].push_back(addr(v));
    }
    for (const ir::Value* v : g.inputs) io_[v->name] = addr(v);
    for (const ir::Value* v : g.outputs) io_[v->name] = addr(v);
    // One pass on zeroed memory: libraries and lazily loaded kernels
    // initialize here, outside any graph capture, where they may allocate
    // and synchronize.
    KILN_CUDA_CHECK(cudaMemsetAsync(arena_.get(), 0, size_t(std::max<int64_t>(m_->memory.peak_bytes, 256)), stream_));
    enqueue_layers(stream_);
    KILN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  ~CudaContext() override {
    if (exec_) cudaGraphExecDestroy(exec_);
    if (stream_) {
      cudaStreamSynchronize(stream_);
      libs_.reset();
      cudaStreamDestroy(stream_);
    }
  }

  void* device_address(const std::string& name) override {
    auto it = io_.find(name);
    return it == io_.end() ? nullptr : it->second;
  }

  void set_cuda_graph(bool on) override { use_graph_ = on; }

  void enqueue(void* user_stream) override {
    cudaStream_t s = user_stream ? static_cast<cudaStream_t>(user_stream) : stream_;
    if (use_graph_) {
      if (!exec_) capture();
      KILN_CUDA_CHECK(cudaGraphLaunch(exec_, s));
      return;
    }
    KILN_CUDNN_CHECK(cudnnSetStream(libs_->cudnn, s));
    enqueue_layers(s);
    KILN_CUDNN_CHECK(cudnnSetStream(libs_->cudnn, stream_));
  }

  std::map<std::string, HostTensor> run(const std::map<std::string, HostTensor>& inputs) override {
    const ir::Graph& g = *m_->graph;
    for (auto& [name, t] : inputs) {
      bool known = false;
      for (const ir::Value* v : g.inputs) known = known || v->name == name;
      if (!known) throw_bad_input("unknown input '" + name + "': the engine's inputs are " + names(g.inputs));
    }
    for (const ir::Value* v : g.inputs) {
      auto it = inputs.find(v->name);
      if (it == inputs.end())
        throw_bad_input("input '" + v->name + "' (" + type_str(v->dtype, v->dims) + ") is missing");
      const HostTensor& t = it->second;
      const size_t bytes = size_t(ir::numel_of(v->dims)) * dtype_size(v->dtype);
      if (t.dtype != v->dtype || t.shape != v->dims)
        throw_bad_input("input '" + v->name + "': expected " + type_str(v->dtype, v->dims) + ", got " +
                        type_str(t.dtype, t.shape));
      if (t.data.size() != bytes)
        throw_bad_input("input '" + v->name + "' of shape " + shape_str(t.shape) + " holds " +
                        std::to_string(t.data.size()) + " bytes, expected " + std::to_string(bytes));
      void* staged = pinned(v->name, bytes);
      std::memcpy(staged, t.data.data(), bytes);
      if (bytes) KILN_CUDA_CHECK(cudaMemcpyAsync(io_.at(v->name), staged, bytes, cudaMemcpyHostToDevice, stream_));
    }
    enqueue(nullptr);
    for (const ir::Value* v : g.outputs) {
      const size_t bytes = size_t(ir::numel_of(v->dims)) * dtype_size(v->dtype);
      if (bytes)
        KILN_CUDA_CHECK(cudaMemcpyAsync(pinned(v->name, bytes), io_.at(v->name), bytes, cudaMemcpyDeviceToHost, stream_));
    }
    KILN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::map<std::string, HostTensor> out;
    for (const ir::Value* v : g.outputs) {
      HostTensor t = HostTensor::zeros(v->dtype, v->dims);
      if (!t.data.empty()) std::memcpy(t.data.data(), staging_.at(v->name).get(), t.data.size());
      out[v->name] = std::move(t);
    }
    m_->row_counts->trim(out);
    return out;
  }

  // Each layer alone: a few launches of it captured into one CUDA graph and
  // replayed, so the time is the GPU's, as in the whole-network graph, not the
  // host's launch overhead.
  std::vector<LayerTime> profile(int runs) override {
    const ir::Graph& g = *m_->graph;
    std::vector<LayerTime> out;
    for (size_t k = 0; k < g.nodes().size(); ++k) {
      if (!m_->kernels[k]) continue;
      const double ms =
          cuda::graph_replay_ms([&] { m_->kernels[k]->enqueue(ins_[k], outs_[k], launch(stream_)); }, stream_, runs);
      const ir::Node& n = *g.nodes()[k];
      out.push_back({n.name, n.domain.empty() ? n.op_type : n.domain + "::" + n.op_type, n.tactic, ms});
    }
    return out;
  }

 private:
  cuda::Launch launch(cudaStream_t s) { return cuda::Launch{s, workspace_.get(), libs_.get()}; }

  void enqueue_layers(cudaStream_t s) {
    for (size_t k = 0; k < m_->kernels.size(); ++k)
      if (m_->kernels[k]) m_->kernels[k]->enqueue(ins_[k], outs_[k], launch(s));
  }

  void capture() {
    cudaGraph_t graph = nullptr;
    KILN_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue_layers(stream_);
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    KILN_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaError_t e = cudaGraphInstantiate(&exec_, graph, 0);
    cudaGraphDestroy(graph);
    KILN_CUDA_CHECK(e);
  }

  void* pinned(const std::string& name, size_t bytes) {
    auto it = staging_.find(name);
    if (it != staging_.end()) return it->second.get();
    void* p = nullptr;
    KILN_CUDA_CHECK(cudaMallocHost(&p, std::max<size_t>(bytes, 64)));
    return staging_.emplace(name, std::unique_ptr<void, PinnedDeleter>(p)).first->second.get();
  }

  static std::string names(const std::vector<ir::Value*>& vs) {
    std::string s;
    for (const ir::Value* v : vs) s += (s.empty() ? "'" : ", '") + v->name + "'";
    return s.empty() ? "(none)" : s;
  }

  std::shared_ptr<const CudaModel> m_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::Libraries> libs_;
  cuda::DevicePtr arena_, workspace_;
  std::vector<std::vector<const void*>> ins_;
  std::vector<std::vector<void*>> outs_;
  std::map<std::string, void*> io_;
  std::map<std::string, std::unique_ptr<void, PinnedDeleter>> staging_;
  bool use_graph_ = true;
  cudaGraphExec_t exec_ = nullptr;
};

class CudaEngine : public Engine {
 public:
  explicit CudaEngine(std::shared_ptr<const CudaModel> m) : m_(std::move(m)) {}
  const std::vector<TensorInfo>& inputs() const override { return m_->inputs; }
  const std::vector<TensorInfo>& outputs() const override { return m_->outputs; }
  NetworkSummary summary() const override { return m_->summary; }
  std::string device() const override { return m_->device; }
  std::unique_ptr<ExecutionContext> create_context() const override { return std::make_unique<CudaContext>(m_); }

 private:
  std::shared_ptr<const CudaModel> m_;
};

}  // namespace

struct DeviceConstantCache {
  std::map<std::pair<const void*, size_t>, cuda::DevicePtr> copies;
};

std::shared_ptr<DeviceConstantCache> make_device_constant_cache() { return std::make_shared<DeviceConstantCache>(); }

std::unique_ptr<Engine> make_cuda_engine(std::unique_ptr<ir::Graph> graph, const std::string& origin,
                                         const std::string& device, DeviceConstantCache* shared) {
  auto m = std::make_shared<CudaModel>();
  m->graph = std::move(graph);
  m->origin = origin;
  m->device = device;
  ir::Graph& g = *m->graph;
  for (auto& np : g.nodes()) check_plan_node(*np, origin);
  for (const ir::Value* v : g.outputs)
    if (!v->is_constant() && v->layout != ir::Layout::kLinear)
      throw_bad_input("plan " + origin + " is inconsistent: output '" + v->name +
                      "' is not row-major: rebuild it with `kiln build`");
  m->memory = plan_memory(g, memory_plan_options_from_env());
  check_no_overlap(g, m->memory);
  // One device copy per constant a running layer reads or the graph returns
  // (outputs the passes folded to constants are copied out of it).
  auto upload_constant = [&](const ir::Value* v) {
    if (!v || !v->is_constant() || m->constants.count(v)) return;
    const ir::Tensor& t = *v->constant;
    if (!shared) {
      m->constants[v] = cuda::upload(t.raw(), t.nbytes());
      return;
    }
    cuda::DevicePtr& d = shared->copies[{t.raw(), t.nbytes()}];
    if (!d) d = cuda::upload(t.raw(), t.nbytes());
    m->constants[v] = d;
  };
  auto& reg = cuda::Registry::global();
  for (size_t k = 0; k < g.nodes().size(); ++k) {
    const ir::Node& n = *g.nodes()[k];
    if (!m->memory.runs(k)) {
      m->kernels.emplace_back();
      continue;
    }
    auto kernel = reg.find(n, n.tactic).make();
    m->workspace = std::max(m->workspace, kernel->workspace_bytes());
    m->kernels.push_back(std::move(kernel));
    for (const ir::Value* v : n.inputs) upload_constant(v);
  }
  for (const ir::Value* v : g.outputs) upload_constant(v);
  for (const ir::Value* v : g.inputs) m->inputs.push_back(tensor_info(*v));
  m->row_counts = std::make_unique<RowCounts>(g, origin);
  m->outputs = m->row_counts->outputs(g);
  m->summary = summarize_graph(g, &m->memory);
  return std::make_unique<CudaEngine>(std::move(m));
}

}  // namespace kiln
