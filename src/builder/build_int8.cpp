// INT8 builds; see build_int8.h.
#include "builder/build_int8.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "builder/clone.h"
#include "engine/logging.h"
#include "quant/assign_int8.h"
#include "quant/collect_stats.h"
#include "quant/int8_guard.h"

namespace kiln {

namespace {

// INT8 builds: scales from the model's own Q/DQ pairs when it has them,
// else from calibration (or its cache); then eligible layers go INT8.
std::map<std::string, float> int8_scales(ir::Graph& g, const Network& network, const BuilderConfig& c,
                                         std::string& source) {
  std::map<std::string, float> scales = quant::recorded_qdq_scales(g);
  source = "the model's QuantizeLinear/DequantizeLinear pairs";
  if (!scales.empty()) {
    if (c.calibration.calibrator)
      log_message(Severity::kWarning, network.source + " carries Q/DQ scales; they are used and the calibration "
                                                       "data is not");
  } else {
    if (!c.calibration.calibrator && c.calibration.cache_path.empty())
      throw_usage("an INT8 build needs scales: give calibration data (--calib DIR) or a calibration cache "
                  "(--calib-cache FILE), or build a model that carries QuantizeLinear/DequantizeLinear pairs");
    scales = quant::calibrate_graph(g, c.calibration);  // the graph as optimized here: same tensor names
    source = c.calibration.calibrator ? std::string("calibration (") + calibration_method_name(c.calibration.method) + ")"
                                      : "calibration cache " + c.calibration.cache_path;
  }
  return scales;
}

}  // namespace

#ifdef KILN_WITH_CUDA
cuda_build::Options cuda_options(const BuilderConfig& c) {
  cuda_build::Options o;
  o.fp16 = c.fp16;
  o.fp32_layers.insert(c.fp32_layers.begin(), c.fp32_layers.end());
  o.fp16_layers.insert(c.fp16_layers.begin(), c.fp16_layers.end());
  o.timing_cache = c.timing_cache;
  o.cache = cuda_build::open_timing_cache(c.timing_cache);
  return o;
}
#endif

void apply_int8(ir::Graph& g, const Network& network, const BuilderConfig& c) {
  std::string source;
  const std::map<std::string, float> scales = int8_scales(g, network, c, source);
  quant::Int8Options o;
  o.keep_float.insert(c.keep_float_layers.begin(), c.keep_float_layers.end());
  for (const std::string& name : c.keep_float_layers) {
    bool found = false;
    for (auto& n : g.nodes()) found = found || n->name == name;
    if (!found) log_message(Severity::kWarning, "--keep-fp16 '" + name + "' names no layer of the built graph");
  }
  for (const std::string& name : c.int8_layers) {
    if (o.keep_float.count(name))
      throw_usage("layer '" + name + "' is both kept float (--keep-fp16) and forced to INT8 (--int8-layer): pick one");
    bool found = name == "*";
    for (auto& n : g.nodes()) found = found || n->name == name;
    if (!found) log_message(Severity::kWarning, "--int8-layer '" + name + "' names no layer of the built graph");
  }
  if (c.int8_guard) {
    // The guard re-reads a few calibration batches: enough to rank layers,
    // few enough that one CPU pass per returned layer stays affordable.
    Calibrator* cal = c.calibration.calibrator;
    if (!cal) throw_usage("the INT8 guard (--int8-guard) measures error on calibration data: give a calibrator (--calib DIR)");
    if (!cal->rewind()) throw_usage("the INT8 guard re-reads the calibration batches, but this calibrator cannot rewind");
    std::vector<quant::Batch> batches;
    for (quant::Batch b; batches.size() < 8 && cal->next_batch(b); b.clear()) batches.push_back(b);
    const quant::GuardResult gr = quant::run_int8_guard(g, scales, o, batches, c.int8_guard_bound);
    for (const std::string& l : gr.returned) {
      o.keep_float.insert(l);
      o.keep_reason[l] = "returned to float by the INT8 guard";
    }
    g.metadata["int8_guard"] = quant::describe(gr, c.int8_guard_bound);
    log_message(gr.met ? Severity::kInfo : Severity::kWarning, "int8 guard: " + g.metadata["int8_guard"]);
  }
  std::map<std::string, std::string> timed;
#ifdef KILN_WITH_CUDA
  if (c.device == Device::kCuda) {
    // Time INT8 against float per layer on copies and choose over the whole
    // network (cuda_build.h), then reassign without the layers float wins.
    const cuda_build::Options co = cuda_options(c);
    const std::set<std::string> forced(c.int8_layers.begin(), c.int8_layers.end());
    size_t returned = 0;
    auto trial = clone_graph(g);
    if (quant::assign_int8(*trial, scales, o).quantized > 0) {
      for (const std::string& l : cuda_build::int8_slower_layers(*trial, g, co, forced, &timed)) {
        o.keep_float.insert(l);
        o.keep_reason[l] = "the network is faster with it in float on this GPU";
        ++returned;
      }
    }
    log_message(Severity::kInfo, "int8: " + std::to_string(returned) +
                                     " conv layer(s) kept float (the network is faster with them in float)");
  }
#endif
  for (auto& [layer, text] : timed) {
    const bool forced_int8 = std::count(c.int8_layers.begin(), c.int8_layers.end(), "*") ||
                             std::count(c.int8_layers.begin(), c.int8_layers.end(), layer);
    if (forced_int8 && text.size() > 7 && text.compare(text.size() - 7, 7, ": float") == 0)
      text += "; INT8 by request";
    g.metadata["int8_timing/" + layer] = text;
  }
  const quant::Int8Assignment r = quant::assign_int8(g, scales, o);
  g.metadata["int8"] = std::to_string(r.quantized) + " conv layers INT8, " + std::to_string(r.int8_pools) +
                       " pools INT8, " + std::to_string(r.reformats) + " quantize layers; scales from " + source;
  std::string kept;
  for (const std::string& k : r.kept_float) kept += k + "\n";
  g.metadata["int8_kept_float"] = kept;
  g.metadata["reformats"] = std::to_string(r.reformats);
  log_message(Severity::kInfo, "int8: " + g.metadata["int8"]);
}

}  // namespace kiln
