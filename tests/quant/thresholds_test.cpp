// Thresholds against tests/quant/thresholds_reference.py (numpy, written from
// the method descriptions) and against hand-computed values.
#include "quant/thresholds.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "kiln/error.h"

namespace kiln::quant {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::string name;
  std::vector<std::uint64_t> bins;
  double width;
  float min, max;
};

Case from_stats(const std::string& name, const std::vector<float>& v) {
  TensorStats s;
  s.add(v);
  return {name, s.bins(), s.bin_width(), s.min(), s.max()};
}

std::vector<Case> cases() {
  std::mt19937 rng(1234);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<Case> out;
  std::vector<float> gauss, heavy, relu;
  for (int i = 0; i < 200000; ++i) gauss.push_back(n(rng));
  for (int i = 0; i < 200000; ++i) {
    const float d = n(rng);
    heavy.push_back(n(rng) / (std::fabs(d) + 0.05f));  // Cauchy-like tails
  }
  for (int i = 0; i < 50000; ++i) relu.push_back(std::max(0.0f, 2.0f * n(rng) + 0.5f));
  out.push_back(from_stats("gaussian", gauss));
  out.push_back(from_stats("heavy_tailed", heavy));
  out.push_back(from_stats("relu", relu));
  out.push_back(from_stats("all_zero", std::vector<float>(1000, 0.0f)));
  out.push_back(from_stats("one_spike", std::vector<float>(500, -3.0f)));  // one value, many times
  // Hand-made: spike at bin 1500 plus a small body (outliers for i <= 1500).
  Case spike{"spike_1500", std::vector<std::uint64_t>(2048, 0), 0.001, -2.0f, 1.6f};
  spike.bins[1500] = 1000;
  for (int b = 0; b < 300; ++b) spike.bins[b] = 3 + b % 5;
  out.push_back(spike);
  return out;
}

const std::vector<double> kPercentiles = {50.0, 99.0, 99.9, 99.99, 100.0};

TEST(QuantThresholds, MatchNumpyReference) {
  const fs::path script = fs::path(__FILE__).parent_path() / "thresholds_reference.py";
  // scripts/test.sh points KILN_PYTHON at its venv, which has numpy.
  const char* env = std::getenv("KILN_PYTHON");
  const std::string python = env && *env ? env : "python3";
  if (std::system((python + " -c 'import numpy' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python << " with numpy is not available; the reference check needs it";
  ASSERT_TRUE(fs::exists(script)) << script;

  const std::vector<Case> cs = cases();
  nlohmann::json doc;
  for (const Case& c : cs)
    doc["histograms"].push_back(
        {{"name", c.name}, {"bins", c.bins}, {"bin_width", c.width}, {"min", c.min}, {"max", c.max},
         {"percentiles", kPercentiles}});
  const fs::path tmp = fs::temp_directory_path() / ("kiln_quant_thr_" + std::to_string(::getpid()) + ".json");
  std::ofstream(tmp) << doc.dump();

  const std::string cmd = python + " '" + script.string() + "' '" + tmp.string() + "'";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string text;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) text.append(buf, n);
  const int rc = ::pclose(pipe);
  fs::remove(tmp);
  ASSERT_EQ(rc, 0) << text;
  const nlohmann::json ref = nlohmann::json::parse(text);

  for (const Case& c : cs) {
    SCOPED_TRACE(c.name);
    const nlohmann::json& r = ref.at(c.name);
    const EntropyResult e = entropy_threshold(c.bins, c.width);
    EXPECT_EQ(e.bins, r.at("entropy_bins").get<int>());
    EXPECT_NEAR(e.threshold, r.at("entropy_threshold").get<double>(), 1e-12 * e.threshold);
    const double mm = minmax_threshold(c.min, c.max);
    EXPECT_NEAR(mm, r.at("minmax").get<double>(), 1e-6 * mm);
    for (std::size_t k = 0; k < kPercentiles.size(); ++k) {
      const double p = percentile_threshold(c.bins, c.width, kPercentiles[k]);
      EXPECT_NEAR(p, r.at("percentile").at(k).get<double>(), 1e-6 * p) << "p=" << kPercentiles[k];
    }
    for (double t : {e.threshold, mm}) EXPECT_TRUE(std::isfinite(t) && t > 0.0);
  }
}

TEST(QuantThresholds, CandidateKlByHand) {
  std::vector<std::uint64_t> h(256, 0);
  h[0] = 50;  // exact zeros: replaced by h[1]'s count
  h[1] = 1;
  h[2] = 1;
  h[3] = 3;
  // i = 256: two bins per level. P = [1,1,1,3]/6; level 0 = bins 0-1 (mass 2),
  // level 1 = bins 2-3 (mass 4) -> Q = [1,1,2,2]/6.
  EXPECT_NEAR(entropy_candidate_kl(h, 256), std::log(0.5) / 6 + 0.5 * std::log(1.5), 1e-15);
  // Outliers at bin 200 fold into P[127] for i = 128, where h is empty: infinite.
  h[200] = 4;
  EXPECT_EQ(entropy_candidate_kl(h, 128), std::numeric_limits<double>::infinity());
  // i = 201 holds them: bin 200 is level floor(128 * 200 / 201) = 127, alone.
  EXPECT_NEAR(entropy_candidate_kl(h, 201), 0.1 * std::log(0.5) + 0.3 * std::log(1.5), 1e-15);
}

TEST(QuantThresholds, SpikeTiesKeepTheWidestCandidate) {
  std::vector<std::uint64_t> h(2048, 0);
  h[700] = 10;
  EXPECT_EQ(entropy_candidate_kl(h, 700), std::numeric_limits<double>::infinity());
  EXPECT_EQ(entropy_candidate_kl(h, 701), 0.0);
  const EntropyResult e = entropy_threshold(h, 0.5);
  EXPECT_EQ(e.bins, 2048);  // every i > 700 has KL 0: the last one is kept
  EXPECT_EQ(e.kl, 0.0);
  EXPECT_EQ(e.threshold, 2048 * 0.5);
}

// Half of a ReLU output is exactly 0. Counting those zeros pulled the old
// search down to about a third of the range; the threshold must keep the
// body of the distribution.
TEST(QuantThresholds, ReluZerosDoNotPullThresholdDown) {
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> v;
  for (int i = 0; i < 100000; ++i) v.push_back(std::max(0.0f, n(rng)));
  TensorStats s;
  s.add(v);
  const double t = entropy_threshold(s.bins(), s.bin_width()).threshold;
  EXPECT_GT(t, 0.5 * s.max());
  EXPECT_LE(t, double(s.range()));
}

TEST(QuantThresholds, AllZeroAndEmptyGetPositiveThreshold) {
  TensorStats zero;
  zero.add(std::vector<float>(64, 0.0f));
  TensorStats empty;
  empty.add({std::numeric_limits<float>::quiet_NaN()});
  for (const TensorStats* s : {&zero, &empty})
    for (auto m : {CalibrationMethod::kEntropy, CalibrationMethod::kMinMax, CalibrationMethod::kPercentile}) {
      const double t = compute_threshold(*s, m);
      EXPECT_TRUE(std::isfinite(t) && t > 0.0) << method_name(m);
      const float sc = scale_from_threshold(t);
      EXPECT_TRUE(std::isnormal(sc) && sc > 0.0f);
    }
}

TEST(QuantThresholds, MinMaxAndPercentileByHand) {
  EXPECT_EQ(minmax_threshold(-7.0f, 3.0f), 7.0);
  EXPECT_EQ(minmax_threshold(-1.0f, 2.5f), 2.5);
  std::vector<std::uint64_t> h(2048, 0);
  h[0] = 50;
  h[9] = 49;
  h[2000] = 1;
  EXPECT_EQ(percentile_threshold(h, 0.25, 50.0), 0.25);      // bin 0 holds half: edge 1
  EXPECT_EQ(percentile_threshold(h, 0.25, 99.0), 10 * 0.25);  // 99 of 100 below edge 10
  EXPECT_EQ(percentile_threshold(h, 0.25, 99.5), 2001 * 0.25);
  EXPECT_THROW(percentile_threshold(h, 0.25, 0.0), Error);
  EXPECT_THROW(percentile_threshold(h, 0.25, 100.5), Error);
  EXPECT_EQ(scale_from_threshold(127.0), 1.0f);
}

}  // namespace
}  // namespace kiln::quant
