// kiln build MODEL.onnx -o ENGINE.plan [--device cpu|cuda] [--batch N] [--no-opt] [--plugins LIB.so ...]
#include <chrono>
#include <cstdio>

#include "cli.h"

namespace kiln::cli {

namespace {
struct BuildArgs {
  std::vector<std::string> plugins;
  std::string model, output, device = "cpu";
  int batch = 0;
  bool no_opt = false;
};

int run_build(const BuildArgs& a) {
  load_plugins(a.plugins);
  auto start = std::chrono::steady_clock::now();
  ParseOptions popts;
  popts.batch = a.batch;
  NetworkPtr net = parse_onnx(a.model, popts);
  BuilderConfig cfg;
  cfg.device = a.device == "cuda" ? Device::kCuda : Device::kCpu;
  cfg.optimize = !a.no_opt;
  std::vector<uint8_t> plan = Builder(cfg).build(*net);
  write_file_atomic(a.output, plan);
  double ms = ms_since(start);
  // Loading the plan back checks that it round-trips and gives the layer
  // count after optimization.
  auto engine = Runtime().deserialize(plan, a.output);
  std::printf("built %s: %zu layers, %s, %.1f ms\n", a.output.c_str(), engine->summary().layers.size(),
              format_bytes(int64_t(plan.size())).c_str(), ms);
  return 0;
}
}  // namespace

Command add_build_command(CLI::App& root) {
  auto args = std::make_shared<BuildArgs>();
  CLI::App* app = root.add_subcommand("build", "Build an engine plan from an ONNX model");
  app->add_option("model", args->model, "ONNX model file")->required();
  app->add_option("-o,--output", args->output, "plan file to write")->required();
  app->add_option("--device", args->device, "target device")->check(CLI::IsMember({"cpu", "cuda"}));
  app->add_option("--batch", args->batch, "value for a symbolic batch dimension")->check(CLI::PositiveNumber);
  app->add_flag("--no-opt", args->no_opt, "skip graph optimization passes");
  add_plugins_option(app, args->plugins);
  return {app, [args] { return run_build(*args); }};
}

}  // namespace kiln::cli
