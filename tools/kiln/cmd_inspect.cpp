// kiln inspect MODEL.onnx|ENGINE.plan [--json] [--no-opt]
// For a model: the graph as imported and after kiln's passes (layers, fused
// groups, launches before -> after). For a plan: its layers as built, with the
// launch count the unoptimized graph had.
#include <algorithm>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "summary_json.h"

namespace kiln::cli {

namespace {
struct InspectArgs {
  std::string target;
  bool json = false, no_opt = false, tactics = false;
  std::vector<std::string> plugins, input_shapes;
};

struct Inspected {
  std::string kind, device;  // kind: "plan" or "onnx"; device only for plans
  NetworkSummary summary;    // what runs: the optimized graph (or the plan)
  std::unique_ptr<NetworkSummary> before;  // models only: the graph as imported
};

Inspected inspect(const std::string& path, bool no_opt, const std::vector<std::string>& input_shapes) {
  std::vector<uint8_t> bytes = read_file(path);
  Inspected r;
  // Single plans and batch-profile plans.
  const bool plan = bytes.size() >= 8 && (std::memcmp(bytes.data(), "KILNPLAN", 8) == 0 ||
                                          std::memcmp(bytes.data(), "KILNPROF", 8) == 0);
  if (plan) {
    // Reads the plan without creating kernels: a plan for another GPU shows too.
    r.kind = "plan";
    r.summary = Runtime().summarize(bytes, path, &r.device);
  } else {
    r.kind = "onnx";
    ParseOptions popts;
    popts.input_shapes = parse_input_shapes(input_shapes);
    auto net = parse_onnx(path, popts);
    if (no_opt) {
      r.summary = summarize(*net);
    } else {
      OptimizationReport rep = optimize_report(*net);
      r.before = std::make_unique<NetworkSummary>(std::move(rep.before));
      r.summary = std::move(rep.after);
      r.summary.launches_before = r.before->launches;
      r.summary.layers_before = int64_t(r.before->layers.size());
      for (auto& p : rep.passes)
        for (auto& c : p.changes) r.summary.pass_notes.push_back(p.name + ": " + c);
    }
  }
  return r;
}

void print_json(const std::string& path, const Inspected& r) {
  nlohmann::ordered_json j = summary_json(path, r.kind, r.device, r.summary, r.before.get());
  const BatchProfile& p = r.summary.profile;
  if (p.max > 0)
    j["batch_profile"] = {{"min", p.min}, {"opt", p.opt}, {"max", p.max}, {"batches", profile_batches(p)}};
  std::printf("%s\n", j.dump(2).c_str());
}

// What an elided layer shows instead of a kernel name.
const char* elided_tactic(const LayerInfo& l) { return l.op_type == "Concat" ? "(in concat)" : "(alias)"; }
std::string shown_tactic(const LayerInfo& l) {
  if (l.elided) return elided_tactic(l);
  return l.tactic.empty() ? "-" : l.tactic;
}

void print_layers(const char* title, const std::vector<LayerInfo>& layers) {
  size_t wname = 4, wop = 2, wpath = 4, wtac = 6;
  for (auto& l : layers) {
    wname = std::max(wname, l.name.size());
    wop = std::max(wop, l.op_type.size());
    wpath = std::max(wpath, l.path.size());
    wtac = std::max(wtac, shown_tactic(l).size());
  }
  std::printf("%s (%zu):\n", title, layers.size());
  std::printf("  %-*s  %-*s  %-*s  %-9s  %-*s  %s\n", int(wname), "name", int(wop), "op", int(wpath), "path",
              "precision", int(wtac), "tactic", "outputs");
  for (auto& l : layers) {
    std::string outs;
    for (auto& t : l.outputs) outs += (outs.empty() ? "" : " ") + std::string(dtype_name(t.dtype)) + dims_text(t);
    std::printf("  %-*s  %-*s  %-*s  %-9s  %-*s  %s\n", int(wname), l.name.c_str(), int(wop), l.op_type.c_str(),
                int(wpath), l.path.c_str(), l.precision.c_str(), int(wtac), shown_tactic(l).c_str(), outs.c_str());
  }
}

void print_text(const std::string& path, const Inspected& r) {
  const NetworkSummary& s = r.summary;
  std::printf("%s: %s\n", path.c_str(), r.kind == "plan" ? ("kiln plan for " + r.device).c_str() : "ONNX model");
  if (r.summary.profile.max > 0) {
    const BatchProfile& p = r.summary.profile;
    std::string list;
    for (int b : profile_batches(p)) list += (list.empty() ? "" : ", ") + std::to_string(b);
    std::printf("batch profile: min %d, opt %d, max %d (specializations at batch %s; shapes below at max)\n", p.min,
                p.opt, p.max, list.c_str());
  }
  std::printf("inputs:\n");
  for (auto& t : s.inputs) std::printf("  %s %s%s\n", t.name.c_str(), dtype_name(t.dtype), dims_text(t).c_str());
  std::printf("outputs:\n");
  for (auto& t : s.outputs) std::printf("  %s %s%s\n", t.name.c_str(), dtype_name(t.dtype), dims_text(t).c_str());
  if (r.before) print_layers("layers as imported", r.before->layers);
  print_layers(r.before ? "layers after graph passes" : "layers", s.layers);
  auto groups = fused_groups(s);
  if (!groups.empty()) {
    std::printf("fused groups (%zu):\n", groups.size());
    for (auto& g : groups) std::printf("  %s\n", g.c_str());
  }
  const size_t elided = size_t(std::count_if(s.layers.begin(), s.layers.end(), [](auto& l) { return l.elided; }));
  if (s.launches_before >= 0)
    std::printf("kernel launches: %lld -> %lld after graph passes (%zu layers elided: views of other tensors' memory)\n",
                static_cast<long long>(s.launches_before), static_cast<long long>(s.launches), elided);
  else
    std::printf("kernel launches: %lld (%zu layers elided: views of other tensors' memory)\n",
                static_cast<long long>(s.launches), elided);
  std::printf("peak activation memory: %lld bytes (%s)\n", static_cast<long long>(s.activation_bytes),
              format_bytes(s.activation_bytes).c_str());
  std::printf("weight bytes: %lld (%s)\n", static_cast<long long>(s.weight_bytes), format_bytes(s.weight_bytes).c_str());
  if (r.kind == "plan" && (r.device != "cpu" || s.reformats > 0))
    std::printf("reformat layers (precision/layout changes): %lld\n", static_cast<long long>(s.reformats));
  if (!s.precision_choice.empty()) std::printf("precision choice: %s\n", s.precision_choice.c_str());
  if (!s.int8.empty()) std::printf("int8: %s\n", s.int8.c_str());
}

// Every timed candidate per layer, fastest first, the chosen one marked.
void print_tactics(const NetworkSummary& s) {
  std::printf("tactics (median ms per candidate, * = chosen):\n");
  for (auto& l : s.layers) {
    if (l.elided) continue;
    auto c = l.candidates;
    std::sort(c.begin(), c.end(), [](auto& x, auto& y) { return (x.second < 0 ? 1e30 : x.second) < (y.second < 0 ? 1e30 : y.second); });
    std::printf("  %s (%s, %s):", l.name.c_str(), l.op_type.c_str(), l.precision.c_str());
    if (c.empty()) std::printf(" %s (only candidate)", l.tactic.c_str());
    for (auto& [name, ms] : c) {
      if (ms < 0) std::printf("  %s=failed", name.c_str());
      else std::printf("  %s%s=%.4f", name == l.tactic ? "*" : "", name.c_str(), ms);
    }
    if (!l.precision_choice.empty()) std::printf("  [%s]", l.precision_choice.c_str());
    std::printf("\n");
  }
}
}  // namespace

Command add_inspect_command(CLI::App& root) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* app = root.add_subcommand("inspect", "Show the inputs, outputs and layers of a model or plan");
  app->add_option("target", args->target, "ONNX model or kiln plan")->required();
  app->add_flag("--json", args->json, "print the same information as JSON");
  app->add_flag("--no-opt", args->no_opt, "models: show the graph as imported, without graph passes");
  app->add_flag("--tactics", args->tactics, "plans: every tactic timed per layer and the winner");
  add_input_shape_option(app, args->input_shapes);
  add_plugins_option(app, args->plugins);
  return {app, [args] {
            load_plugins(args->plugins);
            Inspected r = inspect(args->target, args->no_opt, args->input_shapes);
            if (args->json) print_json(args->target, r);
            else print_text(args->target, r);
            if (args->tactics && !args->json) print_tactics(r.summary);
            return 0;
          }};
}

}  // namespace kiln::cli
