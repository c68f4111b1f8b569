// Tactic selection: every candidate kernel of a layer runs on the layer's
// real shapes, dtypes and layouts (random inputs, the plan's weights), and the
// one with the lowest median time wins. A timing cache keyed by the layer's
// signature, the GPU and the library versions lets a second build skip it.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "backends/cuda/common.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/libraries.h"
#include "builder/cuda/cuda_build.h"
#include "engine/logging.h"
#include "engine/memory_plan.h"
#include "kiln/error.h"
#include "kiln/kiln.h"

namespace kiln::cuda_build {

namespace {

std::string value_sig(const ir::Value* v) {
  if (!v) return "-";
  std::string s = std::string(dtype_name(v->dtype)) + shape_str(v->dims) + ir::layout_name(v->layout);
  return v->is_constant() ? s + "c" : s;
}

std::string attr_sig(const ir::Attribute& a) {
  std::ostringstream os;
  os << int(a.kind) << ":" << a.i << "," << a.f << "," << a.s;
  for (auto x : a.ints) os << "," << x;
  for (auto x : a.floats) os << "," << x;
  for (auto& x : a.strings) os << "," << x;
  if (a.kind == ir::Attribute::Kind::kTensor) os << dtype_name(a.t.dtype()) << shape_str(a.t.dims());
  return os.str();
}

// Everything that can change a kernel's speed: op, attributes, tensors.
std::string signature(const ir::Node& n) {
  std::string s = n.domain + "::" + n.op_type + "|";
  for (auto& [k, a] : n.attrs) s += k + "=" + attr_sig(a) + ";";
  s += "|";
  for (const ir::Value* v : n.inputs) s += value_sig(v) + " ";
  s += "->";
  for (const ir::Value* v : n.outputs) s += " " + value_sig(v);
  // Small integer constants (shapes, axes, indices) steer kernels too.
  for (const ir::Value* v : n.inputs)
    if (v && v->is_constant() && v->constant->numel() <= 16 && !(v->dtype == DataType::kFloat32 || v->dtype == DataType::kFloat16))
      for (int64_t x : v->constant->to_int64()) s += " " + std::to_string(x);
  return s;
}

}  // namespace

struct CacheEntry { std::string winner, times; };

class TimingCache {
 public:
  TimingCache(std::string path, std::string scope) : path_(std::move(path)), scope_(std::move(scope)) {
    if (path_.empty()) return;
    std::ifstream f(path_);
    std::string line;
    // One entry per line: scope \t signature \t winner \t times.
    while (std::getline(f, line)) {
      std::vector<std::string> parts;
      std::stringstream ss(line);
      std::string p;
      while (std::getline(ss, p, '\t')) parts.push_back(p);
      if (parts.size() == 4) entries_[parts[0] + "\t" + parts[1]] = {parts[2], parts[3]};
    }
  }
  const CacheEntry* find(const std::string& sig) const {
    auto it = entries_.find(scope_ + "\t" + sig);
    return it == entries_.end() ? nullptr : &it->second;
  }
  void put(const std::string& sig, CacheEntry e) { entries_[scope_ + "\t" + sig] = std::move(e); dirty_ = true; }
  void save() const {
    if (path_.empty() || !dirty_) return;
    std::ostringstream os;
    for (auto& [k, e] : entries_) os << k << "\t" << e.winner << "\t" << e.times << "\n";
    const std::string s = os.str();
    write_file_atomic(path_, std::vector<uint8_t>(s.begin(), s.end()));
  }

 private:
  std::string path_, scope_;
  std::map<std::string, CacheEntry> entries_;
  bool dirty_ = false;
};

std::shared_ptr<TimingCache> open_timing_cache(const std::string& path) {
  return std::make_shared<TimingCache>(path, cuda::device_string() + " | " + cuda::library_versions());
}

void save_timing_cache(const TimingCache& cache) { cache.save(); }

namespace {

// Device buffers holding a layer's inputs (random floats, zero integers so
// indices stay in range; constants as the plan has them) and outputs.
struct LayerBuffers {
  std::vector<cuda::DevicePtr> keep;
  std::vector<const void*> in;
  std::vector<void*> out;
};

LayerBuffers make_buffers(const ir::Node& n, std::mt19937& rng) {
  LayerBuffers b;
  for (const ir::Value* v : n.inputs) {
    if (!v) {
      b.in.push_back(nullptr);
      continue;
    }
    if (v->is_constant()) {
      b.keep.push_back(cuda::upload(v->constant->raw(), v->constant->nbytes()));
    } else {
      const size_t bytes = size_t(ir::numel_of(v->dims)) * dtype_size(v->dtype);
      std::vector<uint8_t> host(bytes, 0);
      std::uniform_real_distribution<float> u(-1.f, 1.f);
      if (v->dtype == DataType::kFloat32)
        for (size_t i = 0; i < bytes / 4; ++i) reinterpret_cast<float*>(host.data())[i] = u(rng);
      if (v->dtype == DataType::kFloat16)
        for (size_t i = 0; i < bytes / 2; ++i) reinterpret_cast<uint16_t*>(host.data())[i] = float_to_half(u(rng));
      b.keep.push_back(cuda::upload(host.data(), bytes));
    }
    b.in.push_back(b.keep.back().get());
  }
  for (const ir::Value* v : n.outputs) {
    if (!v) {
      b.out.push_back(nullptr);
      continue;
    }
    b.keep.push_back(cuda::device_alloc(size_t(ir::numel_of(v->dims)) * dtype_size(v->dtype)));
    b.out.push_back(b.keep.back().get());
  }
  return b;
}

// Median milliseconds of one tactic, as the engine runs it: several launches
// captured into one CUDA graph and replayed, so the time is the GPU's and not
// the host's launch overhead (which a graph replay does not pay; cuDNN's
// legacy calls spend tens of microseconds on the host). A tactic that cannot
// be captured cannot run in the engine's graph either: it throws here.
double time_tactic(const cuda::Tactic& t, const LayerBuffers& b, cudaStream_t s, cuda::Libraries& libs, int runs,
                   double best_ms) {
  auto kernel = t.make();
  cuda::DevicePtr ws;
  if (kernel->workspace_bytes()) ws = cuda::device_alloc(kernel->workspace_bytes());
  cuda::Launch l{s, ws.get(), &libs};
  kernel->enqueue(b.in, b.out, l);  // lazy initialization outside the capture
  // One timed probe launch first: a candidate far slower than the best so far
  // (cuDNN's FFT algorithms on a depthwise convolution take milliseconds
  // where the winner takes microseconds) keeps its probe time and is not
  // replayed, so one bad candidate cannot stretch a build by minutes.
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  KILN_CUDA_CHECK(cudaEventCreate(&e0));
  std::unique_ptr<CUevent_st, cudaError_t (*)(cudaEvent_t)> g0(e0, cudaEventDestroy);
  KILN_CUDA_CHECK(cudaEventCreate(&e1));
  std::unique_ptr<CUevent_st, cudaError_t (*)(cudaEvent_t)> g1(e1, cudaEventDestroy);
  KILN_CUDA_CHECK(cudaEventRecord(e0, s));
  kernel->enqueue(b.in, b.out, l);
  KILN_CUDA_CHECK(cudaEventRecord(e1, s));
  KILN_CUDA_CHECK(cudaEventSynchronize(e1));
  float probe = 0;
  KILN_CUDA_CHECK(cudaEventElapsedTime(&probe, e0, e1));
  if (best_ms > 0 && probe > 8 * best_ms + 0.05) return probe;
  return cuda::graph_replay_ms([&] { kernel->enqueue(b.in, b.out, l); }, s, runs);
}

std::string fmt_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", ms);
  return buf;
}

// The winner's time in a "name=ms;name=ms" record (-1 if absent).
double winner_ms(const std::string& times, const std::string& winner) {
  std::stringstream ss(times);
  for (std::string item; std::getline(ss, item, ';');) {
    const size_t eq = item.rfind('=');
    if (eq == std::string::npos || item.compare(0, eq, winner) != 0 || eq != winner.size()) continue;
    try {
      return std::stod(item.substr(eq + 1));
    } catch (const std::exception&) {
      return -1;
    }
  }
  return -1;
}

}  // namespace

TimingStats select_tactics(ir::Graph& g, const Options& o) {
  TimingStats stats;
  auto& reg = cuda::Registry::global();
  const MemoryPlan mem = plan_memory(g);
  std::shared_ptr<TimingCache> own = o.cache ? o.cache : open_timing_cache(o.timing_cache);
  TimingCache& cache = *own;
  stats.layer_ms.assign(g.nodes().size(), -1.0);
  cudaStream_t s = nullptr;
  KILN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::unique_ptr<cudaStream_t, void (*)(cudaStream_t*)> guard(&s, [](cudaStream_t* p) { cudaStreamDestroy(*p); });
  cuda::Libraries libs(s);
  std::mt19937 rng(1234);
  for (size_t k = 0; k < g.nodes().size(); ++k) {
    ir::Node& n = *g.nodes()[k];
    std::vector<cuda::Tactic> tactics = reg.tactics(n);
    // Elided layers (views, in-place concats) never run: any tactic will do.
    // A plugin's only tactic still runs once, so one without a CUDA
    // implementation fails at build rather than at the first inference.
    const bool plugin = n.path == "plugin";
    if ((tactics.size() == 1 && !plugin && !o.time_single) || !mem.runs(k)) {
      n.tactic = tactics[0].name;
      if (!mem.runs(k)) stats.layer_ms[k] = 0;
      ++stats.single;
      continue;
    }
    const std::string sig = signature(n);
    if (const CacheEntry* e = cache.find(sig)) {
      // Reuse only when the entry timed every tactic offered now: a kiln
      // with new tactics (or new libraries' algorithms) times the layer again.
      bool known = false, complete = true;
      const std::string timed = ";" + e->times;
      for (auto& t : tactics) {
        known = known || t.name == e->winner;
        complete = complete && timed.find(";" + t.name + "=") != std::string::npos;
      }
      if (known && complete) {
        n.tactic = e->winner;
        g.metadata["tactics/" + std::to_string(k)] = e->times;
        stats.layer_ms[k] = winner_ms(e->times, e->winner);
        ++stats.cached;
        continue;
      }
    }
    log_message(Severity::kVerbose, n.label() + ": timing " + std::to_string(tactics.size()) + " tactics");
    LayerBuffers b = make_buffers(n, rng);
    std::string times, best, first_error;
    double best_ms = 0;
    for (const cuda::Tactic& t : tactics) {
      try {
        const double ms = time_tactic(t, b, s, libs, o.timing_runs, best.empty() ? 0.0 : best_ms);
        log_message(Severity::kVerbose, n.label() + ": " + t.name + " " + fmt_ms(ms) + " ms");
        times += (times.empty() ? "" : ";") + t.name + "=" + fmt_ms(ms);
        if (best.empty() || ms < best_ms) best = t.name, best_ms = ms;
      } catch (const Error& e) {
        // A candidate that cannot run this layer (e.g. a library refusing a
        // configuration at launch) is skipped, and the reason kept.
        KILN_CUDA_CHECK(cudaStreamSynchronize(s));
        times += (times.empty() ? "" : ";") + t.name + "=error";
        if (first_error.empty()) first_error = t.name + ": " + e.what();
        log_message(Severity::kVerbose, n.label() + ": tactic " + t.name + " failed: " + e.what());
      }
    }
    if (best.empty())
      throw_unsupported(n.label() + ": every CUDA tactic failed on this GPU (" + first_error +
                        "); build for the CPU (--device cpu)");
    n.tactic = best;
    g.metadata["tactics/" + std::to_string(k)] = times;
    stats.layer_ms[k] = best_ms;
    cache.put(sig, {best, times});
    ++stats.timed;
  }
  if (!o.cache) cache.save();  // a shared cache is saved by its owner
  return stats;
}

}  // namespace kiln::cuda_build
