// Builder::build: copy the network's graph, optimize it, lower every node to
// a kernel (which checks at build time that kiln can run it) and write the plan.
#include <cstdlib>

#include "backends/cpu/kernel.h"
#include "builder/build_profiles.h"
#include "builder/clone.h"
#include "builder/network.h"
#include "builder/prune.h"
#include "engine/logging.h"
#include "engine/plan.h"
#include "engine/profile_plan.h"
#include "engine/summary.h"
#include "builder/optimize.h"
#include "quant/assign_int8.h"
#include "quant/collect_stats.h"
#include "quant/int8_guard.h"
#ifdef KILN_WITH_CUDA
#include "backends/cuda/common.h"
#include "builder/cuda/cuda_build.h"
#endif

namespace kiln {

namespace {

// Picks each node's CPU kernel. Creating it validates the node (dtypes,
// attributes) now, so an unsupported model fails at build, not at run.
void lower_to_cpu(ir::Graph& g) {
  auto& kernels = cpu::KernelRegistry::global();
  for (auto& n : g.nodes()) {
    auto kernel = kernels.create(*n);
    n->tactic = kernel->tactic();
  }
}

// Lowers a built graph for the GPU and writes the plan. `assign` is false
// when the graph already has its formats (re-tuning a CUDA plan). In FP16
// builds the layers that stay FP32 are chosen by timing both precisions
// first; one in-memory timing cache serves those rounds and the final one.
std::vector<uint8_t> finish_cuda(ir::Graph& g, const BuilderConfig& c, bool assign) {
#ifdef KILN_WITH_CUDA
  const std::string device = cuda::device_string();  // fails early without a GPU
  if (!c.fp16_layers.empty() && !c.fp16)
    throw_usage("fp16_layers (--fp16-layer) forces layers to FP16: allow FP16 too (fp16, --fp16)");
  cuda_build::Options o;
  o.fp16 = c.fp16;
  o.fp32_layers.insert(c.fp32_layers.begin(), c.fp32_layers.end());
  o.fp16_layers.insert(c.fp16_layers.begin(), c.fp16_layers.end());
  o.timing_cache = c.timing_cache;
  o.cache = cuda_build::open_timing_cache(c.timing_cache);
  auto warn_unknown = [&](const std::vector<std::string>& names, const char* flag) {
    for (const std::string& name : names) {
      if (name == "*" && std::string(flag) == "--fp16-layer") continue;
      bool found = false;
      for (auto& n : g.nodes()) found = found || n->name == name;
      if (!found) log_message(Severity::kWarning, std::string(flag) + " '" + name + "' names no layer of the built graph");
    }
  };
  warn_unknown(c.fp32_layers, "--fp32-layer");
  warn_unknown(c.fp16_layers, "--fp16-layer");
  if (assign) {
    for (auto it = g.metadata.begin(); it != g.metadata.end();)
      it = it->first == "precision" || it->first.rfind("precision/", 0) == 0 ? g.metadata.erase(it) : std::next(it);
    if (o.fp16) o.fp32_layers = cuda_build::choose_fp32_layers(g, o);
    // INT8 builds already counted their quantize layers.
    const int quantize = g.metadata.count("reformats") ? std::atoi(g.metadata.at("reformats").c_str()) : 0;
    g.metadata["reformats"] = std::to_string(quantize + cuda_build::assign_formats(g, o));
  }
  for (auto it = g.metadata.begin(); it != g.metadata.end();)
    it = it->first.rfind("tactics/", 0) == 0 ? g.metadata.erase(it) : std::next(it);
  const auto stats = cuda_build::select_tactics(g, o);
  cuda_build::save_timing_cache(*o.cache);
  log_message(Severity::kInfo, "tactics: " + std::to_string(stats.timed) + " layers timed, " +
                                   std::to_string(stats.cached) + " from the timing cache, " +
                                   std::to_string(stats.single) + " with one candidate");
  return plan::write_plan(g, device);
#else
  (void)g, (void)c, (void)assign;
  throw_unsupported("this kiln was built without the CUDA backend: build with --device cpu");
#endif
}

// INT8 builds: scales from the model's own Q/DQ pairs when it has them,
// else from calibration (or its cache); then eligible layers go INT8.
void apply_int8(ir::Graph& g, const Network& network, const BuilderConfig& c) {
  std::map<std::string, float> scales = quant::recorded_qdq_scales(g);
  std::string source = "the model's QuantizeLinear/DequantizeLinear pairs";
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
  quant::Int8Options o;
  o.keep_float.insert(c.keep_float_layers.begin(), c.keep_float_layers.end());
  for (const std::string& name : c.keep_float_layers) {
    bool found = false;
    for (auto& n : g.nodes()) found = found || n->name == name;
    if (!found) log_message(Severity::kWarning, "--keep-fp16 '" + name + "' names no layer of the built graph");
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
    o.keep_float.insert(gr.returned.begin(), gr.returned.end());
    g.metadata["int8_guard"] = quant::describe(gr, c.int8_guard_bound);
    log_message(gr.met ? Severity::kInfo : Severity::kWarning, "int8 guard: " + g.metadata["int8_guard"]);
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

}  // namespace

Builder::Builder(BuilderConfig config) : config_(config) {}

std::vector<uint8_t> Builder::build(const Network& network) const {
  if (!network.graph) throw_usage("Builder::build: the network holds no graph");
#ifndef KILN_WITH_CUDA
  if (config_.device == Device::kCuda)
    throw_unsupported("this kiln was built without the CUDA backend: build with --device cpu");
#endif
  auto g = clone_graph(*network.graph);
  prune_graph(*g);
  const NetworkSummary before = summarize_graph(*g);
  g->metadata["layers_before"] = std::to_string(before.layers.size());
  g->metadata["launches_before"] = std::to_string(before.launches);
  if (config_.device == Device::kCuda) g->metadata["fp16"] = config_.fp16 ? "1" : "0";
  if (config_.optimize) {
    std::string notes;
    for (const auto& r : optimize_graph(*g))
      for (const auto& note : r.notes) notes += r.pass + ": " + note + "\n";
    g->metadata["pass_notes"] = notes;
  }
  prune_graph(*g);
  if (config_.int8) {
    apply_int8(*g, network, config_);
  } else if (!quant::recorded_qdq_scales(*g).empty()) {
    log_message(Severity::kInfo, network.source + " carries INT8 Q/DQ scales: build with --int8 (BuilderConfig::int8) "
                                                  "to run those layers in INT8");
  }
  lower_to_cpu(*g);  // validates every layer against the reference kernels
  auto plan = config_.device == Device::kCuda ? finish_cuda(*g, config_, true) : plan::write_plan(*g, "cpu");
  log_message(Severity::kInfo, "built " + std::to_string(g->nodes().size()) + " layers from " + network.source +
                                   " (" + std::to_string(plan.size()) + " bytes)");
  return plan;
}

std::vector<uint8_t> Builder::rebuild(const std::vector<uint8_t>& bytes, const std::string& origin) const {
  if (config_.device != Device::kCuda)
    throw_usage("rebuilding from a plan re-tunes it for this GPU: use --device cuda");
  if (plan::has_profile_magic(bytes.data(), bytes.size())) return rebuild_profile_plan(config_, bytes, origin);
  plan::Header h = plan::read_header(bytes.data(), bytes.size(), origin);
  auto g = plan::decode_graph(bytes.data() + h.payload_offset, h.payload_size, origin, h.payload_offset);
  const bool cuda_plan = h.device.rfind("cuda:", 0) == 0;
  // A CUDA plan keeps its precisions and layouts and gets new tactics; a CPU
  // plan is lowered for the GPU as a fresh build would be.
  if (cuda_plan && config_.fp16 != (g->metadata.count("fp16") && g->metadata.at("fp16") == "1"))
    log_message(Severity::kWarning, "plan " + origin + " keeps the precisions it was built with");
  if (!cuda_plan) g->metadata["fp16"] = config_.fp16 ? "1" : "0";
  auto plan = finish_cuda(*g, config_, !cuda_plan);
  log_message(Severity::kInfo, "re-tuned " + origin + " (built for " + h.device + ")");
  return plan;
}

}  // namespace kiln
