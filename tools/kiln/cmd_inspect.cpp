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
                           {"fused", l.fused}});
  j["launches"] = s.launches;
  j["weight_bytes"] = s.weight_bytes;
  std::printf("%s\n", j.dump(2).c_str());
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
    wtac = std::max(wtac, l.tactic.size());
  }
  std::printf("layers (%zu):\n", s.layers.size());
  std::printf("  %-*s  %-*s  %-*s  %-9s  %-*s  %s\n", int(wname), "name", int(wop), "op", int(wpath), "path",
              "precision", int(wtac), "tactic", "outputs");
  for (auto& l : s.layers) {
    std::string outs;
    for (auto& t : l.outputs) outs += (outs.empty() ? "" : " ") + std::string(dtype_name(t.dtype)) + dims_text(t);
    std::printf("  %-*s  %-*s  %-*s  %-9s  %-*s  %s\n", int(wname), l.name.c_str(), int(wop), l.op_type.c_str(),
                int(wpath), l.path.c_str(), l.precision.c_str(), int(wtac), l.tactic.empty() ? "-" : l.tactic.c_str(),
                outs.c_str());
  }
  std::printf("kernel launches: %lld\n", static_cast<long long>(s.launches));
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
