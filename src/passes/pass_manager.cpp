#include <algorithm>
#include <set>

#include "passes/pass.h"

namespace kiln::passes {

namespace {
bool alive(const ir::Graph& g, const ir::Node* n) {
  for (auto& p : g.nodes())
    if (p.get() == n) return true;
  return false;
}
}  // namespace

bool RewriteRule::run(ir::Graph& g, PassContext& ctx) {
  const auto ops = targets();
  const std::set<std::string> want(ops.begin(), ops.end());
  bool changed = false;
  // Rewrites can enable further matches (a chain of BNs): sweep until quiet.
  for (int sweep = 0; sweep < 8; ++sweep) {
    bool any = false;
    std::vector<ir::Node*> snapshot;
    for (auto& n : g.nodes()) snapshot.push_back(n.get());
    for (ir::Node* n : snapshot) {
      if (!alive(g, n) || !n->domain.empty() || !want.count(n->op_type)) continue;
      if (apply(g, *n, ctx)) any = true;
    }
    if (!any) break;
    changed = true;
  }
  return changed;
}

std::vector<PassRecord> PassManager::run(ir::Graph& g, ir::Evaluator* evaluator) const {
  std::vector<PassRecord> records(passes_.size());
  for (size_t k = 0; k < passes_.size(); ++k) records[k].pass = passes_[k]->name();
  for (int round = 0; round < 4; ++round) {
    bool changed = false;
    for (size_t k = 0; k < passes_.size(); ++k) {
      PassContext ctx;
      ctx.evaluator = evaluator;
      int64_t before = int64_t(g.nodes().size());
      if (!passes_[k]->run(g, ctx)) continue;
      changed = true;
      g.remove_unused_values();
      ir::infer_shapes(g, nullptr);  // passes keep shapes right; this re-checks them
      PassRecord& r = records[k];
      if (r.nodes_before == 0 && r.nodes_after == 0) r.nodes_before = before;
      r.nodes_after = int64_t(g.nodes().size());
      r.notes.insert(r.notes.end(), ctx.notes.begin(), ctx.notes.end());
    }
    if (!changed) break;
  }
  records.erase(std::remove_if(records.begin(), records.end(),
                               [](const PassRecord& r) { return r.notes.empty() && r.nodes_before == r.nodes_after; }),
                records.end());
  return records;
}

PassManager PassManager::standard() {
  PassManager pm;
  pm.add(make_fold_constants());
  pm.add(make_fold_qdq());  // before the fusions a pair left between two ops would block
  pm.add(make_remove_identity());
  pm.add(make_eliminate_common_subexpressions());
  pm.add(make_fold_pad());
  pm.add(make_fold_scale_shift());
  pm.add(make_fold_batchnorm());
  pm.add(make_lower_batchnorm());
  pm.add(make_fuse_conv_add());
  pm.add(make_fuse_conv_activation());
  pm.add(make_cancel_transpose_reshape());
  pm.add(make_fuse_gemm());
  pm.add(make_fuse_elementwise_chain());
  pm.add(make_eliminate_dead_code());
  return pm;
}

}  // namespace kiln::passes
