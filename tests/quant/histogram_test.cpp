// TensorStats against a float64 oracle: range = smallest power of two above
// max|x| over all data, bin = floor(|x| / range * 2048).
#include "quant/histogram.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace kiln::quant {
namespace {

double oracle_range(const std::vector<float>& v) {
  double amax = 0.0;
  for (float x : v)
    if (std::isfinite(x)) amax = std::max(amax, std::fabs(static_cast<double>(x)));
  if (amax == 0.0) return 0.0;
  double r = 1.0;
  while (r <= amax) r *= 2.0;
  while (r / 2.0 > amax) r /= 2.0;
  return r;
}

std::vector<std::uint64_t> oracle_bins(const std::vector<float>& v) {
  const double r = oracle_range(v);
  std::vector<std::uint64_t> bins(2048, 0);
  for (float x : v) {
    if (!std::isfinite(x)) continue;
    const std::size_t b = r == 0.0 ? 0 : static_cast<std::size_t>(std::floor(std::fabs(static_cast<double>(x)) / r * 2048.0));
    ++bins.at(b);
  }
  return bins;
}

std::vector<float> growing_data() {
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> v;
  for (int i = 0; i < 3000; ++i) v.push_back(0.01f * n(rng));  // small batch first
  for (int i = 0; i < 3000; ++i) v.push_back(n(rng));
  for (int i = 0; i < 3000; ++i) v.push_back(40.0f * n(rng));  // range grows twice
  v.push_back(0.0f);
  v.push_back(64.0f);  // exactly a power of two: must not sit on the upper edge
  return v;
}

TEST(QuantHistogram, GrowingRangeMatchesOnePassOracle) {
  const std::vector<float> v = growing_data();
  TensorStats s;
  for (std::size_t start = 0; start < v.size(); start += 1000)
    s.add(v.data() + start, std::min<std::size_t>(1000, v.size() - start));
  EXPECT_EQ(s.range(), oracle_range(v));
  EXPECT_EQ(s.bin_width(), oracle_range(v) / 2048.0);
  EXPECT_EQ(s.bins(), oracle_bins(v));
  EXPECT_EQ(s.finite_count(), v.size());
}

TEST(QuantHistogram, BatchSplitAndMergeDoNotChangeResult) {
  const std::vector<float> v = growing_data();
  TensorStats one;
  one.add(v);
  // Reverse order in uneven batches, and a 3-way merge as threads would do.
  TensorStats rev;
  std::vector<float> r(v.rbegin(), v.rend());
  for (std::size_t start = 0; start < r.size(); start += 777)
    rev.add(r.data() + start, std::min<std::size_t>(777, r.size() - start));
  TensorStats a, b, c;
  a.add(v.data(), 4000);
  b.add(v.data() + 4000, 10);
  c.add(v.data() + 4010, v.size() - 4010);
  TensorStats merged;
  merged.merge(c);
  merged.merge(a);
  merged.merge(b);
  for (const TensorStats* s : {&rev, &merged}) {
    EXPECT_EQ(s->bins(), one.bins());
    EXPECT_EQ(s->range(), one.range());
    EXPECT_EQ(s->min(), one.min());
    EXPECT_EQ(s->max(), one.max());
    EXPECT_EQ(s->finite_count(), one.finite_count());
  }
}

TEST(QuantHistogram, NanAndInfCountedApart) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  TensorStats s;
  s.add({1.5f, nan, -inf, -2.0f, inf, nan, nan});
  EXPECT_EQ(s.nan_count(), 3u);
  EXPECT_EQ(s.inf_count(), 2u);
  EXPECT_EQ(s.finite_count(), 2u);
  EXPECT_EQ(s.min(), -2.0f);
  EXPECT_EQ(s.max(), 1.5f);
  EXPECT_EQ(s.range(), 4.0);  // smallest power of two > 2
  std::uint64_t total = 0;
  for (auto c : s.bins()) total += c;
  EXPECT_EQ(total, 2u);
  EXPECT_EQ(s.bins()[1024], 1u);  // |-2| / 4 * 2048
  EXPECT_EQ(s.bins()[768], 1u);   // 1.5 / 4 * 2048
}

TEST(QuantHistogram, AllZeroThenNonzero) {
  TensorStats s;
  s.add(std::vector<float>(100, 0.0f));
  EXPECT_EQ(s.range(), 0.0);
  EXPECT_EQ(s.bins()[0], 100u);
  s.add({-0.75f});
  EXPECT_EQ(s.range(), 1.0);
  EXPECT_EQ(s.bins()[0], 100u);
  EXPECT_EQ(s.bins()[1536], 1u);
  EXPECT_EQ(s.min(), -0.75f);
  EXPECT_EQ(s.max(), 0.0f);
}

TEST(QuantHistogram, ExtremeMagnitudes) {
  const float big = std::numeric_limits<float>::max();
  const float tiny = std::numeric_limits<float>::denorm_min();
  TensorStats s;
  s.add({tiny});
  EXPECT_EQ(s.bins()[1024], 1u);  // range 2^-148, tiny = 2^-149
  s.add({big, -big});
  EXPECT_EQ(s.range(), std::ldexp(1.0, 128));
  EXPECT_EQ(s.bins()[0], 1u);
  EXPECT_EQ(s.bins()[2047], 2u);
}

}  // namespace
}  // namespace kiln::quant
