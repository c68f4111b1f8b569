// kiln compare MODEL.onnx ENGINE.plan [--input NAME=FILE.npy ...] [--random-inputs SEED] [--top N]
//              [--json FILE] [--batch N] [--plugins LIB.so ...]
//
// Where an INT8 / FP16 engine loses accuracy: runs the model in FP32 on
// kiln's CPU engine and the plan on its own device, on the same inputs, and
// prints the tensors at the plan's layer boundaries worst first (lowest
// cosine similarity), then the network outputs. --json writes every tensor.
// Random inputs are those `kiln run --random-inputs SEED` makes.
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "batch_inputs.h"
#include "cli.h"
#include "kiln/compare.h"

namespace kiln::cli {

namespace {
struct CompareArgs {
  std::vector<std::string> plugins, inputs;
  std::string model, plan, json;
  uint64_t seed = 0;
  int top = 20, batch = 0;
  CLI::Option* seed_opt = nullptr;
  CLI::Option* batch_opt = nullptr;
};

// The plan's inputs without loading it for its device: enough for
// choose_batch and gather_inputs_at, which read inputs() and profile().
class PlanInputs : public Engine {
 public:
  explicit PlanInputs(NetworkSummary s, std::string device) : s_(std::move(s)), device_(std::move(device)) {}
  const std::vector<TensorInfo>& inputs() const override { return s_.inputs; }
  const std::vector<TensorInfo>& outputs() const override { return s_.outputs; }
  NetworkSummary summary() const override { return s_; }
  std::string device() const override { return device_; }
  BatchProfile profile() const override { return s_.profile; }
  std::unique_ptr<ExecutionContext> create_context() const override {
    throw_internal("compare: the plan's input list cannot run");
  }

 private:
  NetworkSummary s_;
  std::string device_;
};

// Long names keep their start and end: "backbone/stage3/...conv2/output".
std::string clip(const std::string& s, size_t width) {
  if (s.size() <= width) return s;
  const size_t head = (width - 3) / 2, tail = width - 3 - head;
  return s.substr(0, head) + "..." + s.substr(s.size() - tail);
}

std::string num(double v, const char* fmt) {
  if (std::isnan(v)) return "nan";
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

nlohmann::json to_json(const TensorError& t) {
  auto val = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"tensor", t.tensor},     {"layer", t.layer},           {"op_type", t.op_type},
          {"precision", t.precision}, {"shape", t.shape},         {"network_output", t.network_output},
          {"cosine", val(t.cosine)}, {"max_abs", val(t.max_abs)}, {"max_rel", val(t.max_rel)},
          {"ref_max", val(t.ref_max)}};
}

void print_table(const std::vector<TensorError>& rows, bool ranked) {
  constexpr size_t kMaxName = 44;
  size_t wt = 6, wl = 5, wo = 2;
  for (const TensorError& t : rows) {
    wt = std::max(wt, std::min(t.tensor.size(), kMaxName));
    wl = std::max(wl, std::min(t.layer.size(), kMaxName));
    wo = std::max(wo, t.op_type.size());
  }
  if (ranked) std::printf("%4s  ", "#");
  std::printf("%-*s  %-*s  %-*s  %-5s  %10s  %10s  %10s\n", int(wt), "tensor", int(wl), "layer", int(wo), "op", "prec",
              "cosine", "max abs", "max rel");
  for (size_t k = 0; k < rows.size(); ++k) {
    const TensorError& t = rows[k];
    if (ranked) std::printf("%4zu  ", k + 1);
    std::printf("%-*s  %-*s  %-*s  %-5s  %10s  %10s  %10s\n", int(wt), clip(t.tensor, kMaxName).c_str(), int(wl),
                clip(t.layer, kMaxName).c_str(), int(wo), t.op_type.c_str(), t.precision.c_str(),
                num(t.cosine, "%.6f").c_str(), num(t.max_abs, "%.4g").c_str(), num(t.max_rel, "%.4g").c_str());
  }
}

int run_compare(const CompareArgs& a) {
  load_plugins(a.plugins);
  if (a.top < 0) throw_usage("--top takes a count >= 0 (0: every tensor), got " + std::to_string(a.top));
  if (a.batch_opt->count() && a.batch < 1) throw_usage("--batch must be at least 1, got " + std::to_string(a.batch));
  const std::vector<uint8_t> plan = read_file(a.plan);
  std::string device;
  NetworkSummary summary = Runtime().summarize(plan, a.plan, &device);
  const PlanInputs plan_inputs(std::move(summary), device);
  const int batch = choose_batch(plan_inputs, a.batch);
  std::map<std::string, HostTensor> inputs =
      gather_inputs_at(plan_inputs, a.inputs, a.seed_opt->count() > 0, a.seed, batch);

  // The model at the batch the inputs have (files bring their own). A model
  // with other symbolic dimensions parses at the inputs' shapes.
  ParseOptions popts;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorInfo& t : plan_inputs.inputs()) {
    auto it = inputs.find(t.name);
    if (it == inputs.end()) continue;
    shapes[t.name] = it->second.shape;
    if (t.batch_axis >= 0 && !popts.batch && int(it->second.shape.size()) > t.batch_axis)
      popts.batch = int(it->second.shape[size_t(t.batch_axis)]);
  }
  NetworkPtr net;
  try {
    net = parse_onnx(a.model, popts);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kUnsupported) throw;
    popts.input_shapes = shapes;
    net = parse_onnx(a.model, popts);
  }
  const LayerComparison r = compare_layers(*net, plan, inputs, a.plan);

  const std::string batch_text = r.batch > 0 ? ", batch " + std::to_string(r.batch) : "";
  std::printf("%s (FP32, kiln CPU) vs %s (%s%s): %zu tensors compared, %zu plan tensors without an FP32 "
              "counterpart skipped\n",
              a.model.c_str(), a.plan.c_str(), r.device.c_str(), batch_text.c_str(), r.tensors.size(),
              r.skipped.size());
  for (const std::string& m : r.mismatched) std::printf("not compared (shapes differ): %s\n", m.c_str());
  const size_t shown = a.top == 0 ? r.tensors.size() : std::min(r.tensors.size(), size_t(a.top));
  if (shown) {
    std::printf("\nworst %zu of %zu (lowest cosine similarity first):\n", shown, r.tensors.size());
    print_table(std::vector<TensorError>(r.tensors.begin(), r.tensors.begin() + long(shown)), true);
  }
  if (!r.outputs.empty()) {
    std::printf("\nnetwork outputs:\n");
    print_table(r.outputs, false);
  }

  if (!a.json.empty()) {
    nlohmann::json j = {{"model", a.model}, {"plan", a.plan}, {"device", r.device}, {"batch", r.batch}};
    j["tensors"] = nlohmann::json::array();
    for (const TensorError& t : r.tensors) j["tensors"].push_back(to_json(t));
    j["outputs"] = nlohmann::json::array();
    for (const TensorError& t : r.outputs) j["outputs"].push_back(to_json(t));
    j["skipped"] = r.skipped;
    j["mismatched"] = r.mismatched;
    const std::string text = j.dump(1) + "\n";
    write_file_atomic(a.json, std::vector<uint8_t>(text.begin(), text.end()));
    std::printf("\nwrote %s\n", a.json.c_str());
  }
  return 0;
}
}  // namespace

Command add_compare_command(CLI::App& root) {
  auto args = std::make_shared<CompareArgs>();
  CLI::App* app = root.add_subcommand(
      "compare", "Compare an engine's tensors, layer by layer, with the model run in FP32 (find where INT8/FP16 "
                 "loses accuracy)");
  app->add_option("model", args->model, "the ONNX model the plan was built from")->required();
  app->add_option("plan", args->plan, "plan file written by `kiln build`")->required();
  app->add_option("--input", args->inputs, "network input from a .npy file (repeatable)")->type_name("NAME=FILE.npy")
      ->allow_extra_args(false);
  args->seed_opt = app->add_option("--random-inputs", args->seed, "fill inputs not given with --input randomly")
                       ->type_name("SEED");
  app->add_option("--top", args->top, "tensors to print, worst first (0: all)")->capture_default_str();
  app->add_option("--json", args->json, "write every tensor's errors to this file")->type_name("FILE");
  args->batch_opt = app->add_option("--batch", args->batch, "batch-profile plans: the batch to compare (default: opt)")
                        ->type_name("N");
  add_plugins_option(app, args->plugins);
  return {app, [args] { return run_compare(*args); }};
}

}  // namespace kiln::cli
