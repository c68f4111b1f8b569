#include "quant/histogram.h"

#include <algorithm>
#include <cmath>

namespace kiln::quant {

namespace {

// Smallest e with 2^e > a (a > 0, finite).
int range_exponent(float a) {
  int e = 0;
  std::frexp(a, &e);  // a = m * 2^e with m in [0.5, 1), so 2^(e-1) <= a < 2^e
  return e;
}

}  // namespace

TensorStats::TensorStats() : bins_(kHistogramBins, 0) {}

double TensorStats::range() const { return has_range_ ? std::ldexp(1.0, exp_) : 0.0; }

double TensorStats::bin_width() const { return has_range_ ? std::ldexp(1.0, exp_ - 11) : 0.0; }

void TensorStats::widen(int new_exp) {
  if (!has_range_) {
    // Only zeros so far: they stay in bin 0 at any range.
    has_range_ = true;
    exp_ = new_exp;
    return;
  }
  const int shift = new_exp - exp_;
  std::vector<std::uint64_t> merged(kHistogramBins, 0);
  if (shift < 31) {
    for (int b = 0; b < kHistogramBins; ++b) merged[b >> shift] += bins_[b];
  } else {
    for (int b = 0; b < kHistogramBins; ++b) merged[0] += bins_[b];
  }
  bins_.swap(merged);
  exp_ = new_exp;
}

void TensorStats::add(const float* data, std::size_t n) {
  // Pass 1: counts, min / max, and the batch's |x| max to fix the range first.
  float bmin = 0.0f, bmax = 0.0f, babs = 0.0f;
  bool any = false;
  for (std::size_t i = 0; i < n; ++i) {
    const float v = data[i];
    if (std::isnan(v)) {
      ++nan_count_;
      continue;
    }
    if (std::isinf(v)) {
      ++inf_count_;
      continue;
    }
    if (!any) {
      bmin = bmax = v;
      any = true;
    } else {
      bmin = std::min(bmin, v);
      bmax = std::max(bmax, v);
    }
    babs = std::max(babs, std::fabs(v));
  }
  if (!any) return;
  if (!has_finite_) {
    min_ = bmin;
    max_ = bmax;
    has_finite_ = true;
  } else {
    min_ = std::min(min_, bmin);
    max_ = std::max(max_, bmax);
  }
  abs_max_ = std::max(abs_max_, babs);
  if (babs > 0.0f) {
    const int e = range_exponent(babs);
    if (!has_range_ || e > exp_) widen(e);
  }
  // Pass 2: bin. scale is a power of two, so |v| * scale is exact.
  const double scale = has_range_ ? std::ldexp(1.0, 11 - exp_) : 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const float v = data[i];
    if (!std::isfinite(v)) continue;
    ++finite_count_;
    const double a = std::fabs(static_cast<double>(v)) * scale;
    ++bins_[static_cast<std::size_t>(a)];  // a < 2048 by the range rule
  }
}

void TensorStats::merge(const TensorStats& other) {
  nan_count_ += other.nan_count_;
  inf_count_ += other.inf_count_;
  if (!other.has_finite_) return;
  if (!has_finite_) {
    min_ = other.min_;
    max_ = other.max_;
    has_finite_ = true;
  } else {
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }
  abs_max_ = std::max(abs_max_, other.abs_max_);
  finite_count_ += other.finite_count_;
  // Bring both to the wider range, then add bin by bin.
  std::vector<std::uint64_t> theirs = other.bins_;
  if (other.has_range_) {
    if (!has_range_ || other.exp_ > exp_) widen(other.exp_);
    const int shift = exp_ - other.exp_;
    if (shift > 0) {
      std::vector<std::uint64_t> m(kHistogramBins, 0);
      for (int b = 0; b < kHistogramBins; ++b) m[shift < 31 ? (b >> shift) : 0] += theirs[b];
      theirs.swap(m);
    }
  }
  for (int b = 0; b < kHistogramBins; ++b) bins_[b] += theirs[b];
}

}  // namespace kiln::quant
