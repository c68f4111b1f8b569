// calibrate(): the optimized FP32 graph's activation statistics over the
// calibrator's batches -> clipping thresholds -> INT8 scales, with the
// calibration cache read (no calibrator) or written (after a run).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>

#include "backends/cpu/parallel.h"
#include "builder/clone.h"
#include "builder/network.h"
#include "builder/optimize.h"
#include "builder/prune.h"
#include "engine/logging.h"
#include "kiln/error.h"
#include "quant/calibration_cache.h"
#include "quant/collect_stats.h"
#include "quant/thresholds.h"

namespace kiln {

namespace {

quant::CalibrationMethod internal_method(CalibrationMethod m) {
  switch (m) {
    case CalibrationMethod::kEntropy: return quant::CalibrationMethod::kEntropy;
    case CalibrationMethod::kMinMax: return quant::CalibrationMethod::kMinMax;
    case CalibrationMethod::kPercentile: return quant::CalibrationMethod::kPercentile;
  }
  throw_usage("unknown calibration method " + std::to_string(int(m)) + ": use entropy, minmax or percentile");
}

}  // namespace

const char* calibration_method_name(CalibrationMethod m) {
  switch (m) {
    case CalibrationMethod::kEntropy: return "entropy";
    case CalibrationMethod::kMinMax: return "minmax";
    case CalibrationMethod::kPercentile: return "percentile";
  }
  return "unknown";
}

namespace quant {

std::map<std::string, float> calibrate_graph(const ir::Graph& g, const CalibrationConfig& config) {
  const std::vector<std::string> names = calibration_tensor_names(g);
  if (!config.calibrator) {
    if (config.cache_path.empty())
      throw_usage("INT8 calibration needs batches of representative inputs (a calibrator, `--calib DIR`) or a "
                  "calibration cache from an earlier run (cache_path, `--calib-cache FILE`)");
    CalibrationCache cache = read_calibration_cache(config.cache_path);
    check_cache_matches(cache, names, config.cache_path);
    log_message(Severity::kInfo, "INT8 scales of " + std::to_string(names.size()) + " tensors from calibration cache " +
                                     config.cache_path + " (" + cache.header + ")");
    return cache.scales;
  }
  const CalibrationMethod method = internal_method(config.method);
  // Checked before any batch runs, so a typo does not cost a calibration run.
  if (method == CalibrationMethod::kPercentile && !(config.percentile > 0.0 && config.percentile <= 100.0))
    throw_usage("calibration percentile must be in (0, 100], got " + std::to_string(config.percentile));

  const auto start = std::chrono::steady_clock::now();
  CollectedStats collected = collect_stats(g, *config.calibrator, config.progress);

  // Entropy searches ~1900 candidates per tensor: spread tensors over threads.
  // Each threshold depends on its own stats only, so the split changes nothing.
  std::vector<float> scales(names.size());
  std::vector<std::exception_ptr> errors(names.size());
  cpu::parallel_for(int64_t(names.size()), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      try {
        const double t = compute_threshold(collected.stats.at(names[size_t(i)]), method, config.percentile);
        scales[size_t(i)] = scale_from_threshold(t);
      } catch (...) {
        errors[size_t(i)] = std::current_exception();
      }
    }
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);

  std::map<std::string, float> result;
  for (size_t i = 0; i < names.size(); ++i) {
    const TensorStats& s = collected.stats.at(names[i]);
    // NaN / Inf never enter the statistics; they usually mean bad batches.
    if (s.nan_count() || s.inf_count())
      log_message(Severity::kWarning, "calibration: tensor '" + names[i] + "' held " + std::to_string(s.nan_count()) +
                                          " NaN and " + std::to_string(s.inf_count()) +
                                          " infinite values, left out of its scale");
    result[names[i]] = scales[i];
  }

  if (!config.cache_path.empty()) {
    CalibrationCache cache;
    cache.header = kiln_cache_header(method);
    cache.scales = result;
    const std::string text = format_calibration_cache(cache);
    // Atomic: an interrupted run must not leave a truncated cache that a
    // later build would read.
    write_file_atomic(config.cache_path, std::vector<uint8_t>(text.begin(), text.end()));
  }
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2f s",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  log_message(Severity::kInfo, "calibrated " + std::to_string(names.size()) + " tensors over " +
                                   std::to_string(collected.batches) + " batches (" +
                                   calibration_method_name(config.method) + ", " + secs + ")");
  return result;
}

}  // namespace quant

std::map<std::string, float> calibrate(const Network& network, const CalibrationConfig& config) {
  if (!network.graph) throw_usage("calibrate: the network holds no graph");
  // The same graph Builder::build quantizes: pruned, optimized, pruned.
  auto g = clone_graph(*network.graph);
  prune_graph(*g);
  optimize_graph(*g);
  prune_graph(*g);
  return quant::calibrate_graph(*g, config);
}

}  // namespace kiln
