#include "quant/collect_stats.h"

#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <set>

#include "backends/cpu/kernel.h"
#include "backends/cpu/parallel.h"
#include "builder/clone.h"
#include "engine/cpu_engine.h"
#include "kiln/error.h"

namespace kiln::quant {

namespace {

bool is_float_activation(const ir::Value* v) { return v && !v->is_constant() && v->dtype == DataType::kFloat32; }

std::string type_str(DataType dt, const std::vector<int64_t>& dims) { return dtype_name(dt) + shape_str(dims); }

std::string input_list(const ir::Graph& g) {
  std::string s;
  for (const ir::Value* v : g.inputs) s += (s.empty() ? "'" : ", '") + v->name + "'";
  return s.empty() ? "none" : s;
}

// The calibrator is user code: name the batch so a bad file in a folder of
// hundreds can be found.
void check_batch(const ir::Graph& g, const std::map<std::string, HostTensor>& batch, int index) {
  const std::string where = "calibration batch " + std::to_string(index);
  for (const auto& kv : batch) {
    bool known = false;
    for (const ir::Value* v : g.inputs) known = known || v->name == kv.first;
    if (!known)
      throw_bad_input(where + " holds '" + kv.first + "', which is not a network input (the inputs are " +
                      input_list(g) + ")");
  }
  for (const ir::Value* v : g.inputs) {
    auto it = batch.find(v->name);
    if (it == batch.end())
      throw_bad_input(where + " lacks input '" + v->name + "' (" + type_str(v->dtype, v->dims) +
                      "): the calibrator must fill every network input");
    const HostTensor& t = it->second;
    if (t.dtype != v->dtype || t.shape != v->dims)
      throw_bad_input(where + ": input '" + v->name + "' is " + type_str(t.dtype, t.shape) + ", the network expects " +
                      type_str(v->dtype, v->dims));
    bool bad_dims = false;
    for (int64_t d : t.shape) bad_dims = bad_dims || d < 0;
    if (bad_dims || t.data.size() != size_t(t.numel()) * dtype_size(t.dtype))
      throw_bad_input(where + ": input '" + v->name + "' of shape " + shape_str(t.shape) + " holds " +
                      std::to_string(t.data.size()) + " bytes, expected " +
                      std::to_string(size_t(t.numel()) * dtype_size(t.dtype)));
  }
}

// One stderr line, rewritten in place: "calibrating [#####     ] 5/10 batches, 2.3 s".
class ProgressBar {
 public:
  ProgressBar(bool on, int total) : on_(on), total_(total), start_(std::chrono::steady_clock::now()) { show(0); }
  ~ProgressBar() {
    if (on_) std::fputc('\n', stderr);
  }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void show(int done) {
    if (!on_) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (total_ > 0) {
      constexpr int kWidth = 24;
      const int filled = done >= total_ ? kWidth : int(int64_t(done) * kWidth / total_);
      std::string bar(size_t(filled), '#');
      bar.resize(kWidth, ' ');
      std::fprintf(stderr, "\rcalibrating [%s] %d/%d batches, %.1f s", bar.c_str(), done, total_, s);
    } else {
      std::fprintf(stderr, "\rcalibrating: %d batches, %.1f s", done, s);
    }
    std::fflush(stderr);
  }

 private:
  bool on_;
  int total_;
  std::chrono::steady_clock::time_point start_;
};

// The engine's kernels run on the shared pool, which does not carry
// exceptions across threads: each item's failure is kept and rethrown here.
void for_each_parallel(size_t n, const std::function<void(size_t)>& fn) {
  std::vector<std::exception_ptr> errors(n);
  cpu::parallel_for(int64_t(n), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      try {
        fn(size_t(i));
      } catch (...) {
        errors[size_t(i)] = std::current_exception();
      }
    }
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

std::vector<std::string> calibration_tensor_names(const ir::Graph& g) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  auto add = [&](const ir::Value* v) {
    if (is_float_activation(v) && seen.insert(v->name).second) names.push_back(v->name);
  };
  for (const ir::Value* v : g.inputs) add(v);
  for (const auto& n : g.nodes())
    for (const ir::Value* v : n->outputs) add(v);
  return names;
}

CollectedStats collect_stats(const ir::Graph& g, Calibrator& calibrator, bool progress) {
  const std::vector<std::string> names = calibration_tensor_names(g);

  // Every float activation becomes a graph output, so the engine keeps it
  // (no memory reuse) and returns it; graph inputs are read from the batch.
  auto copy = clone_graph(g);
  std::set<const ir::Value*> exposed(copy->outputs.begin(), copy->outputs.end());
  std::set<std::string> input_names;
  for (const ir::Value* v : copy->inputs) input_names.insert(v->name);
  for (const std::string& name : names) {
    ir::Value* v = copy->value(name);
    if (!input_names.count(name) && exposed.insert(v).second) copy->outputs.push_back(v);
  }
  // Lowered as the builder does, on the FP32 reference kernels; no further
  // graph passes, so the tensors are exactly those named above.
  auto& kernels = cpu::KernelRegistry::global();
  for (auto& n : copy->nodes()) n->tactic = kernels.create(*n)->tactic();
  auto engine = make_cpu_engine(std::move(copy), "<calibration>", "cpu");
  auto ctx = engine->create_context();

  CollectedStats out;
  for (const std::string& name : names) out.stats.emplace(name, TensorStats());
  // Stats in name order: the pool hands each thread whole tensors, and a
  // tensor's stats never depend on which thread filled them.
  std::vector<TensorStats*> stats;
  for (const std::string& name : names) stats.push_back(&out.stats.at(name));

  ProgressBar bar(progress, calibrator.batch_count());
  std::map<std::string, HostTensor> batch;
  for (;;) {
    batch.clear();
    if (!calibrator.next_batch(batch)) break;
    check_batch(g, batch, out.batches);
    std::map<std::string, HostTensor> results = ctx->run(batch);
    std::vector<const HostTensor*> tensors;
    for (const std::string& name : names) {
      const auto& from = input_names.count(name) ? batch : results;
      auto it = from.find(name);
      if (it == from.end())
        throw_internal("calibration: the FP32 engine did not return tensor '" + name + "'");
      tensors.push_back(&it->second);
    }
    for_each_parallel(names.size(), [&](size_t i) {
      const HostTensor& t = *tensors[i];
      stats[i]->add(t.as<float>(), size_t(t.numel()));
    });
    ++out.batches;
    bar.show(out.batches);
  }
  if (out.batches == 0)
    throw_usage("the calibrator gave no batch: calibration needs at least one batch of representative inputs");
  return out;
}

}  // namespace kiln::quant
