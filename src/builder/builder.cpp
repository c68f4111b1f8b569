// Builder::build: copy the network's graph, optimize it, lower every node to
// a kernel (which checks at build time that kiln can run it) and write the plan.
#include <cstdlib>
#include <set>

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
#include "builder/build_int8.h"
#include "quant/assign_int8.h"
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
  cuda_build::Options o = cuda_options(c);
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
    std::set<std::string> feeders;
    if (o.fp16)
      for (const std::string& l : cuda_build::plugin_input_layers(g))
        if (!o.fp16_layers.count(l) && !o.fp32_layers.count(l)) feeders.insert(l);
    o.fp32_layers.insert(feeders.begin(), feeders.end());
    if (o.fp16) o.fp32_layers = cuda_build::choose_fp32_layers(g, o);
    for (const std::string& l : feeders)
      g.metadata["precision/" + l] = "fp32: feeds a plugin, which reads FP32 (FP16 rounding would reach it)";
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
