#include "engine/summary.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include <set>

#include "engine/row_counts.h"

namespace kiln {

TensorInfo tensor_info(const ir::Value& v) {
  TensorInfo t;
  t.name = v.name;
  t.dtype = v.dtype;
  t.shape = v.dims;
  t.batch_axis = v.batch_axis;
  return t;
}

namespace {
// What a layer that absorbed other nodes has become, for `kiln inspect`.
std::string fusion_kind(const ir::Node& n) {
  if (n.fused.size() < 2) return "";
  const bool act = n.has("activation");
  const bool residual = n.inputs.size() > 3 && n.inputs[3];
  if (n.op_type == "Conv") {
    if (act) return residual ? "CBR+residual" : "CBR";
    return residual ? "Conv+residual" : "Conv (folded)";
  }
  if (n.op_type == "Gemm") return act ? "Gemm+activation" : "Gemm (folded)";
  return n.op_type;
}

int64_t metadata_int(const ir::Graph& g, const char* key) {
  auto it = g.metadata.find(key);
  if (it == g.metadata.end()) return -1;
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    return -1;  // metadata is informational; a bad entry is not fatal
  }
}
}  // namespace

namespace {
std::string fmt_scale(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", double(v));
  return buf;
}

// The scales an INT8 layer quantizes with, for inspect and the report.
std::string int8_scales(const ir::Node& n) {
  if (n.domain != "kiln") return "";
  if (n.op_type == "Reformat") return n.has("scale") ? "scale " + fmt_scale(n.f("scale", 0)) : "";
  if (n.op_type != "QConv") return "";
  std::string s = "x " + fmt_scale(n.f("x_scale", 0));
  if (n.has("y_scale")) s += ", y " + fmt_scale(n.f("y_scale", 0));
  if (n.has("z_scale")) s += ", z " + fmt_scale(n.f("z_scale", 0));
  const std::vector<float> w = n.floats("w_scales");
  if (!w.empty()) {
    const auto [lo, hi] = std::minmax_element(w.begin(), w.end());
    s += ", w " + std::to_string(w.size()) + " per-channel " + fmt_scale(*lo) + ".." + fmt_scale(*hi);
  }
  return s;
}
}  // namespace

NetworkSummary summarize_graph(const ir::Graph& g, const MemoryPlan* plan) {
  MemoryPlan own;
  if (!plan) {
    own = plan_memory(g, memory_plan_options_from_env());
    plan = &own;
  }
  NetworkSummary s;
  s.activation_bytes = plan->peak_bytes;
  s.launches_before = metadata_int(g, "launches_before");
  s.layers_before = metadata_int(g, "layers_before");
  s.reformats = std::max<int64_t>(metadata_int(g, "reformats"), 0);
  if (auto it = g.metadata.find("precision"); it != g.metadata.end()) s.precision_choice = it->second;
  if (auto it = g.metadata.find("int8"); it != g.metadata.end()) s.int8 = it->second;
  if (auto it = g.metadata.find("int8_guard"); it != g.metadata.end()) s.int8 += "; guard: " + it->second;
  if (auto it = g.metadata.find("pass_notes"); it != g.metadata.end()) {
    size_t start = 0;
    for (size_t end; (end = it->second.find('\n', start)) != std::string::npos; start = end + 1)
      s.pass_notes.push_back(it->second.substr(start, end - start));
  }
  for (const ir::Value* v : g.inputs) s.inputs.push_back(tensor_info(*v));
  s.outputs = RowCounts(g, "<network>").outputs(g);
  std::set<const ir::Value*> weights;
  for (const ir::Value* v : g.outputs)
    if (v->is_constant()) weights.insert(v);
  for (size_t k = 0; k < g.nodes().size(); ++k) {
    const ir::Node& n = *g.nodes()[k];
    LayerInfo l;
    l.name = n.name;
    // Plugin layers show their own op type; their path column already says "plugin".
    l.op_type = n.domain.empty() || n.path == "plugin" ? n.op_type : n.domain + "::" + n.op_type;
    l.path = n.path;
    l.precision = dtype_name(n.precision);
    l.tactic = n.tactic;
    l.fused = n.fused;
    l.fusion = fusion_kind(n);
    for (const ir::Value* v : n.inputs) {
      if (!v) continue;  // omitted optional input
      l.inputs.push_back(tensor_info(*v));
      if (v->is_constant()) weights.insert(v);
    }
    for (const ir::Value* v : n.outputs)
      if (v) l.outputs.push_back(tensor_info(*v));
    // Every layer that runs is one kernel launch on the CPU; expanded layers
    // run as their own sub-layers later and will count those instead.
    // "name=ms;name=error": what the builder timed for this layer.
    if (auto it = g.metadata.find("tactics/" + std::to_string(k)); it != g.metadata.end()) {
      std::stringstream ss(it->second);
      for (std::string item; std::getline(ss, item, ';');) {
        const size_t eq = item.rfind('=');
        if (eq == std::string::npos) continue;
        double ms = -1;
        try {
          ms = std::stod(item.substr(eq + 1));
        } catch (const std::exception&) {
        }
        l.candidates.emplace_back(item.substr(0, eq), ms);
      }
    }
    if (auto it = g.metadata.find("precision/" + n.name); it != g.metadata.end()) l.precision_choice = it->second;
    if (auto it = g.metadata.find("int8_timing/" + n.name); it != g.metadata.end())
      l.precision_choice += (l.precision_choice.empty() ? "" : "; ") + it->second;
    l.int8_scales = int8_scales(n);
    l.elided = !plan->runs(k);
    if (!l.elided) ++s.launches;
    s.layers.push_back(std::move(l));
  }
  for (const ir::Value* v : weights) s.weight_bytes += int64_t(v->constant->nbytes());
  return s;
}

}  // namespace kiln
