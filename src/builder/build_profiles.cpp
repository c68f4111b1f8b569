// Builder::build_profile: one specialization per batch of profile_batches(),
// each parsed at its batch and built by Builder::build (GPU: tactics timed at
// that batch), then written into one profile plan with shared constants.
//
// INT8: the opt batch is built first and calibrates (the calibrator's batches
// have the opt batch); its scales go through a calibration cache (the user's,
// else a temporary file) to the other specializations, which build without a
// calibrator, and the layers the INT8 guard returned to float at opt stay
// float in every specialization.
#include "builder/build_profiles.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>

#include "builder/network.h"
#include "engine/logging.h"
#include "engine/plan.h"
#include "engine/profile_plan.h"
#include "engine/row_counts.h"
#include "engine/summary.h"
#include "ir/graph.h"

namespace kiln {

namespace {

std::string type_str(const TensorInfo& t) { return dtype_name(t.dtype) + shape_str(t.shape); }

struct Signature {
  std::vector<TensorInfo> inputs, outputs;
};

// What a batch profile needs of a graph at batch `b` (the parsed network or a
// built specialization): an input with a batch axis, and outputs that all
// have one with b rows and a fixed row count, since padding rows would
// otherwise show in them.
Signature check_specialization(const ir::Graph& g, int b, const std::string& model) {
  Signature s;
  for (const ir::Value* v : g.inputs) s.inputs.push_back(tensor_info(*v));
  s.outputs = RowCounts(g, model).outputs(g);
  bool batched = false;
  for (const TensorInfo& t : s.inputs) batched = batched || t.batch_axis >= 0;
  if (!batched)
    throw_usage(model + ": the model has no batch dimension (no input has a symbolic leading dimension), so a "
                "batch profile cannot vary it: re-export the model with a dynamic batch, or build without "
                "--min-batch/--opt-batch/--max-batch");
  for (const TensorInfo& t : s.outputs) {
    const std::string fix = ": build a single batch (--batch N) instead";
    if (t.dynamic_rows)
      throw_unsupported(model + ": output '" + t.name + "' has a data-dependent row count; a batch profile pads " +
                        "batches with zero rows, which could add rows to it" + fix);
    if (t.batch_axis < 0 || t.shape[size_t(t.batch_axis)] != b)
      throw_unsupported(model + ": output '" + t.name + "' (" + type_str(t) + " at batch " + std::to_string(b) +
                        ") has no batch axis; a batch profile pads batches with zero rows, which would leak into " +
                        "it" + fix);
  }
  return s;
}

// Tensors of the batch-`b` graph against those at batch `ref_b`: equal but
// for the batch axis.
void check_alike(const std::vector<TensorInfo>& got, int b, const std::vector<TensorInfo>& ref, int ref_b,
                 const char* kind, const std::string& model) {
  if (got.size() != ref.size())
    throw_unsupported(model + " has " + std::to_string(got.size()) + " " + kind + "s at batch " + std::to_string(b) +
                      " but " + std::to_string(ref.size()) + " at batch " + std::to_string(ref_b) +
                      ": a batch profile needs the same network at every batch");
  for (size_t k = 0; k < got.size(); ++k) {
    const TensorInfo& x = got[k];
    const TensorInfo& y = ref[k];
    bool alike = x.name == y.name && x.dtype == y.dtype && x.batch_axis == y.batch_axis && x.shape.size() == y.shape.size();
    for (size_t a = 0; alike && a < x.shape.size(); ++a) alike = int(a) == x.batch_axis || x.shape[a] == y.shape[a];
    if (!alike)
      throw_unsupported(model + ": " + kind + " '" + y.name + "' is " + type_str(x) + " at batch " + std::to_string(b) +
                        " but " + type_str(y) + " at batch " + std::to_string(ref_b) +
                        "; a batch profile needs shapes that change only along the batch axis: build a single "
                        "batch (--batch N) instead");
  }
}

// Layers the opt build kept float by request (--keep-fp16 or the INT8 guard).
std::vector<std::string> kept_float_by_request(const ir::Graph& g) {
  std::vector<std::string> names;
  auto it = g.metadata.find("int8_kept_float");
  if (it == g.metadata.end()) return names;
  // The reasons quant::assign_int8 records (build_int8.cpp); layers the GPU
  // timing returned are timed again per specialization instead.
  static const std::string kSuffixes[] = {": kept float by request", ": returned to float by the INT8 guard"};
  size_t start = 0;
  for (size_t end; (end = it->second.find('\n', start)) != std::string::npos; start = end + 1) {
    const std::string line = it->second.substr(start, end - start);
    for (const std::string& suffix : kSuffixes)
      if (line.size() > suffix.size() && line.compare(line.size() - suffix.size(), suffix.size(), suffix) == 0)
        names.push_back(line.substr(0, line.size() - suffix.size()));
  }
  return names;
}

// A calibration cache path for this build only, removed when done.
struct TempFile {
  std::string path;
  TempFile() {
    static std::atomic<int> counter{0};
    path = (std::filesystem::temp_directory_path() /
            ("kiln-profile-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".calib"))
               .string();
  }
  ~TempFile() { std::remove(path.c_str()); }
};

// The other specializations took the opt build's scales through a cache:
// their INT8 notes (what `kiln inspect` shows) name where the scales really
// came from, and the guard's result, as the opt build recorded them.
void share_int8_notes(ir::Graph& g, const ir::Graph& opt, int opt_batch) {
  static const std::string kFrom = "scales from ";
  auto it = g.metadata.find("int8");
  auto src = opt.metadata.find("int8");
  if (it == g.metadata.end() || src == opt.metadata.end()) return;
  const size_t at = it->second.find(kFrom), src_at = src->second.find(kFrom);
  if (at != std::string::npos && src_at != std::string::npos)
    it->second = it->second.substr(0, at) + src->second.substr(src_at) + " at batch " + std::to_string(opt_batch);
  if (auto guard = opt.metadata.find("int8_guard"); guard != opt.metadata.end()) g.metadata["int8_guard"] = guard->second;
}

std::unique_ptr<ir::Graph> decode_plan(const std::vector<uint8_t>& bytes, const std::string& origin,
                                       std::string* device) {
  plan::Header h = plan::read_header(bytes.data(), bytes.size(), origin);
  if (device) *device = h.device;
  return plan::decode_graph(bytes.data() + h.payload_offset, h.payload_size, origin, h.payload_offset);
}

}  // namespace

std::vector<uint8_t> Builder::build_profile(const std::string& model_path, const ParseOptions& opts,
                                            const BatchProfile& profile) const {
  plan::check_profile(profile);
  if (opts.batch)
    throw_usage("ParseOptions::batch (--batch) fixes one batch; a batch profile builds every batch from " +
                std::to_string(profile.min) + " to " + std::to_string(profile.max) + ": leave it 0");
  const std::vector<int> batches = profile_batches(profile);
  auto parse_at = [&](int b) {
    ParseOptions o = opts;
    o.batch = b;
    return parse_onnx(model_path, o);
  };
  // Parsing is cheap next to building: refuse an unfit model before any build.
  std::map<int, Signature> parsed;
  for (int b : {profile.min, profile.max}) parsed[b] = check_specialization(*parse_at(b)->graph, b, model_path);
  check_alike(parsed[profile.max].inputs, profile.max, parsed[profile.min].inputs, profile.min, "input", model_path);
  check_alike(parsed[profile.max].outputs, profile.max, parsed[profile.min].outputs, profile.min, "output", model_path);

  // The opt batch first: INT8 calibrates there.
  std::vector<int> order = {profile.opt};
  for (int b : batches)
    if (b != profile.opt) order.push_back(b);

  BuilderConfig first = config_, rest = config_;
  TempFile temp_cache;
  if (config_.int8 && config_.calibration.calibrator) {
    if (first.calibration.cache_path.empty()) first.calibration.cache_path = temp_cache.path;
    rest.calibration.calibrator = nullptr;
    rest.calibration.cache_path = first.calibration.cache_path;
  }
  rest.int8_guard = false;

  std::map<int, plan::Specialization> built;
  std::string device;
  Signature ref;
  for (size_t k = 0; k < order.size(); ++k) {
    const int b = order[k];
    log_message(Severity::kInfo, "batch profile: building batch " + std::to_string(b) + " (" + std::to_string(k + 1) +
                                     " of " + std::to_string(order.size()) + ")");
    std::vector<uint8_t> bytes;
    try {
      bytes = Builder(k ? rest : first).build(*parse_at(b));
    } catch (const Error& e) {
      throw Error(e.code(), model_path + ", batch " + std::to_string(b) + " of the profile: " + e.what());
    }
    std::string spec_device;
    auto g = decode_plan(bytes, model_path + " (batch " + std::to_string(b) + ")", &spec_device);
    if (k && spec_device != device)
      throw_internal("batch profile: specializations built for '" + device + "' and '" + spec_device + "'");
    device = spec_device;
    Signature s = check_specialization(*g, b, model_path);
    if (k) {
      check_alike(s.inputs, b, ref.inputs, profile.opt, "input", model_path);
      check_alike(s.outputs, b, ref.outputs, profile.opt, "output", model_path);
    } else {
      ref = s;
      // Layers the guard (or the user) kept float at opt stay float everywhere.
      for (std::string& name : kept_float_by_request(*g)) {
        bool known = false;
        for (const std::string& l : rest.keep_float_layers) known = known || l == name;
        if (!known) rest.keep_float_layers.push_back(name);
      }
    }
    if (k) share_int8_notes(*g, *built.at(profile.opt).graph, profile.opt);
    built[b] = {b, std::move(g)};
  }
  std::vector<plan::Specialization> specs;
  for (auto& [b, s] : built) specs.push_back(std::move(s));
  auto plan = plan::write_profile_plan(profile, specs, device);
  log_message(Severity::kInfo, "batch profile " + std::to_string(profile.min) + "/" + std::to_string(profile.opt) +
                                   "/" + std::to_string(profile.max) + ": " + std::to_string(specs.size()) +
                                   " specializations in " + std::to_string(plan.size()) + " bytes");
  return plan;
}

std::vector<uint8_t> rebuild_profile_plan(const BuilderConfig& config, const std::vector<uint8_t>& bytes,
                                          const std::string& origin) {
  plan::ProfilePlan p = plan::read_profile_plan(bytes.data(), bytes.size(), origin);
  std::vector<plan::Specialization> specs;
  std::string device;
  for (plan::Specialization& s : p.specs) {
    const std::string name = origin + " (batch " + std::to_string(s.batch) + ")";
    const std::vector<uint8_t> single = plan::write_plan(*s.graph, p.device);
    s.graph.reset();  // the rebuild holds its own copy
    auto g = decode_plan(Builder(config).rebuild(single, name), name, &device);
    specs.push_back({s.batch, std::move(g)});
  }
  return plan::write_profile_plan(p.profile, specs, device);
}

}  // namespace kiln
