// Entropy calibration, as implemented (after the 2017 GTC talk "8-bit
// Inference with TensorRT" and the public MXNet / ONNX Runtime versions):
//
// For each candidate i = 128 .. N (N = number of bins, 2048):
//   raw   = bins[0 .. i-1]
//   P     = raw, with the mass of all bins >= i added to P[i-1]
//   m     = i / 128 (integer division); level j < 127 covers bins
//           [j*m, (j+1)*m), level 127 covers [127*m, i) (takes the remainder)
//   Q     = for each level, its mass in *raw* (outliers are not in Q, so
//           clipping is penalized) spread evenly over the bins of the level
//           where P != 0; bins where P == 0 get 0
//   P, Q  normalized to sum 1 (Q stays all 0 if raw has no mass)
//   smoothing: a bin with P > 0 and Q == 0 gets Q = 1e-4 (no renormalization);
//           bins with P == 0 contribute 0 (0 * log 0 = 0)
//   KL    = sum over P > 0 of P * ln(P / Q)
// The i with the smallest KL wins (the first on ties) and T = (i + 0.5) * w.
#include "quant/thresholds.h"

#include <cfloat>
#include <cmath>
#include <limits>

#include "kiln/error.h"

namespace kiln::quant {

namespace {

constexpr int kLevels = 128;
constexpr double kSmoothEps = 1e-4;

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
  std::vector<double> p(i), q(i, 0.0);
  double outliers = 0.0;
  for (int b = i; b < n; ++b) outliers += static_cast<double>(bins[b]);
  for (int b = 0; b < i; ++b) p[b] = static_cast<double>(bins[b]);
  p[i - 1] += outliers;

  const int m = i / kLevels;
  for (int j = 0; j < kLevels; ++j) {
    const int start = j * m;
    const int end = (j == kLevels - 1) ? i : start + m;
    double mass = 0.0;
    int nonzero = 0;
    for (int b = start; b < end; ++b) {
      mass += static_cast<double>(bins[b]);
      if (p[b] != 0.0) ++nonzero;
    }
    if (nonzero == 0) continue;
    const double each = mass / nonzero;
    for (int b = start; b < end; ++b)
      if (p[b] != 0.0) q[b] = each;
  }

  double psum = 0.0, qsum = 0.0;
  for (int b = 0; b < i; ++b) {
    psum += p[b];
    qsum += q[b];
  }
  if (psum == 0.0) return 0.0;  // empty histogram: every candidate ties
  double kl = 0.0;
  for (int b = 0; b < i; ++b) {
    if (p[b] == 0.0) continue;
    const double pn = p[b] / psum;
    const double qn = (q[b] == 0.0) ? kSmoothEps : q[b] / qsum;
    kl += pn * std::log(pn / qn);
  }
  return kl;
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
  double best = std::numeric_limits<double>::infinity();
  for (int i = kLevels; i <= n; ++i) {
    const double kl = entropy_candidate_kl(bins, i);
    if (kl < best) {  // strict: the first i wins ties
      best = kl;
      r.bins = i;
    }
  }
  r.kl = best;
  r.threshold = (r.bins + 0.5) * bin_width;
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
