// Entropy calibration, computed as NVIDIA's TensorRT-compatible histogram
// calibrator (pytorch-quantization) describes it:
//
// h = the histogram with h[0] replaced by h[1]: values that are exactly 0
//     (half of every ReLU output) would otherwise dominate P, and a large
//     first level that spreads them out would be penalized, pulling every
//     threshold down (it clipped ReLU outputs to a third of their range).
// For each candidate i = 128 .. N (N = number of bins, 2048):
//   P     = h[0 .. i-1], with the mass of h[i ..] added to P[i-1]
//   level of bin b = floor(128 * b / i): i bins in 128 equal-width levels
//   Q[b]  = (mass of the level's nonzero bins) / (their count) where
//           h[b] > 0, else 0 (outliers are not in Q: clipping costs)
//   KL    = sum over P > 0 of P ln(P / Q), P and Q normalized to sum 1;
//           infinite when P > 0 meets Q = 0 (bin i-1 empty, outliers beyond)
// The smallest KL wins, the largest i on ties, and T = i * w (the upper edge
// of bin i-1).
#include "quant/thresholds.h"

#include <cfloat>
#include <cmath>
#include <limits>

#include "kiln/error.h"

namespace kiln::quant {

namespace {

constexpr int kLevels = 128;

// The histogram as the search sees it (see the top of this file).
std::vector<double> search_histogram(const std::vector<std::uint64_t>& bins) {
  std::vector<double> h(bins.begin(), bins.end());
  if (h.size() > 1) h[0] = h[1];
  return h;
}

double candidate_kl(const std::vector<double>& h, int i) {
  const int n = static_cast<int>(h.size());
  double outliers = 0.0, total = 0.0;
  for (int b = i; b < n; ++b) outliers += h[b];
  for (int b = 0; b < i; ++b) total += h[b];
  total += outliers;
  if (total == 0.0) return 0.0;  // empty histogram: every candidate ties

  std::vector<double> level_mass(kLevels, 0.0), level_count(kLevels, 0.0);
  auto level = [i](int b) { return static_cast<int>((static_cast<std::int64_t>(b) * kLevels) / i); };
  for (int b = 0; b < i; ++b)
    if (h[b] > 0.0) {
      level_mass[level(b)] += h[b];
      level_count[level(b)] += 1.0;
    }
  double qsum = 0.0;
  for (int b = 0; b < i; ++b)
    if (h[b] > 0.0) qsum += level_mass[level(b)] / level_count[level(b)];

  double kl = 0.0;
  for (int b = 0; b < i; ++b) {
    const double p = (b == i - 1 ? h[b] + outliers : h[b]) / total;
    if (p == 0.0) continue;
    if (h[b] == 0.0 || qsum == 0.0) return std::numeric_limits<double>::infinity();
    const double q = level_mass[level(b)] / level_count[level(b)] / qsum;
    kl += p * std::log(p / q);
  }
  return kl;
}

}  // namespace

std::string method_name(CalibrationMethod m) {
  switch (m) {
    case CalibrationMethod::kEntropy: return "Entropy";
    case CalibrationMethod::kMinMax: return "MinMax";
    case CalibrationMethod::kPercentile: return "Percentile";
  }
  return "Unknown";
}

double entropy_candidate_kl(const std::vector<std::uint64_t>& bins, int i) {
  const int n = static_cast<int>(bins.size());
  if (i < kLevels || i > n) throw_usage("entropy candidate " + std::to_string(i) + " outside [128, " + std::to_string(n) + "]");
  return candidate_kl(search_histogram(bins), i);
}

EntropyResult entropy_threshold(const std::vector<std::uint64_t>& bins, double bin_width) {
  const int n = static_cast<int>(bins.size());
  if (n < kLevels) throw_usage("entropy calibration needs at least 128 histogram bins, got " + std::to_string(n));
  if (!(bin_width >= 0.0) || !std::isfinite(bin_width)) throw_usage("entropy calibration: bin width must be finite and >= 0");
  EntropyResult r;
  if (bin_width == 0.0) {
    r.threshold = kFallbackThreshold;
    return r;
  }
  const std::vector<double> h = search_histogram(bins);
  double best = std::numeric_limits<double>::infinity();
  r.bins = n;  // every candidate infinite: no clipping
  for (int i = kLevels; i <= n; ++i) {
    const double kl = candidate_kl(h, i);
    if (kl <= best && kl < std::numeric_limits<double>::infinity()) {  // the last i wins ties
      best = kl;
      r.bins = i;
    }
  }
  r.kl = best;
  r.threshold = r.bins * bin_width;
  return r;
}

double minmax_threshold(float min, float max) {
  const double t = std::max(std::fabs(static_cast<double>(min)), std::fabs(static_cast<double>(max)));
  if (!(t > 0.0) || !std::isfinite(t)) return kFallbackThreshold;
  return t;
}

double percentile_threshold(const std::vector<std::uint64_t>& bins, double bin_width, double percentile) {
  if (!(percentile > 0.0 && percentile <= 100.0))
    throw_usage("percentile calibration: percentile must be in (0, 100], got " + std::to_string(percentile));
  double total = 0.0;
  for (std::uint64_t c : bins) total += static_cast<double>(c);
  if (total == 0.0 || !(bin_width > 0.0)) return kFallbackThreshold;
  const double target = percentile / 100.0 * total;
  double cum = 0.0;
  for (std::size_t k = 0; k < bins.size(); ++k) {
    cum += static_cast<double>(bins[k]);
    if (cum >= target) return static_cast<double>(k + 1) * bin_width;
  }
  return static_cast<double>(bins.size()) * bin_width;
}

double compute_threshold(const TensorStats& stats, CalibrationMethod method, double percentile) {
  switch (method) {
    case CalibrationMethod::kEntropy: return entropy_threshold(stats.bins(), stats.bin_width()).threshold;
    case CalibrationMethod::kMinMax: return minmax_threshold(stats.min(), stats.max());
    case CalibrationMethod::kPercentile: return percentile_threshold(stats.bins(), stats.bin_width(), percentile);
  }
  throw_usage("unknown calibration method");
}

float scale_from_threshold(double threshold) {
  if (!(threshold > 0.0) || !std::isfinite(threshold)) threshold = kFallbackThreshold;
  const double s = threshold / 127.0;
  if (s > static_cast<double>(FLT_MAX)) return FLT_MAX;
  const float f = static_cast<float>(s);
  return f < FLT_MIN ? FLT_MIN : f;
}

}  // namespace kiln::quant
