// kiln run ENGINE.plan [--input NAME=FILE.npy ...] [--random-inputs SEED] [--batch N] --outdir DIR
//          [--plugins LIB.so ...]
// --batch: the batch random inputs get on a batch-profile plan (default its
// opt batch); .npy inputs bring their own.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "batch_inputs.h"
#include "cli.h"
#include "npy.h"

namespace kiln::cli {

namespace {
struct RunArgs {
  std::vector<std::string> plugins;
  std::string plan, outdir;
  std::vector<std::string> inputs;
  uint64_t seed = 0;
  int batch = 0;
  CLI::Option* seed_opt = nullptr;
  CLI::Option* batch_opt = nullptr;
};

double element(const HostTensor& t, int64_t i) {
  switch (t.dtype) {
    case DataType::kFloat32: return t.as<float>()[i];
    case DataType::kFloat16: return half_to_float(t.as<uint16_t>()[i]);
    case DataType::kInt8: return t.as<int8_t>()[i];
    case DataType::kUInt8: return t.as<uint8_t>()[i];
    case DataType::kInt32: return t.as<int32_t>()[i];
    case DataType::kInt64: return double(t.as<int64_t>()[i]);
    case DataType::kBool: return t.as<uint8_t>()[i] ? 1 : 0;
  }
  return 0;
}

std::string stats(const HostTensor& t) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
  int64_t count = 0, nans = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v = element(t, i);
    if (std::isnan(v)) { ++nans; continue; }
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    sum += v;
    ++count;
  }
  char buf[160];
  if (!count) std::snprintf(buf, sizeof buf, "(no finite values)");
  else std::snprintf(buf, sizeof buf, "min %.6g max %.6g mean %.6g", lo, hi, sum / double(count));
  std::string s = buf;
  if (nans) s += " nan " + std::to_string(nans);
  return s;
}

// Output names may hold '/', ':' and the like: keep [A-Za-z0-9._-], map the
// rest to '_', and never produce "", "." or "..", or two equal names.
std::string file_stem(const std::string& name, size_t k, std::set<std::string>& taken) {
  std::string s;
  for (char c : name) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-') ? c : '_';
  if (s.empty() || s == "." || s == "..") s = "output_" + std::to_string(k);
  std::string stem = s;
  for (int j = 1; !taken.insert(stem).second; ++j) stem = s + "_" + std::to_string(j);
  return stem;
}

int run_run(const RunArgs& a) {
  load_plugins(a.plugins);
  const bool random = a.seed_opt->count() > 0;
  if (a.batch_opt->count() && a.batch < 1) throw_usage("--batch must be at least 1, got " + std::to_string(a.batch));
  auto engine = Runtime().load(a.plan);
  auto inputs = gather_inputs_at(*engine, a.inputs, random, a.seed, choose_batch(*engine, a.batch));

  auto ctx = engine->create_context();
  auto start = std::chrono::steady_clock::now();
  auto outputs = ctx->run(inputs);
  double ms = ms_since(start);

  std::error_code ec;
  std::filesystem::create_directories(a.outdir, ec);
  if (ec) throw_bad_input("cannot create output directory '" + a.outdir + "': " + ec.message());
  std::set<std::string> taken;
  for (size_t k = 0; k < engine->outputs().size(); ++k) {
    const TensorInfo& info = engine->outputs()[k];
    const HostTensor& t = outputs.at(info.name);
    std::string path = (std::filesystem::path(a.outdir) / (file_stem(info.name, k, taken) + ".npy")).string();
    npy::save(path, t);
    std::printf("%s: %s%s %s -> %s\n", info.name.c_str(), dtype_name(t.dtype), shape_str(t.shape).c_str(),
                stats(t).c_str(), path.c_str());
  }
  std::printf("run time: %.3f ms\n", ms);
  return 0;
}
}  // namespace

Command add_run_command(CLI::App& root) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* app = root.add_subcommand("run", "Run an engine plan once and save its outputs as .npy files");
  app->add_option("plan", args->plan, "plan file written by `kiln build`")->required();
  app->add_option("--input", args->inputs, "engine input from a .npy file (repeatable)")->type_name("NAME=FILE.npy")
      ->allow_extra_args(false);
  args->seed_opt = app->add_option("--random-inputs", args->seed, "fill inputs not given with --input randomly")
                       ->type_name("SEED");
  args->batch_opt = app->add_option("--batch", args->batch, "batch-profile plans: the batch to run (default: opt)")
                        ->type_name("N");
  app->add_option("--outdir", args->outdir, "directory for <output>.npy files (created if needed)")->required();
  add_plugins_option(app, args->plugins);
  return {app, [args] { return run_run(*args); }};
}

}  // namespace kiln::cli
