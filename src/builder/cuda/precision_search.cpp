// FP16 builds: FP16 is allowed, not imposed. Every layer with an FP16 kernel
// is timed in both precisions, on two copies of the graph (all-FP16 and
// all-FP32), with the same tactic search and one in-memory timing cache, so
// the final build below times nothing new. The Reformat layers a switch adds
// or removes are timed too, and choose_precision picks per layer.
#include <algorithm>
#include <functional>
#include <cstdio>

#include "backends/cuda/kernel.h"
#include "builder/clone.h"
#include "builder/cuda/precision_search.h"
#include "engine/logging.h"
#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::cuda_build {

namespace {

// A free layer leaves FP16 only when FP32 wins by more than this: medians of
// a few replays still move by ~0.2 us or a few percent, and on a tie FP16
// keeps the smaller activations.
constexpr double kFp32MarginMs = 0.0002;
constexpr double kFp32MarginRel = 0.02;

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

std::string ms_text(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f ms", ms);
  return buf;
}

bool is_reformat(const ir::Node* n) { return n && n->domain == "kiln" && n->op_type == "Reformat"; }

}  // namespace

std::vector<PrecisionLayer::Pin> precision_pins(const ir::Graph& g, const Options& o) {
  for (const std::string& name : o.fp16_layers)
    if (name != "*" && o.fp32_layers.count(name))
      throw_usage("layer '" + name + "' is named by both --fp16-layer and --fp32-layer: keep one");
  const bool all = o.fp16_layers.count("*") != 0;
  std::vector<PrecisionLayer::Pin> pins;
  for (auto& n : g.nodes()) {
    const bool can = runs_fp16(*n);
    // A layer with no CUDA kernel at all fails in assign_formats, naming it.
    if (!can && o.fp16_layers.count(n->name) && cuda::Registry::global().traits(*n))
      throw_usage(n->label() + ": --fp16-layer forces FP16, but this layer has no FP16 kernel (or no float "
                               "output); remove it from --fp16-layer");
    if (!can || o.fp32_layers.count(n->name)) pins.push_back(PrecisionLayer::kFp32);
    else if (all || o.fp16_layers.count(n->name)) pins.push_back(PrecisionLayer::kFp16);
    else pins.push_back(PrecisionLayer::kFree);
  }
  return pins;
}

std::set<std::string> plugin_input_layers(const ir::Graph& g) {
  static const std::set<std::string> views = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                                              "Concat", "Identity"};
  std::set<std::string> out;
  std::function<void(const ir::Value*, int)> walk = [&](const ir::Value* v, int depth) {
    const ir::Node* p = v ? v->producer : nullptr;
    if (!p || depth > 4) return;
    if (p->domain.empty() && views.count(p->op_type)) {
      for (const ir::Value* in : p->inputs) walk(in, depth + 1);
    } else if (runs_fp16(*p)) {
      out.insert(p->name);
    }
  };
  for (auto& n : g.nodes())
    if (n->path == "plugin")
      for (const ir::Value* v : n->inputs)
        if (v && !v->is_constant()) walk(v, 0);
  return out;
}

PrecisionRounds make_precision_rounds(const ir::Graph& g, const Options& o) {
  PrecisionRounds r;
  r.fp16 = clone_graph(g);
  r.fp32 = clone_graph(g);
  // Clones list nodes in g's order; assign_formats keeps the Node objects.
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    r.fp16_node.push_back(r.fp16->nodes()[i].get());
    r.fp32_node.push_back(r.fp32->nodes()[i].get());
  }
  Options a;
  a.fp16 = true;
  a.fp32_layers = o.fp32_layers;
  assign_formats(*r.fp16, a);
  assign_formats(*r.fp32, Options());
  return r;
}

PrecisionProblem precision_problem(const ir::Graph& g, const PrecisionRounds& r,
                                   const std::vector<PrecisionLayer::Pin>& pins, std::vector<ReformatProbe>* probes) {
  const size_t n = g.nodes().size();
  if (pins.size() != n || r.fp16_node.size() != n || r.fp32_node.size() != n)
    throw_internal("precision_problem: the rounds do not match the graph");
  auto ms = [&](const ir::Node* x) {
    auto it = r.ms.find(x);
    return it == r.ms.end() ? 0.0 : std::max(it->second, 0.0);
  };
  PrecisionProblem p;
  for (size_t i = 0; i < n; ++i) {
    PrecisionLayer l;
    l.name = g.nodes()[i]->name;
    l.pin = pins[i];
    // A layer the FP16 copy could not run in FP16 is not the search's to move.
    if (l.pin != PrecisionLayer::kFp32 && r.fp16_node[i]->precision != DataType::kFloat16) l.pin = PrecisionLayer::kFp32;
    if (r.fp16_node[i]->precision == DataType::kFloat16) l.fp16_ms = ms(r.fp16_node[i]);
    l.fp32_ms = ms(r.fp32_node[i]);
    p.layers.push_back(l);
  }
  // A tensor or a read follows its layer's precision where the FP16 copy has
  // it in FP16 and the FP32 copy in FP32; otherwise its dtype is fixed (an
  // input the op keeps in FP32, a Cast's output, the model's inputs).
  std::map<const ir::Value*, int> index;
  std::vector<const ir::Value*> form;  // per tensor: as the FP16 copy stores it
  auto add = [&](const ir::Value* v, const ir::Value* a, const ir::Value* b, int layer) {
    if (!v || v->is_constant() || !a || !b || !is_float(a->dtype) || !is_float(b->dtype) || index.count(v)) return;
    PrecisionTensor t;
    t.name = v->name;
    const bool follows = layer >= 0 && a->dtype == DataType::kFloat16 && b->dtype == DataType::kFloat32;
    t.producer = follows ? layer : -1;
    t.fp16 = a->dtype == DataType::kFloat16;
    index[v] = int(p.tensors.size());
    p.tensors.push_back(t);
    form.push_back(a);
  };
  for (size_t m = 0; m < g.inputs.size(); ++m) add(g.inputs[m], r.fp16->inputs[m], r.fp32->inputs[m], -1);
  for (size_t i = 0; i < n; ++i) {
    const ir::Node& x = *g.nodes()[i];
    for (size_t j = 0; j < x.outputs.size(); ++j)
      add(x.outputs[j], r.fp16_node[i]->outputs[j], r.fp32_node[i]->outputs[j], int(i));
  }
  for (size_t i = 0; i < n; ++i) {
    const ir::Node& x = *g.nodes()[i];
    for (size_t k = 0; k < x.inputs.size(); ++k) {
      auto it = index.find(x.inputs[k]);
      const ir::Value* a = r.fp16_node[i]->in(k);
      const ir::Value* b = r.fp32_node[i]->in(k);
      if (it == index.end() || !a || !b) continue;
      PrecisionTensor& t = p.tensors[size_t(it->second)];
      PrecisionRead rd;
      rd.fp16 = a->dtype == DataType::kFloat16;
      rd.layer = rd.fp16 && b->dtype == DataType::kFloat32 ? int(i) : -1;
      // FP16 in, FP16 out: the FP16 copy changed only the layout for this read.
      const ir::Node* via = a->producer;
      if (rd.fp16 && is_reformat(via) && via->in(0) && via->in(0)->dtype == DataType::kFloat16) {
        rd.relayout = true;
        t.relayout_ms = std::max(t.relayout_ms, ms(via));
      }
      t.reads.push_back(rd);
    }
  }
  for (const ir::Value* v : g.outputs) {
    auto it = index.find(v);
    if (it == index.end()) continue;
    PrecisionRead rd;  // leaves in the model's dtype
    rd.fp16 = v->dtype == DataType::kFloat16;
    p.tensors[size_t(it->second)].reads.push_back(rd);
  }
  // Tensors no choice can change add a constant: leave them out.
  std::vector<PrecisionTensor> kept;
  for (size_t t = 0; t < p.tensors.size(); ++t) {
    const PrecisionTensor& x = p.tensors[t];
    bool moves = x.producer >= 0;
    for (const PrecisionRead& rd : x.reads) moves = moves || rd.layer >= 0;
    if (!moves) continue;
    const ir::Value* a = form[t];
    if (probes && a->has_shape && ir::numel_of(a->dims) > 0)
      probes->push_back({int(kept.size()), a, a->dtype == DataType::kFloat16 ? DataType::kFloat32 : DataType::kFloat16});
    kept.push_back(x);
  }
  p.tensors = std::move(kept);
  p.fp32_margin_ms = kFp32MarginMs;
  p.fp32_margin_rel = kFp32MarginRel;
  return p;
}

std::unique_ptr<ir::Graph> reformat_probe_graph(const std::vector<ReformatProbe>& probes) {
  auto g = std::make_unique<ir::Graph>();
  g->name = "reformat probes";
  const ir::OpDef* def = ir::OpRegistry::global().find("kiln", "Reformat");
  if (!def) throw_internal("reformat_probe_graph: no Reformat op definition");
  for (size_t k = 0; k < probes.size(); ++k) {
    const ir::Value& from = *probes[k].from;
    ir::Value* x = g->add_value("probe" + std::to_string(k));
    x->dtype = from.dtype;
    x->dims = from.dims;
    x->has_shape = true;
    x->batch_axis = from.batch_axis;
    x->layout = from.layout;
    ir::Value* y = g->add_value("probe" + std::to_string(k) + "/out");
    ir::Node* r = g->add_node("Reformat", "probe:" + std::to_string(k), {x}, {y});
    r->domain = "kiln";
    r->attrs["to"].kind = ir::Attribute::Kind::kInt;
    r->attrs["to"].i = int64_t(probes[k].to);
    r->precision = probes[k].to;
    def->infer(*r);
    y->layout = ir::Layout::kLinear;
    y->batch_axis = from.batch_axis;
    g->inputs.push_back(x);
    g->outputs.push_back(y);
  }
  return g;
}

std::set<std::string> record_precision(ir::Graph& g, const PrecisionProblem& p, const PrecisionChoice& c,
                                       const Options& o) {
  if (p.layers.size() != g.nodes().size() || c.fp16.size() != g.nodes().size())
    throw_internal("record_precision: the choice does not match the graph");
  std::set<std::string> fp32 = o.fp32_layers;
  int timed16 = 0, timed32 = 0, pinned16 = 0, pinned32 = 0, none = 0;
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const ir::Node& n = *g.nodes()[i];
    const PrecisionLayer& l = p.layers[i];
    if (!runs_fp16(n)) {
      ++none;
      continue;
    }
    const bool half = c.fp16[i];
    std::string why;
    std::string times = "fp16 " + ms_text(l.fp16_ms) + " vs fp32 " + ms_text(l.fp32_ms);
    if (l.pin == PrecisionLayer::kFp16) {
      why = "--fp16-layer";
      ++pinned16;
    } else if (l.pin == PrecisionLayer::kFp32) {
      why = o.fp32_layers.count(n.name) ? "--fp32-layer" : "no FP16 tactic";
      times = "fp32 " + ms_text(l.fp32_ms);
      ++pinned32;
    } else {
      const double gain32 = l.fp16_ms - l.fp32_ms;  // what FP32 alone would save
      const double margin = p.fp32_margin_ms + p.fp32_margin_rel * l.fp16_ms;
      if (half) why = gain32 <= 0 ? "faster" : gain32 <= margin ? "FP32 gain within the margin" : "FP32 gain does not pay for its reformats";
      else why = gain32 > 0 ? "faster" : "saves reformats";
      if (half) {
        ++timed16;
      } else {
        ++timed32;
        fp32.insert(n.name);
        log_message(Severity::kVerbose, n.label() + ": FP32 (" + why + "): " + times);
      }
    }
    g.metadata["precision/" + n.name] = std::string(half ? "fp16" : "fp32") + " (" + why + "): " + times;
  }
  const std::string summary = "precision by timing: " + std::to_string(timed16) + " layers FP16, " +
                              std::to_string(timed32) + " FP32; pinned: " + std::to_string(pinned16) + " FP16, " +
                              std::to_string(pinned32) + " FP32; " + std::to_string(none) +
                              " without an FP16 kernel; modeled " + ms_text(c.ms) + " (all FP16: " +
                              ms_text(c.all_fp16_ms) + ")";
  g.metadata["precision"] = summary;
  log_message(Severity::kInfo, summary);
  return fp32;
}

std::set<std::string> choose_fp32_layers(ir::Graph& g, const Options& o) {
  const std::vector<PrecisionLayer::Pin> pins = precision_pins(g, o);
  if (o.fp16_layers.count("*")) {
    g.metadata["precision"] = "FP16 wherever a layer has an FP16 kernel (--fp16-layer '*'), but --fp32-layer";
    return o.fp32_layers;
  }
  if (std::count(pins.begin(), pins.end(), PrecisionLayer::kFree) == 0) {
    g.metadata["precision"] = "every layer pinned: nothing timed";
    return o.fp32_layers;
  }
  PrecisionRounds r = make_precision_rounds(g, o);
  Options t;
  t.timing_runs = o.timing_runs;
  t.cache = o.cache ? o.cache : open_timing_cache(o.timing_cache);
  t.time_single = true;  // single-kernel layers have a precision to choose too
  int timed = 0, cached = 0;
  auto time_copy = [&](ir::Graph& x, const char* what) {
    log_message(Severity::kVerbose, std::string("precision: timing every layer in ") + what);
    TimingStats s = select_tactics(x, t);
    for (size_t k = 0; k < s.layer_ms.size(); ++k)
      if (s.layer_ms[k] >= 0) r.ms[x.nodes()[k].get()] = s.layer_ms[k];
    timed += s.timed, cached += s.cached;
  };
  time_copy(*r.fp16, "FP16");
  time_copy(*r.fp32, "FP32");
  std::vector<ReformatProbe> probes;
  PrecisionProblem p = precision_problem(g, r, pins, &probes);
  if (!probes.empty()) {
    auto pg = reformat_probe_graph(probes);
    log_message(Severity::kVerbose, "precision: timing " + std::to_string(probes.size()) + " reformats");
    TimingStats s = select_tactics(*pg, t);
    for (size_t k = 0; k < probes.size(); ++k) p.tensors[size_t(probes[k].tensor)].reformat_ms = std::max(s.layer_ms[k], 0.0);
    timed += s.timed, cached += s.cached;
  }
  log_message(Severity::kInfo, "precision: timed FP16 and FP32 candidates (" + std::to_string(timed) +
                                   " layers timed, " + std::to_string(cached) + " from the timing cache)");
  const PrecisionChoice c = choose_precision(p);
  if (!o.cache) save_timing_cache(*t.cache);
  return record_precision(g, p, c, o);
}

}  // namespace kiln::cuda_build
