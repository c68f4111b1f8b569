// kiln build MODEL.onnx -o ENGINE.plan [--device cpu|cuda] [--fp16] [--fp16-layer NAME|'*' ...] [--fp32-layer NAME ...]
//       [--timing-cache FILE] [--batch N | --min-batch N --opt-batch N --max-batch N] [--no-opt]
//       [--report BUILD.html] [--plugins LIB.so ...]
//       [--int8 [--calib DIR] [--calib-method M] [--calib-cache FILE] [--keep-fp16 NAME ...] [--int8-layer NAME ...] [--int8-guard]]
// kiln build --from-plan OTHER.plan -o NEW.plan --device cuda   (re-tune for this GPU)
//
// --min-batch/--opt-batch/--max-batch build one plan for every batch in
// [min, max] (kiln::BatchProfile): a specialization per batch of
// kiln::profile_batches(), weights stored once. With --int8 --calib, the
// calibration batches are made at the opt batch.
#include <chrono>
#include <cstdio>

#include "calib_source.h"
#include "cli.h"

namespace kiln::cli {

namespace {
struct BuildArgs {
  std::vector<std::string> plugins, fp32_layers, fp16_layers, keep_float, int8_layers, input_shapes;
  std::string model, from_plan, output, device = "cpu", timing_cache, report;
  int batch = 0, min_batch = 0, opt_batch = 0, max_batch = 0;
  bool no_opt = false, fp16 = false, int8 = false, int8_guard = false;
  double guard_bound = 0.02;
  CalibArgs calib;
};

int run_build(const BuildArgs& a, const std::string& command_line) {
  load_plugins(a.plugins);
  if (a.model.empty() == a.from_plan.empty())
    throw_usage("give either a model file or --from-plan PLAN, not both");
  if ((a.fp16 || !a.fp32_layers.empty() || !a.fp16_layers.empty() || !a.timing_cache.empty()) && a.device != "cuda")
    throw_usage("--fp16, --fp16-layer, --fp32-layer and --timing-cache apply to GPU builds: add --device cuda");
  if (!a.fp16_layers.empty() && !a.fp16) throw_usage("--fp16-layer forces layers to FP16: add --fp16");
  const bool calib_given = !a.calib.dir.empty() || !a.calib.cache.empty();
  if (!a.int8 && (calib_given || !a.keep_float.empty() || !a.int8_layers.empty() || a.int8_guard))
    throw_usage("--calib, --calib-cache, --keep-fp16, --int8-layer and --int8-guard apply to INT8 builds: add --int8");
  if (!a.input_shapes.empty() && !a.from_plan.empty())
    throw_usage("--from-plan re-tunes a plan at the shapes it was built with: drop --input-shape");
  if (a.int8 && !a.from_plan.empty())
    throw_usage("--int8 quantizes while building from a model; a plan keeps the precisions it was built with");
  const int profile_flags = (a.min_batch > 0) + (a.opt_batch > 0) + (a.max_batch > 0);
  const bool profile = profile_flags == 3;
  if (profile_flags == 1 || profile_flags == 2)
    throw_usage("--min-batch, --opt-batch and --max-batch go together: give all three");
  if (profile && a.batch)
    throw_usage("--batch fixes one batch and --min-batch/--opt-batch/--max-batch build a range: give one or the other");
  if (profile && !a.from_plan.empty())
    throw_usage("--from-plan re-tunes a plan as it was built, its batch profile included: drop "
                "--min-batch/--opt-batch/--max-batch");
  if (profile && !(a.min_batch <= a.opt_batch && a.opt_batch <= a.max_batch))
    throw_usage("--min-batch " + std::to_string(a.min_batch) + " --opt-batch " + std::to_string(a.opt_batch) +
                " --max-batch " + std::to_string(a.max_batch) + ": they need min <= opt <= max");
  const BatchProfile batch_profile{a.min_batch, a.opt_batch, a.max_batch};
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
    popts.batch = profile ? a.opt_batch : a.batch;
    popts.input_shapes = parse_input_shapes(a.input_shapes);
    // Profiles: the network at the opt batch, for the report and for making
    // calibration batches (the build parses each batch itself).
    NetworkPtr net = parse_onnx(a.model, popts);
    if (!a.report.empty()) imported = summarize(*net);
    CalibSetup calib;
    if (a.int8) {
      cfg.int8 = true;
      cfg.keep_float_layers = a.keep_float;
      cfg.int8_layers = a.int8_layers;
      cfg.int8_guard = a.int8_guard;
      cfg.int8_guard_bound = a.guard_bound;
      // Without --calib/--calib-cache the model must carry its own Q/DQ scales.
      if (calib_given) {
        calib = make_calibration(a.calib, *net);
        cfg.calibration = calib.config;
      }
    }
    if (profile) {
      net.reset();  // each specialization parses its own copy
      ParseOptions shapes;  // the batch is each specialization's
      shapes.input_shapes = popts.input_shapes;
      plan = Builder(cfg).build_profile(a.model, shapes, batch_profile);
    } else {
      plan = Builder(cfg).build(*net);
    }
  }
  write_file_atomic(a.output, plan);
  double ms = ms_since(start);
  // Loading the plan back checks that it round-trips and gives the layer
  // count after optimization.
  auto engine = Runtime().deserialize(plan, a.output);
  std::printf("built %s: %zu layers, %s, %.1f ms\n", a.output.c_str(), engine->summary().layers.size(),
              format_bytes(int64_t(plan.size())).c_str(), ms);
  const BatchProfile built_profile = engine->profile();
  if (built_profile.max > 0) {
    std::string list;
    for (int b : profile_batches(built_profile)) list += (list.empty() ? "" : ", ") + std::to_string(b);
    std::printf("batch profile: min %d, opt %d, max %d (specializations at batch %s)\n", built_profile.min,
                built_profile.opt, built_profile.max, list.c_str());
  }
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
  app->add_option("--min-batch", args->min_batch, "dynamic batch: smallest batch the plan runs (with --opt/--max-batch)")
      ->check(CLI::PositiveNumber);
  app->add_option("--opt-batch", args->opt_batch, "dynamic batch: the batch tuned for best speed")
      ->check(CLI::PositiveNumber);
  app->add_option("--max-batch", args->max_batch, "dynamic batch: largest batch the plan runs")
      ->check(CLI::PositiveNumber);
  app->add_flag("--no-opt", args->no_opt, "skip graph optimization passes");
  app->add_option("--report", args->report, "also write an HTML page replaying this build (see `kiln report`)")
      ->type_name("FILE.html");
  app->add_flag("--int8", args->int8,
                "run Conv layers in INT8 where they have scales (from --calib/--calib-cache, or the model's Q/DQ pairs)");
  add_calib_options(app, args->calib);
  app->add_option("--int8-layer", args->int8_layers,
                  "INT8 on the GPU: run this layer in INT8 even where float timed faster (repeatable; '*' = all)")
      ->type_name("NAME");
  app->add_option("--keep-fp16", args->keep_float, "INT8: keep this layer in FP16/FP32 (repeatable)")
      ->type_name("NAME");
  app->add_flag("--int8-guard", args->int8_guard,
                "INT8: return the layers that add most error to float until the output error is under the bound");
  app->add_option("--int8-guard-bound", args->guard_bound, "INT8 guard: relative L2 output error bound")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_input_shape_option(app, args->input_shapes);
  add_plugins_option(app, args->plugins);
  return {app, [args] {
            // The page shows what made it; quoting is only for display.
            std::string cmd = "kiln build " + (args->model.empty() ? "--from-plan " + args->from_plan : args->model) +
                              " -o " + args->output + " --device " + args->device;
            if (args->fp16) cmd += " --fp16";
            for (auto& l : args->fp16_layers) cmd += " --fp16-layer " + l;
            for (auto& l : args->fp32_layers) cmd += " --fp32-layer " + l;
            if (args->batch) cmd += " --batch " + std::to_string(args->batch);
            for (auto& s : args->input_shapes) cmd += " --input-shape " + s;
            if (args->min_batch) cmd += " --min-batch " + std::to_string(args->min_batch);
            if (args->opt_batch) cmd += " --opt-batch " + std::to_string(args->opt_batch);
            if (args->max_batch) cmd += " --max-batch " + std::to_string(args->max_batch);
            if (args->no_opt) cmd += " --no-opt";
            if (args->int8) cmd += " --int8";
            if (!args->calib.dir.empty()) cmd += " --calib " + args->calib.dir + " --calib-method " + args->calib.method;
            if (!args->calib.cache.empty()) cmd += " --calib-cache " + args->calib.cache;
            for (auto& l : args->keep_float) cmd += " --keep-fp16 " + l;
            for (auto& l : args->int8_layers) cmd += " --int8-layer " + l;
            if (args->int8_guard) cmd += " --int8-guard";
            cmd += " --report " + args->report;
            return run_build(*args, cmd);
          }};
}

}  // namespace kiln::cli
