#include "builder/optimize.h"

#include "backends/cpu/kernel.h"
#include "builder/clone.h"
#include "builder/network.h"
#include "builder/prune.h"
#include "engine/logging.h"
#include "engine/summary.h"

namespace kiln {

std::vector<passes::PassRecord> optimize_graph(ir::Graph& g) {
  cpu::ConstantEvaluator eval;  // folding evaluates constant nodes with the CPU kernels
  auto records = passes::PassManager::standard().run(g, &eval);
  for (const auto& r : records)
    for (const auto& note : r.notes) log_message(Severity::kVerbose, r.pass + ": " + note);
  return records;
}

OptimizationReport optimize_report(const Network& network) {
  if (!network.graph) throw_usage("optimize_report: the network holds no graph");
  OptimizationReport report;
  report.before = summarize_graph(*network.graph);
  auto g = clone_graph(*network.graph);
  for (auto& r : optimize_graph(*g)) report.passes.push_back({r.pass, r.nodes_before, r.nodes_after, r.notes});
  prune_graph(*g);
  report.after = summarize_graph(*g);
  return report;
}

}  // namespace kiln
