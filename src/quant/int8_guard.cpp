// INT8 sensitivity guard; see int8_guard.h.
#include "quant/int8_guard.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "backends/cpu/kernel.h"
#include "builder/clone.h"
#include "engine/cpu_engine.h"
#include "kiln/error.h"

namespace kiln::quant {

namespace {

using Values = std::map<std::string, std::vector<float>>;

bool is_reformat(const ir::Node* n) { return n && n->domain == "kiln" && n->op_type == "Reformat"; }

// The scale an int8 value was quantized with, from the node that wrote it.
float int8_scale(const ir::Value* v) {
  const ir::Node* p = v->producer;
  if (!p) throw_internal("int8 guard: int8 value '" + v->name + "' has no producer");
  if (p->op_type == "MaxPool") return int8_scale(p->in(0));
  return p->f(p->op_type == "QConv" ? "y_scale" : "scale", 0.f);
}

std::vector<float> as_float(const ir::Graph& g, const std::string& name, const HostTensor& t) {
  std::vector<float> out(size_t(t.numel()));
  if (t.dtype == DataType::kFloat32) {
    std::copy(t.as<float>(), t.as<float>() + t.numel(), out.begin());
  } else if (t.dtype == DataType::kInt8) {
    const float s = int8_scale(g.value(name));
    for (int64_t i = 0; i < t.numel(); ++i) out[size_t(i)] = float(t.as<int8_t>()[i]) * s;
  } else {
    throw_internal("int8 guard: tensor '" + name + "' has dtype " + dtype_name(t.dtype));
  }
  return out;
}

// Runs `g` on the CPU over every batch, returning the named tensors (as
// float) concatenated over batches.
Values run_exposed(const ir::Graph& graph, const std::set<std::string>& names, const std::vector<Batch>& batches) {
  auto g = clone_graph(graph);
  for (const std::string& name : names) {
    ir::Value* v = g->value(name);
    if (v && std::find(g->outputs.begin(), g->outputs.end(), v) == g->outputs.end()) g->outputs.push_back(v);
  }
  for (auto& n : g->nodes()) n->tactic = cpu::KernelRegistry::global().create(*n)->tactic();
  const auto keep = clone_graph(*g);  // for int8 scales after the engine takes g
  auto engine = make_cpu_engine(std::move(g), "<int8 guard>", "cpu");
  auto ctx = engine->create_context();
  Values out;
  for (const Batch& b : batches) {
    for (auto& [name, t] : ctx->run(b)) {
      if (!names.count(name)) continue;
      const std::vector<float> f = as_float(*keep, name, t);
      auto& dst = out[name];
      dst.insert(dst.end(), f.begin(), f.end());
    }
  }
  return out;
}

double relative_error(const std::vector<float>& got, const std::vector<float>& ref) {
  double d = 0, r = 0;
  for (size_t i = 0; i < ref.size() && i < got.size(); ++i) {
    const double e = double(got[i]) - double(ref[i]);
    d += e * e;
    r += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(d / std::max(r, 1e-30));
}

struct Measurement {
  double network = 0;
  std::vector<std::pair<std::string, double>> layers;  // added error, worst first
};

class Guard {
 public:
  Guard(const ir::Graph& fp32, const std::map<std::string, float>& scales, const std::vector<Batch>& batches)
      : fp32_(fp32), scales_(scales), batches_(batches) {
    for (const ir::Value* o : fp32.outputs) {
      const ir::Node* p = o->producer;
      if (p && p->path == "plugin") {
        for (const ir::Value* in : p->inputs)
          if (in && !in->is_constant() && in->dtype == DataType::kFloat32) watched_.insert(in->name);
      } else if (o->dtype == DataType::kFloat32 && !o->is_constant()) {
        watched_.insert(o->name);
      }
    }
    for (auto& n : fp32.nodes())
      for (const ir::Value* v : n->outputs)
        if (v && v->dtype == DataType::kFloat32) names_.insert(v->name);
    for (const ir::Value* v : fp32.inputs) names_.insert(v->name);
    ref_ = run_exposed(fp32, names_, batches_);
  }

  Measurement measure(const std::set<std::string>& keep) const {
    auto g = clone_graph(fp32_);
    Int8Options o;
    o.keep_float = keep;
    assign_int8(*g, scales_, o);
    const Values got = run_exposed(*g, names_, batches_);
    std::map<std::string, double> err;
    for (const auto& [name, ref] : ref_) {
      auto it = got.find(name);
      if (it != got.end()) err[name] = relative_error(it->second, ref);
    }
    Measurement m;
    for (const std::string& w : watched_) m.network = std::max(m.network, err.count(w) ? err.at(w) : 0.0);
    for (auto& n : g->nodes()) {
      if (n->op_type != "QConv" || !n->outputs[0] || !err.count(n->outputs[0]->name)) continue;
      double fed = 0;
      for (size_t k : {size_t(0), size_t(3)}) {
        const ir::Value* in = n->in(k);
        if (!in) continue;
        const std::string src = is_reformat(in->producer) ? in->producer->in(0)->name : in->name;
        if (err.count(src)) fed = std::max(fed, err.at(src));
      }
      // Independent errors add in quadrature: what the layer added is the
      // part of its output error its inputs do not explain. (A plain
      // difference would always blame the first INT8 layer, fed exact data.)
      const double out = err.at(n->outputs[0]->name);
      m.layers.emplace_back(n->name, std::sqrt(std::max(out * out - fed * fed, 0.0)));
    }
    std::stable_sort(m.layers.begin(), m.layers.end(), [](auto& a, auto& b) { return a.second > b.second; });
    return m;
  }

 private:
  const ir::Graph& fp32_;
  const std::map<std::string, float>& scales_;
  const std::vector<Batch>& batches_;
  std::set<std::string> watched_, names_;
  Values ref_;
};

}  // namespace

GuardResult run_int8_guard(const ir::Graph& fp32, const std::map<std::string, float>& scales,
                           const Int8Options& opts, const std::vector<Batch>& batches, double bound) {
  if (batches.empty()) throw_usage("the INT8 guard needs calibration batches; it got none");
  if (!(bound > 0) || !std::isfinite(bound))
    throw_usage("the INT8 guard's error bound must be finite and > 0, got " + std::to_string(bound));
  Guard guard(fp32, scales, batches);
  std::set<std::string> keep = opts.keep_float;
  GuardResult r;
  Measurement m = guard.measure(keep);
  r.error_before = m.network;
  while (m.network > bound && !m.layers.empty()) {
    const std::string worst = m.layers.front().first;
    keep.insert(worst);
    r.returned.push_back(worst);
    m = guard.measure(keep);
  }
  r.error_after = m.network;
  r.met = m.network <= bound;
  r.layer_errors = m.layers;
  return r;
}

std::string describe(const GuardResult& r, double bound) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "output error %.4g -> %.4g (bound %.4g%s); %zu layer(s) returned to float",
                r.error_before, r.error_after, bound, r.met ? "" : ", not reached", r.returned.size());
  std::string s = buf;
  for (size_t k = 0; k < r.returned.size(); ++k) s += (k ? ", " : ": ") + r.returned[k];
  return s;
}

}  // namespace kiln::quant
