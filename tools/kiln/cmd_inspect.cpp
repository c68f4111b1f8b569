// kiln inspect MODEL.onnx|ENGINE.plan [--json]
#include <algorithm>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "cli.h"

namespace kiln::cli {

namespace {
struct InspectArgs {
  std::string target;
  bool json = false;
};

struct Inspected {
  std::string kind, device;  // kind: "plan" or "onnx"; device only for plans
  NetworkSummary summary;
};

Inspected inspect(const std::string& path) {
  std::vector<uint8_t> bytes = read_file(path);
  Inspected r;
  static const char kPlanMagic[] = "KILNPLAN";
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPlanMagic, 8) == 0) {
    auto engine = Runtime().deserialize(bytes, path);
    r.kind = "plan";
    r.device = engine->device();
    r.summary = engine->summary();
  } else {
    r.kind = "onnx";
    r.summary = summarize(*parse_onnx(path, {}));
  }
  return r;
}

nlohmann::ordered_json tensor_json(const TensorInfo& t) {
  return {{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"batch_axis", t.batch_axis}};
}

nlohmann::ordered_json tensors_json(const std::vector<TensorInfo>& ts) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (auto& t : ts) a.push_back(tensor_json(t));
  return a;
}

void print_json(const std::string& path, const Inspected& r) {
  const NetworkSummary& s = r.summary;
  nlohmann::ordered_json j;
  j["source"] = path;
  j["kind"] = r.kind;
  if (r.kind == "plan") j["device"] = r.device;
  j["inputs"] = tensors_json(s.inputs);
  j["outputs"] = tensors_json(s.outputs);
  j["layers"] = nlohmann::ordered_json::array();
  for (const LayerInfo& l : s.layers)
    j["layers"].push_back({{"name", l.name},
                           {"op_type", l.op_type},
                           {"path", l.path},
                           {"precision", l.precision},
                           {"tactic", l.tactic},
                           {"inputs", tensors_json(l.inputs)},
                           {"outputs", tensors_json(l.outputs)},
                           {"fused", l.fused},
                           {"elided", l.elided}});
  j["launches"] = s.launches;
  j["weight_bytes"] = s.weight_bytes;
  j["activation_bytes"] = s.activation_bytes;
  std::printf("%s\n", j.dump(2).c_str());
}

// What an elided layer shows instead of a kernel name.
const char* elided_tactic(const LayerInfo& l) { return l.op_type == "Concat" ? "(in concat)" : "(alias)"; }
std::string shown_tactic(const LayerInfo& l) {
  if (l.elided) return elided_tactic(l);
  return l.tactic.empty() ? "-" : l.tactic;
}

void print_text(const std::string& path, const Inspected& r) {
  const NetworkSummary& s = r.summary;
  std::printf("%s: %s\n", path.c_str(), r.kind == "plan" ? ("kiln plan for " + r.device).c_str() : "ONNX model");
  std::printf("inputs:\n");
  for (auto& t : s.inputs) std::printf("  %s %s%s\n", t.name.c_str(), dtype_name(t.dtype), dims_text(t).c_str());
  std::printf("outputs:\n");
  for (auto& t : s.outputs) std::printf("  %s %s%s\n", t.name.c_str(), dtype_name(t.dtype), dims_text(t).c_str());
  size_t wname = 4, wop = 2, wpath = 4, wtac = 6;
  for (auto& l : s.layers) {
    wname = std::max(wname, l.name.size());
    wop = std::max(wop, l.op_type.size());
    wpath = std::max(wpath, l.path.size());
    wtac = std::max(wtac, shown_tactic(l).size());
  }
  std::printf("layers (%zu):\n", s.layers.size());
  std::printf("  %-*s  %-*s  %-*s  %-9s  %-*s  %s\n", int(wname), "name", int(wop), "op", int(wpath), "path",
              "precision", int(wtac), "tactic", "outputs");
  for (auto& l : s.layers) {
    std::string outs;
    for (auto& t : l.outputs) outs += (outs.empty() ? "" : " ") + std::string(dtype_name(t.dtype)) + dims_text(t);
    std::printf("  %-*s  %-*s  %-*s  %-9s  %-*s  %s\n", int(wname), l.name.c_str(), int(wop), l.op_type.c_str(),
                int(wpath), l.path.c_str(), l.precision.c_str(), int(wtac), shown_tactic(l).c_str(), outs.c_str());
  }
  const size_t elided = size_t(std::count_if(s.layers.begin(), s.layers.end(), [](auto& l) { return l.elided; }));
  std::printf("kernel launches: %lld (%zu layers elided: views of other tensors' memory)\n",
              static_cast<long long>(s.launches), elided);
  std::printf("peak activation memory: %lld bytes (%s)\n", static_cast<long long>(s.activation_bytes),
              format_bytes(s.activation_bytes).c_str());
  std::printf("weight bytes: %lld (%s)\n", static_cast<long long>(s.weight_bytes), format_bytes(s.weight_bytes).c_str());
}
}  // namespace

Command add_inspect_command(CLI::App& root) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* app = root.add_subcommand("inspect", "Show the inputs, outputs and layers of a model or plan");
  app->add_option("target", args->target, "ONNX model or kiln plan")->required();
  app->add_flag("--json", args->json, "print the same information as JSON");
  return {app, [args] {
            Inspected r = inspect(args->target);
            if (args->json) print_json(args->target, r);
            else print_text(args->target, r);
            return 0;
          }};
}

}  // namespace kiln::cli
