// kiln build MODEL.onnx -o ENGINE.plan [--device cpu|cuda] [--fp16] [--fp16-layer NAME|'*' ...] [--fp32-layer NAME ...]
//       [--timing-cache FILE] [--batch N] [--no-opt] [--report BUILD.html] [--plugins LIB.so ...]
// kiln build --from-plan OTHER.plan -o NEW.plan --device cuda   (re-tune for this GPU)
#include <chrono>
#include <cstdio>

#include "cli.h"

namespace kiln::cli {

namespace {
struct BuildArgs {
  std::vector<std::string> plugins, fp32_layers, fp16_layers;
  std::string model, from_plan, output, device = "cpu", timing_cache, report;
  int batch = 0;
  bool no_opt = false, fp16 = false;
};

int run_build(const BuildArgs& a, const std::string& command_line) {
  load_plugins(a.plugins);
  if (a.model.empty() == a.from_plan.empty())
    throw_usage("give either a model file or --from-plan PLAN, not both");
  if ((a.fp16 || !a.fp32_layers.empty() || !a.fp16_layers.empty() || !a.timing_cache.empty()) && a.device != "cuda")
    throw_usage("--fp16, --fp16-layer, --fp32-layer and --timing-cache apply to GPU builds: add --device cuda");
  if (!a.fp16_layers.empty() && !a.fp16) throw_usage("--fp16-layer forces layers to FP16: add --fp16");
  auto start = std::chrono::steady_clock::now();
  BuilderConfig cfg;
  cfg.device = a.device == "cuda" ? Device::kCuda : Device::kCpu;
  cfg.optimize = !a.no_opt;
  cfg.fp16 = a.fp16;
  cfg.fp32_layers = a.fp32_layers;
  cfg.fp16_layers = a.fp16_layers;
  cfg.timing_cache = a.timing_cache;
  std::vector<uint8_t> plan;
  NetworkSummary imported;  // for --report: the graph as the parser produced it
  if (!a.from_plan.empty()) {
    if (a.device != "cuda") throw_usage("--from-plan re-tunes a plan for this GPU: add --device cuda");
    plan = Builder(cfg).rebuild(read_file(a.from_plan), a.from_plan);
  } else {
    ParseOptions popts;
    popts.batch = a.batch;
    NetworkPtr net = parse_onnx(a.model, popts);
    if (!a.report.empty()) imported = summarize(*net);
    plan = Builder(cfg).build(*net);
  }
  write_file_atomic(a.output, plan);
  double ms = ms_since(start);
  // Loading the plan back checks that it round-trips and gives the layer
  // count after optimization.
  auto engine = Runtime().deserialize(plan, a.output);
  std::printf("built %s: %zu layers, %s, %.1f ms\n", a.output.c_str(), engine->summary().layers.size(),
              format_bytes(int64_t(plan.size())).c_str(), ms);
  if (!a.report.empty()) {
    ReportSource src;
    src.plan = std::move(plan);
    src.plan_path = a.output;
    if (a.from_plan.empty()) src.imported = &imported;
    src.command = command_line;
    write_report(src, a.report);
    std::printf("wrote %s\n", a.report.c_str());
  }
  return 0;
}
}  // namespace

Command add_build_command(CLI::App& root) {
  auto args = std::make_shared<BuildArgs>();
  CLI::App* app = root.add_subcommand("build", "Build an engine plan from an ONNX model");
  app->add_option("model", args->model, "ONNX model file");
  app->add_option("--from-plan", args->from_plan, "re-tune this plan for this GPU instead of reading a model");
  app->add_option("-o,--output", args->output, "plan file to write")->required();
  app->add_option("--device", args->device, "target device")->check(CLI::IsMember({"cpu", "cuda"}));
  app->add_flag("--fp16", args->fp16, "GPU: run layers in FP16 where an FP16 kernel exists and is faster");
  app->add_option("--fp16-layer", args->fp16_layers, "GPU: run this layer in FP16 even if slower ('*': all; repeatable)");
  app->add_option("--fp32-layer", args->fp32_layers, "GPU: keep this layer in FP32 (repeatable)");
  app->add_option("--timing-cache", args->timing_cache, "GPU: tactic timing cache file to read and update");
  app->add_option("--batch", args->batch, "value for a symbolic batch dimension")->check(CLI::PositiveNumber);
  app->add_flag("--no-opt", args->no_opt, "skip graph optimization passes");
  app->add_option("--report", args->report, "also write an HTML page replaying this build (see `kiln report`)")
      ->type_name("FILE.html");
  add_plugins_option(app, args->plugins);
  return {app, [args] {
            // The page shows what made it; quoting is only for display.
            std::string cmd = "kiln build " + (args->model.empty() ? "--from-plan " + args->from_plan : args->model) +
                              " -o " + args->output + " --device " + args->device;
            if (args->fp16) cmd += " --fp16";
            for (auto& l : args->fp16_layers) cmd += " --fp16-layer " + l;
            for (auto& l : args->fp32_layers) cmd += " --fp32-layer " + l;
            if (args->batch) cmd += " --batch " + std::to_string(args->batch);
            if (args->no_opt) cmd += " --no-opt";
            cmd += " --report " + args->report;
            return run_build(*args, cmd);
          }};
}

}  // namespace kiln::cli
