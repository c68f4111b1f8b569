// JSON views of a NetworkSummary (see summary_json.h).
#include "summary_json.h"

namespace kiln::cli {

nlohmann::ordered_json tensor_json(const TensorInfo& t) {
  return {{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"batch_axis", t.batch_axis}};
}

nlohmann::ordered_json tensors_json(const std::vector<TensorInfo>& ts) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (auto& t : ts) a.push_back(tensor_json(t));
  return a;
}

namespace {
nlohmann::ordered_json candidates_json(const LayerInfo& l) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (auto& [name, ms] : l.candidates) {
    nlohmann::ordered_json c = {{"tactic", name}};
    if (ms >= 0) c["ms"] = ms;
    else c["error"] = true;
    c["chosen"] = name == l.tactic;
    a.push_back(c);
  }
  return a;
}
}  // namespace

nlohmann::ordered_json layers_json(const std::vector<LayerInfo>& layers) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const LayerInfo& l : layers)
    a.push_back({{"name", l.name},
                 {"op_type", l.op_type},
                 {"path", l.path},
                 {"precision", l.precision},
                 {"tactic", l.tactic},
                 {"inputs", tensors_json(l.inputs)},
                 {"outputs", tensors_json(l.outputs)},
                 {"fused", l.fused},
                 {"fusion", l.fusion},
                 {"elided", l.elided},
                 {"candidates", candidates_json(l)},
                 {"precision_choice", l.precision_choice},
                 {"int8_scales", l.int8_scales}});
  return a;
}

std::vector<std::string> fused_groups(const NetworkSummary& s) {
  std::vector<std::string> out;
  for (const LayerInfo& l : s.layers) {
    if (l.fused.size() < 2) continue;
    std::string g;
    for (auto& f : l.fused) g += (g.empty() ? "" : "+") + f;
    out.push_back(g + " -> " + (l.fusion.empty() ? l.op_type : l.fusion));
  }
  return out;
}

nlohmann::ordered_json summary_json(const std::string& source, const std::string& kind, const std::string& device,
                                    const NetworkSummary& s, const NetworkSummary* before) {
  nlohmann::ordered_json j;
  j["source"] = source;
  j["kind"] = kind;
  if (kind == "plan") j["device"] = device;
  j["inputs"] = tensors_json(s.inputs);
  j["outputs"] = tensors_json(s.outputs);
  j["layers"] = layers_json(s.layers);
  if (before) j["layers_before"] = layers_json(before->layers);
  j["fused_groups"] = fused_groups(s);
  j["passes"] = s.pass_notes;
  j["launches"] = s.launches;
  // Without a record of the unoptimized graph (--no-opt, old plans) before = after.
  j["launches_before"] = s.launches_before >= 0 ? s.launches_before : s.launches;
  j["launches_after"] = s.launches;
  j["weight_bytes"] = s.weight_bytes;
  j["activation_bytes"] = s.activation_bytes;
  j["reformats"] = s.reformats;
  j["int8"] = s.int8;
  j["precision_choice"] = s.precision_choice;
  return j;
}

}  // namespace kiln::cli
