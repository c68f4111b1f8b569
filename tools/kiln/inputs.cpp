// Engine inputs for `kiln run` and `kiln bench`: from .npy files or random,
// at the batch --batch chose (batch_inputs.h).
#include <map>
#include <random>
#include <set>

#include "batch_inputs.h"
#include "cli.h"
#include "npy.h"

namespace kiln::cli {

namespace {
// Floats uniform in [-1, 1), integers in [0, 10), bools fair. Built on the
// raw mt19937_64 stream (fully specified by the standard), so a seed gives
// the same tensor with every compiler; input k of the engine uses its own
// stream so giving some inputs from files does not shift the others.
HostTensor random_tensor(const TensorInfo& info, uint64_t seed, size_t k) {
  std::seed_seq seq{uint32_t(seed), uint32_t(seed >> 32), uint32_t(k)};
  std::mt19937_64 rng(seq);
  HostTensor t = HostTensor::zeros(info.dtype, info.shape);
  const int64_t n = t.numel();
  auto unit = [&] { return double(rng() >> 11) * 0x1.0p-53; };  // [0, 1)
  for (int64_t i = 0; i < n; ++i) {
    switch (info.dtype) {
      case DataType::kFloat32: t.as<float>()[i] = float(2 * unit() - 1); break;
      case DataType::kFloat16: t.as<uint16_t>()[i] = float_to_half(float(2 * unit() - 1)); break;
      case DataType::kInt8: t.as<int8_t>()[i] = int8_t(rng() % 10); break;
      case DataType::kUInt8: t.as<uint8_t>()[i] = uint8_t(rng() % 10); break;
      case DataType::kInt32: t.as<int32_t>()[i] = int32_t(rng() % 10); break;
      case DataType::kInt64: t.as<int64_t>()[i] = int64_t(rng() % 10); break;
      case DataType::kBool: t.as<uint8_t>()[i] = uint8_t(rng() & 1); break;
    }
  }
  return t;
}

// The batch of a single-batch plan: its first batched input's extent.
int plan_batch(const Engine& engine) {
  for (const TensorInfo& t : engine.inputs())
    if (t.batch_axis >= 0) return int(t.shape[size_t(t.batch_axis)]);
  return 0;
}

}  // namespace

int choose_batch(const Engine& engine, int requested) {
  const BatchProfile p = engine.profile();
  if (p.max > 0) {
    if (requested == 0) return p.opt;
    if (requested < p.min || requested > p.max)
      throw_usage("--batch " + std::to_string(requested) + " is outside the plan's batch profile [" +
                  std::to_string(p.min) + ", " + std::to_string(p.max) + "]: give a batch from " +
                  std::to_string(p.min) + " to " + std::to_string(p.max));
    return requested;
  }
  const int own = plan_batch(engine);
  if (requested == 0 || requested == own) return own;
  if (own == 0) throw_usage("--batch " + std::to_string(requested) + ": this plan's inputs have no batch axis");
  throw_usage("--batch " + std::to_string(requested) + ": this plan runs batch " + std::to_string(own) +
              " only; build it with --min-batch/--opt-batch/--max-batch to run other batches");
}

std::map<std::string, HostTensor> gather_inputs(const Engine& engine, const std::vector<std::string>& specs,
                                                bool random, uint64_t seed) {
  return gather_inputs_at(engine, specs, random, seed, 0);
}

std::map<std::string, HostTensor> gather_inputs_at(const Engine& engine, const std::vector<std::string>& specs,
                                                   bool random, uint64_t seed, int batch) {
  std::map<std::string, std::string> files;
  for (const std::string& spec : specs) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      throw_usage("--input expects NAME=FILE.npy, got '" + spec + "'");
    if (!files.emplace(spec.substr(0, eq), spec.substr(eq + 1)).second)
      throw_usage("--input '" + spec.substr(0, eq) + "' is given twice");
  }

  if (files.empty() && !random && !engine.inputs().empty())
    throw_usage("give --input NAME=FILE.npy for every engine input, or --random-inputs SEED");
  std::set<std::string> known;
  for (const TensorInfo& t : engine.inputs()) known.insert(t.name);
  for (auto& [name, file] : files)
    if (!known.count(name)) {
      std::string list;
      for (auto& n : known) list += (list.empty() ? "'" : ", '") + n + "'";
      throw_bad_input("--input '" + name + "': the engine has no such input (its inputs are " +
                      (list.empty() ? "none" : list) + ")");
    }
  std::map<std::string, HostTensor> inputs;
  for (size_t k = 0; k < engine.inputs().size(); ++k) {
    TensorInfo info = engine.inputs()[k];
    if (batch > 0 && info.batch_axis >= 0) info.shape[size_t(info.batch_axis)] = batch;
    auto it = files.find(info.name);
    if (it != files.end()) inputs[info.name] = npy::load(it->second);
    else if (random) inputs[info.name] = random_tensor(info, seed, k);
  }

  return inputs;
}

}  // namespace kiln::cli
