// kiln bench ENGINE.plan [--input NAME=FILE.npy ...] [--batch N] [--warmup N] [--iterations N] [--json]
//            [--profile] [--no-cuda-graph] [--plugins LIB.so ...]
// CPU plans: times whole inferences (ExecutionContext::run, host tensors in
// and out). GPU plans: times inferences on device-resident inputs with CUDA
// events, reports transfers apart, and with --profile each layer's time.
// Batch-profile plans run --batch N (default: the opt batch, as trtexec uses
// the opt shapes), on the GPU through ExecutionContext::set_batch.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "batch_inputs.h"
#include "bench_gpu.h"
#include "cli.h"

namespace kiln::cli {

namespace {
struct BenchArgs {
  std::vector<std::string> plugins;
  std::string plan;
  std::vector<std::string> inputs;
  int warmup = 10, iterations = 100, batch = 0;
  CLI::Option* batch_opt = nullptr;
  bool json = false, profile = false, no_graph = false;
};

double percentile(const std::vector<double>& sorted, double p) {
  size_t k = size_t(p / 100.0 * double(sorted.size() - 1) + 0.5);
  return sorted[std::min(k, sorted.size() - 1)];
}

// What `kiln report` prints under its latency chart.
std::string command_line(const BenchArgs& a) {
  std::string cmd = "kiln bench " + a.plan;
  for (auto& i : a.inputs) cmd += " --input " + i;
  if (a.batch_opt->count()) cmd += " --batch " + std::to_string(a.batch);
  cmd += " --warmup " + std::to_string(a.warmup) + " --iterations " + std::to_string(a.iterations);
  if (a.no_graph) cmd += " --no-cuda-graph";
  return cmd + " --json";
}

int run_bench(const BenchArgs& a) {
  load_plugins(a.plugins);
  if (a.iterations < 1 || a.warmup < 0) throw_usage("--iterations must be >= 1 and --warmup >= 0");
  if (a.batch_opt->count() && a.batch < 1) throw_usage("--batch must be at least 1, got " + std::to_string(a.batch));
  auto engine = Runtime().load(a.plan);
  const int run_batch = choose_batch(*engine, a.batch);
  auto inputs = gather_inputs_at(*engine, a.inputs, /*random=*/true, /*seed=*/0, run_batch);
  auto ctx = engine->create_context();
  const bool gpu = engine->device().rfind("cuda:", 0) == 0;
  if (!gpu && (a.profile || a.no_graph)) throw_usage("--profile and --no-cuda-graph apply to GPU plans");
  const BatchProfile prof = engine->profile();
  // The specialization that runs the batch, as the context picks it; on the
  // GPU it also points device_address / enqueue at that batch.
  const int64_t spec = prof.max > 0 ? ctx->set_batch(run_batch) : 0;
  std::vector<double> ms;
  GpuTimes gt;
  if (gpu) {
    gt = bench_gpu(*engine, *ctx, inputs, prof.max > 0 ? run_batch : 0, a.warmup, a.iterations, !a.no_graph);
    ms = gt.latency_ms;
  } else {
    for (int i = 0; i < a.warmup; ++i) ctx->run(inputs);
    ms.reserve(size_t(a.iterations));
    for (int i = 0; i < a.iterations; ++i) {
      auto start = std::chrono::steady_clock::now();
      ctx->run(inputs);
      ms.push_back(ms_since(start));
    }
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  double mean = 0;
  for (double v : ms) mean += v / double(ms.size());
  int64_t batch = run_batch > 0 ? run_batch : 1;
  const double median = percentile(sorted, 50);
  nlohmann::json j = {{"plan", a.plan},          {"device", engine->device()},
                      {"batch", batch},          {"warmup", a.warmup},
                      {"iterations", a.iterations}, {"min_ms", sorted.front()},
                      {"median_ms", median},     {"mean_ms", mean},
                      {"p90_ms", percentile(sorted, 90)}, {"p99_ms", percentile(sorted, 99)},
                      {"max_ms", sorted.back()}, {"throughput_per_s", double(batch) * 1000.0 / median},
                      {"date", utc_now()},       {"kiln_version", version()},
                      {"command", command_line(a)}};
  std::vector<ExecutionContext::LayerTime> layers;
  if (prof.max > 0)
    j["batch_profile"] = {{"min", prof.min}, {"opt", prof.opt}, {"max", prof.max}, {"specialization", spec}};
  if (gpu) {
    j["cuda_graph"] = !a.no_graph;
    j["throughput_per_s"] = double(batch) * 1000.0 / gt.throughput_ms;
    j["h2d_ms"] = gt.h2d_ms;
    j["d2h_ms"] = gt.d2h_ms;
    if (a.profile) {
      layers = ctx->profile(a.iterations);
      nlohmann::json jl = nlohmann::json::array();
      for (auto& l : layers) jl.push_back({{"name", l.name}, {"op_type", l.op_type}, {"tactic", l.tactic}, {"ms", l.ms}});
      j["layers"] = jl;
    }
  }
  if (a.json) {
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  std::printf("%s on %s, batch %lld, %d iterations after %d warm-up\n", a.plan.c_str(), engine->device().c_str(),
              static_cast<long long>(batch), a.iterations, a.warmup);
  std::printf("latency ms: min %.3f  median %.3f  mean %.3f  p90 %.3f  p99 %.3f  max %.3f\n", sorted.front(), median,
              mean, double(j["p90_ms"]), double(j["p99_ms"]), sorted.back());
  std::printf("throughput: %.1f inferences/s\n", double(j["throughput_per_s"]));
  if (spec && spec != batch)
    std::printf("batch profile [%d, %d]: batch %lld runs on the batch-%lld specialization\n", prof.min, prof.max,
                static_cast<long long>(batch), static_cast<long long>(spec));
  if (gpu) {
    std::printf("device-resident inputs, CUDA graph %s; transfers apart: host-to-device %.3f ms, device-to-host %.3f ms\n",
                a.no_graph ? "off" : "on", gt.h2d_ms, gt.d2h_ms);
    if (!layers.empty()) {
      double total = 0;
      for (auto& l : layers) total += l.ms;
      std::sort(layers.begin(), layers.end(), [](auto& x, auto& y) { return x.ms > y.ms; });
      std::printf("per layer (median of %d, each layer alone in a CUDA graph; sum %.3f ms):\n", a.iterations, total);
      for (auto& l : layers)
        std::printf("  %8.4f ms %5.1f%%  %-24s %-18s %s\n", l.ms, 100.0 * l.ms / total, l.op_type.c_str(),
                    l.tactic.c_str(), l.name.c_str());
    }
  }
  return 0;
}
}  // namespace

Command add_bench_command(CLI::App& root) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* app = root.add_subcommand("bench", "Time an engine plan: latency distribution and throughput");
  app->add_option("plan", args->plan, "plan file written by `kiln build`")->required();
  app->add_option("--input", args->inputs, "engine input from a .npy file (others random)")
      ->type_name("NAME=FILE.npy");
  args->batch_opt = app->add_option("--batch", args->batch, "batch-profile plans: the batch to time (default: opt)")
                        ->type_name("N");
  app->add_option("--warmup", args->warmup, "untimed runs first (default 10)");
  app->add_option("--iterations", args->iterations, "timed runs (default 100)");
  app->add_flag("--json", args->json, "print the results as JSON");
  app->add_flag("--profile", args->profile, "GPU: also time every layer");
  app->add_flag("--no-cuda-graph", args->no_graph, "GPU: launch layer by layer instead of replaying a CUDA graph");
  add_plugins_option(app, args->plugins);
  return {app, [args] { return run_bench(*args); }};
}

}  // namespace kiln::cli
