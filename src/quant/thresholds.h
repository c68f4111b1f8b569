// Clipping thresholds T for INT8 calibration (the INT8 scale is T / 127).
//
// Every function returns a finite T > 0. When the histogram has no scale
// (no finite value seen, or every finite value was 0) T is kFallbackThreshold:
// any positive T quantizes zeros exactly, and 1.0 keeps 1/scale well inside
// float range.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/histogram.h"

namespace kiln::quant {

constexpr double kFallbackThreshold = 1.0;

enum class CalibrationMethod { kEntropy, kMinMax, kPercentile };

// "Entropy", "MinMax", "Percentile" (used in cache headers).
std::string method_name(CalibrationMethod m);

// Result of the entropy search, kept for reporting and tests.
struct EntropyResult {
  int bins = 0;             // chosen candidate i (128..2048); 0 for the fallback
  double kl = 0.0;          // KL(P||Q) at that i (infinite when every candidate is)
  double threshold = 0.0;   // i * bin_width, or the fallback
};

// TensorRT "Entropy2"-style search over a histogram of |x| (any number of
// bins >= 128; kiln's histograms have 2048). See thresholds.cpp for the
// exact steps. Throws kUsage when bins.size() < 128 or bin_width < 0.
EntropyResult entropy_threshold(const std::vector<std::uint64_t>& bins, double bin_width);
// KL(P||Q) for one candidate i, exposed for tests.
double entropy_candidate_kl(const std::vector<std::uint64_t>& bins, int i);

// max(|min|, |max|).
double minmax_threshold(float min, float max);

// Smallest bin edge k * bin_width (k >= 1) with at least percentile% of the
// histogram mass below it. Throws kUsage unless 0 < percentile <= 100.
double percentile_threshold(const std::vector<std::uint64_t>& bins, double bin_width, double percentile);

// Dispatch on a TensorStats. percentile is used only by kPercentile.
double compute_threshold(const TensorStats& stats, CalibrationMethod method, double percentile = 99.99);

// T / 127 as float, never 0 or denormal (raised to the smallest normal float)
// so that dividing by it stays finite.
float scale_from_threshold(double threshold);

}  // namespace kiln::quant
