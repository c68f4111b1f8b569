// INT8 only where it pays, judged over the whole network: every INT8 conv is
// timed against the same layer in float (FP16 where the build allows it),
// both on the real shapes with their fastest tactics, and the choice is the
// FP16/FP32 one of choose_precision.h with INT8 in the FP32 role: a layer
// leaves float only for a gain beyond timing noise, a tensor whose producer
// and reader disagree costs one reformat (unless the INT8 side handles float
// itself: an INT8 conv's float output or float residual, at its wider
// bytes), and runs of layers switch together where one alone would not pay
// for its reformats.
#include <algorithm>
#include <cstdio>
#include <map>

#include "builder/clone.h"
#include "builder/cuda/choose_precision.h"
#include "builder/cuda/cuda_build.h"
#include "engine/logging.h"

namespace kiln::cuda_build {

namespace {

// Node name -> median ms of its winning tactic, for a formatted copy.
std::map<std::string, double> layer_times(ir::Graph& g, const Options& t) {
  const TimingStats s = select_tactics(g, t);
  std::map<std::string, double> ms;
  for (size_t k = 0; k < s.layer_ms.size(); ++k)
    if (s.layer_ms[k] >= 0) ms[g.nodes()[k]->name] = s.layer_ms[k];
  return ms;
}

bool is_quantize(const ir::Node& n) { return n.op_type == "Reformat" && n.name.rfind("quantize:", 0) == 0; }

// The bandwidth of the quantize layers timed in the INT8 copy that keep
// their layout (a quantize that also changes the layout, like the network
// input's, is slower per byte and would overprice the rest); without any,
// the default.
Int8ReformatCost fit_reformat_cost(const ir::Graph& gi, const std::map<std::string, double>& ms_i) {
  Int8ReformatCost c;
  double ms = 0, bytes = 0;
  for (auto& n : gi.nodes()) {
    auto t = ms_i.find(n->name);
    if (!is_quantize(*n) || t == ms_i.end() || !n->inputs[0] || n->inputs[0]->layout != n->outputs[0]->layout)
      continue;
    const double b = double(ir::numel_of(n->outputs[0]->dims)) * double(dtype_size(n->inputs[0]->dtype) + 1);
    if (b < 1e6) continue;  // launch-bound: says nothing about bandwidth
    ms += std::max(0.0, t->second - c.launch_ms);
    bytes += b;
  }
  if (bytes > 0 && ms > 0) c.ms_per_byte = ms / bytes;
  return c;
}

}  // namespace

std::set<std::string> int8_slower_layers(const ir::Graph& int8_graph, const ir::Graph& float_graph, const Options& o,
                                         const std::set<std::string>& pinned_int8,
                                         std::map<std::string, std::string>* why) {
  Options t = o;
  t.cache = o.cache ? o.cache : open_timing_cache(o.timing_cache);
  t.time_single = true;  // a layer with one INT8 tactic still has a precision to choose
  auto gi = clone_graph(int8_graph);
  auto gf = clone_graph(float_graph);
  assign_formats(*gi, t);
  assign_formats(*gf, t);
  log_message(Severity::kVerbose, "int8: timing every layer in INT8, then in float");
  const auto ms_i = layer_times(*gi, t);
  const auto ms_f = layer_times(*gf, t);
  save_timing_cache(*t.cache);

  std::map<std::string, double> qconv_ms;
  for (auto& n : gi->nodes())
    if (n->op_type == "QConv" && ms_i.count(n->name)) qconv_ms[n->name] = ms_i.at(n->name);
  const PrecisionProblem p =
      int8_problem(float_graph, qconv_ms, ms_f, pinned_int8, fit_reformat_cost(*gi, ms_i), o.fp16 ? 2 : 4);
  return int8_choice(p, o.fp16, why);
}

double Int8ReformatCost::operator()(int64_t count, int float_bytes) const {
  return launch_ms + double(count) * double(float_bytes + 1) * ms_per_byte;
}

double Int8ReformatCost::wider(int64_t count, int float_bytes) const {
  return double(count) * double(float_bytes - 1) * ms_per_byte;
}

PrecisionProblem int8_problem(const ir::Graph& float_graph, const std::map<std::string, double>& int8_ms,
                              const std::map<std::string, double>& float_ms, const std::set<std::string>& pinned_int8,
                              const Int8ReformatCost& cost, int float_bytes) {
  // "fp16" is float, "fp32" is INT8.
  PrecisionProblem p;
  p.fp32_margin_ms = 0.0002;  // INT8 must win beyond timing noise; ties keep float
  p.fp32_margin_rel = 0.02;
  std::map<const ir::Node*, int> index;
  for (auto& n : float_graph.nodes()) {
    if (!int8_ms.count(n->name) || !float_ms.count(n->name)) continue;
    index[n.get()] = int(p.layers.size());
    PrecisionLayer l;
    l.name = n->name;
    l.fp16_ms = float_ms.at(n->name);
    l.fp32_ms = int8_ms.at(n->name);
    l.pin = pinned_int8.count("*") || pinned_int8.count(n->name) ? PrecisionLayer::kFp32 : PrecisionLayer::kFree;
    p.layers.push_back(l);
  }
  auto add_tensor = [&](const ir::Value* v) {
    if (!v || v->is_constant()) return;
    PrecisionTensor te;
    te.name = v->name;
    auto prod = v->producer ? index.find(v->producer) : index.end();
    te.producer = prod != index.end() ? prod->second : -1;
    te.fp16 = true;  // a producer that is not a candidate stores float
    bool touches = te.producer >= 0;
    for (const ir::Node* c : float_graph.consumers(v)) {
      auto r = index.find(c);
      if (r == index.end()) {
        te.reads.push_back({-1, true, false});  // a float-only consumer
        continue;
      }
      if (c->inputs[0] == v) te.reads.push_back({r->second, false, false});  // the quantized input
      // A residual: in float the layer reads float; in INT8 int8 or float alike.
      if (c->inputs.size() > 3 && c->inputs[3] == v) te.reads.push_back({r->second, false, false, true});
      touches = true;
    }
    if (std::find(float_graph.outputs.begin(), float_graph.outputs.end(), v) != float_graph.outputs.end())
      te.reads.push_back({-1, true, false});
    if (!touches) return;
    te.reformat_ms = cost(ir::numel_of(v->dims), float_bytes);
    te.follows_reads = true;  // assign_int8: an INT8 conv with a float reader writes float
    te.wide_ms = cost.wider(ir::numel_of(v->dims), float_bytes);
    p.tensors.push_back(te);
  };
  for (const ir::Value* v : float_graph.inputs) add_tensor(v);
  for (auto& n : float_graph.nodes())
    for (const ir::Value* v : n->outputs) add_tensor(v);
  return p;
}

std::set<std::string> int8_choice(const PrecisionProblem& p, bool fp16, std::map<std::string, std::string>* why) {
  const PrecisionChoice c = choose_precision(p);
  std::set<std::string> slower;
  for (size_t k = 0; k < p.layers.size(); ++k) {
    const PrecisionLayer& l = p.layers[k];
    const bool int8 = !c.fp16[k];
    if (!int8) slower.insert(l.name);
    if (!why) continue;
    // A pinned layer records what timing alone would have chosen (the
    // caller notes the request); the others record the choice.
    const bool says_int8 = l.pin == PrecisionLayer::kFree ? int8 : l.fp32_ms <= l.fp16_ms;
    char buf[160];
    std::snprintf(buf, sizeof buf, "int8 %.4f ms vs %s %.4f ms: %s", l.fp32_ms, fp16 ? "fp16" : "fp32", l.fp16_ms,
                  says_int8 ? "int8" : "float");
    (*why)[l.name] = buf;
  }
  char line[200];
  std::snprintf(line, sizeof line, "int8: %zu of %zu conv layers INT8, modeled %.4f ms (all float %.4f ms)",
                p.layers.size() - slower.size(), p.layers.size(), c.ms, c.all_fp16_ms);
  log_message(Severity::kInfo, line);
  return slower;
}

}  // namespace kiln::cuda_build
