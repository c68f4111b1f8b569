// Per-tensor activation statistics for INT8 post-training calibration.
//
// A TensorStats keeps the finite min / max of every value it saw, counts of
// NaN and +-Inf values (kept apart: they never enter min/max or the
// histogram), and a histogram of |x| with kHistogramBins bins over
// [0, range()).
//
// Range rule (why it is deterministic): range() is always a power of two,
// the smallest 2^e strictly greater than the largest finite |x| seen so far.
// A value lands in bin floor(|x| * 2048 / 2^e); the factor is a power of two,
// so the product is exact in double and no clamping is ever needed. When a
// later batch raises the range from 2^e to 2^(e+k), every group of 2^k
// adjacent bins is summed into one (floor(floor(a) / 2^k) == floor(a / 2^k)),
// which gives exactly the counts a single pass at the wider range would give.
// Counts are integers, so the histogram depends only on the multiset of
// values: not on batch order, batch split, or how many threads built partial
// stats before merge(). The price is resolution: the data's max sits between
// range/2 and range, so it covers between 1024 and 2048 bins.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kiln::quant {

constexpr int kHistogramBins = 2048;

class TensorStats {
 public:
  TensorStats();

  // Adds n values. Thread-compatible: one thread per TensorStats; to use many
  // threads, fill one TensorStats each and merge() them (the result is exact).
  void add(const float* data, std::size_t n);
  void add(const std::vector<float>& data) { add(data.data(), data.size()); }

  // Folds other's values in, as if they had been add()ed here.
  void merge(const TensorStats& other);

  // Finite min / max seen (0 when no finite value was seen).
  float min() const { return min_; }
  float max() const { return max_; }
  // Largest finite |x| seen (0 when none or all zero).
  float abs_max() const { return abs_max_; }

  // Histogram upper edge: a power of two, or 0 while every finite value was 0
  // (then all finite values sit in bin 0 and the histogram has no scale).
  double range() const;
  // range() / kHistogramBins (0 while range() is 0).
  double bin_width() const;
  const std::vector<std::uint64_t>& bins() const { return bins_; }

  std::uint64_t finite_count() const { return finite_count_; }
  std::uint64_t nan_count() const { return nan_count_; }
  std::uint64_t inf_count() const { return inf_count_; }

 private:
  // Re-bins to range 2^new_exp (new_exp > exp_).
  void widen(int new_exp);

  std::vector<std::uint64_t> bins_;
  bool has_range_ = false;  // false while every finite |x| was 0
  int exp_ = 0;             // range() == 2^exp_ when has_range_
  float min_ = 0.0f, max_ = 0.0f, abs_max_ = 0.0f;
  bool has_finite_ = false;
  std::uint64_t finite_count_ = 0, nan_count_ = 0, inf_count_ = 0;
};

}  // namespace kiln::quant
