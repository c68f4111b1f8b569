// Builder::build: copy the network's graph, optimize it, lower every node to
// a kernel (which checks at build time that kiln can run it) and write the plan.
#include "backends/cpu/kernel.h"
#include "builder/clone.h"
#include "builder/network.h"
#include "builder/prune.h"
#include "engine/logging.h"
#include "engine/plan.h"
#include "engine/summary.h"
#include "builder/optimize.h"

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

}  // namespace

Builder::Builder(BuilderConfig config) : config_(config) {}

std::vector<uint8_t> Builder::build(const Network& network) const {
  if (!network.graph) throw_usage("Builder::build: the network holds no graph");
  if (config_.device == Device::kCuda) {
#ifdef KILN_WITH_CUDA
    throw_unsupported("CUDA backend not implemented yet");
#else
    throw_unsupported("this kiln was built without the CUDA backend");
#endif
  }
  auto g = clone_graph(*network.graph);
  prune_graph(*g);
  const NetworkSummary before = summarize_graph(*g);
  g->metadata["layers_before"] = std::to_string(before.layers.size());
  g->metadata["launches_before"] = std::to_string(before.launches);
  if (config_.optimize) {
    std::string notes;
    for (const auto& r : optimize_graph(*g))
      for (const auto& note : r.notes) notes += r.pass + ": " + note + "\n";
    g->metadata["pass_notes"] = notes;
  }
  prune_graph(*g);
  lower_to_cpu(*g);
  auto plan = plan::write_plan(*g, "cpu");
  log_message(Severity::kInfo, "built " + std::to_string(g->nodes().size()) + " layers from " + network.source +
                                   " (" + std::to_string(plan.size()) + " bytes)");
  return plan;
}

}  // namespace kiln
