// End to end: the same activations fed in different batch splits (and merged
// from per-thread stats) give byte-identical calibration caches.
#include <gtest/gtest.h>

#include <random>

#include "quant/calibration_cache.h"
#include "quant/histogram.h"
#include "quant/thresholds.h"

namespace kiln::quant {
namespace {

std::string cache_bytes(const std::map<std::string, std::vector<float>>& data, std::size_t batch,
                        CalibrationMethod m, bool split_merge) {
  CalibrationCache c;
  c.header = kiln_cache_header(m);
  for (const auto& [name, v] : data) {
    TensorStats s;
    for (std::size_t start = 0; start < v.size(); start += batch) {
      const std::size_t n = std::min(batch, v.size() - start);
      if (split_merge) {
        TensorStats part;
        part.add(v.data() + start, n);
        s.merge(part);
      } else {
        s.add(v.data() + start, n);
      }
    }
    c.scales[name] = scale_from_threshold(compute_threshold(s, m, 99.9));
  }
  return format_calibration_cache(c);
}

TEST(QuantDeterminism, BatchSplitGivesIdenticalCache) {
  std::mt19937 rng(99);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::map<std::string, std::vector<float>> data;
  std::vector<float>& a = data["conv_out"];
  for (int i = 0; i < 60000; ++i) a.push_back(n(rng) * (i < 20000 ? 0.1f : (i < 40000 ? 1.0f : 5.0f)));
  std::vector<float>& b = data["relu_out"];
  for (int i = 0; i < 30000; ++i) b.push_back(std::max(0.0f, n(rng) * 3.0f));
  data["zeros"] = std::vector<float>(1000, 0.0f);
  for (auto m : {CalibrationMethod::kEntropy, CalibrationMethod::kMinMax, CalibrationMethod::kPercentile}) {
    const std::string ref = cache_bytes(data, 1u << 30, m, false);
    EXPECT_EQ(cache_bytes(data, 1000, m, false), ref) << method_name(m);
    EXPECT_EQ(cache_bytes(data, 4099, m, true), ref) << method_name(m);
    EXPECT_EQ(cache_bytes(data, 1, m, true), ref) << method_name(m);
  }
}

}  // namespace
}  // namespace kiln::quant
