// calibrate(): scales of a small Conv+Relu -> MaxPool -> Conv network against
// a float64 reference written here (inputs and weights are multiples of
// powers of two, so every activation is exact in float32 whatever the
// summation order and the reference equals the engine bit for bit), the
// entropy thresholds against tests/quant/thresholds_reference.py, thread-count
// determinism, the cache round trip and the typed errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "backends/cpu/parallel.h"
#include "builder/network.h"
#include "kiln/kiln.h"
#include "onnx/import_test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using onnx_test::ModelBuilder;

constexpr int kN = 2, kC = 2, kH = 6, kW = 6, kK1 = 3, kK2 = 2;

// Deterministic multiples of 1/denominator in [-limit, limit].
std::vector<float> dyadic(size_t n, uint32_t seed, int denominator, int limit) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-limit * denominator, limit * denominator);
  std::vector<float> v(n);
  for (float& x : v) x = float(d(rng)) / float(denominator);
  return v;
}

struct Weights {
  std::vector<float> w1 = dyadic(kK1 * kC * 9, 11, 4, 1), b1 = dyadic(kK1, 12, 4, 1);
  std::vector<float> w2 = dyadic(kK2 * kK1, 13, 4, 1), b2 = dyadic(kK2, 14, 4, 1);
};

// x[2,2,6,6] -> Conv 3x3 pad 1 (c1) -> Relu (r1) -> MaxPool 2x2 (p) -> Conv 1x1 (y)
std::string model_bytes(const Weights& w) {
  ModelBuilder mb(17);
  mb.input("x", onnx::TensorProto::FLOAT, {kN, kC, kH, kW});
  *mb.g->add_initializer() = onnx_test::float_tensor("w1", {kK1, kC, 3, 3}, w.w1);
  *mb.g->add_initializer() = onnx_test::float_tensor("b1", {kK1}, w.b1);
  *mb.g->add_initializer() = onnx_test::float_tensor("w2", {kK2, kK1, 1, 1}, w.w2);
  *mb.g->add_initializer() = onnx_test::float_tensor("b2", {kK2}, w.b2);
  onnx_test::attr_ints(mb.node("Conv", {"x", "w1", "b1"}, {"c1"}, "conv1"), "pads", {1, 1, 1, 1});
  mb.node("Relu", {"c1"}, {"r1"}, "relu1");
  auto* pool = mb.node("MaxPool", {"r1"}, {"p"}, "pool1");
  onnx_test::attr_ints(pool, "kernel_shape", {2, 2});
  onnx_test::attr_ints(pool, "strides", {2, 2});
  mb.node("Conv", {"p", "w2", "b2"}, {"y"}, "conv2");
  mb.output("y");
  return mb.m.SerializeAsString();
}

HostTensor floats(std::vector<int64_t> shape, const std::vector<float>& v) {
  HostTensor t = HostTensor::zeros(DataType::kFloat32, shape);
  std::copy(v.begin(), v.end(), t.as<float>());
  return t;
}

// The network's activations in float64, computed from the ONNX definitions.
std::map<std::string, std::vector<double>> reference(const Weights& w, const std::vector<float>& x) {
  std::vector<double> c1(size_t(kN) * kK1 * kH * kW), r1(c1.size());
  for (int n = 0; n < kN; ++n)
    for (int k = 0; k < kK1; ++k)
      for (int i = 0; i < kH; ++i)
        for (int j = 0; j < kW; ++j) {
          double acc = w.b1[size_t(k)];
          for (int c = 0; c < kC; ++c)
            for (int u = 0; u < 3; ++u)
              for (int v = 0; v < 3; ++v) {
                const int ii = i + u - 1, jj = j + v - 1;
                if (ii < 0 || jj < 0 || ii >= kH || jj >= kW) continue;
                acc += double(x[size_t(((n * kC + c) * kH + ii) * kW + jj)]) *
                       double(w.w1[size_t(((k * kC + c) * 3 + u) * 3 + v)]);
              }
          const size_t o = size_t(((n * kK1 + k) * kH + i) * kW + j);
          c1[o] = acc;
          r1[o] = std::max(acc, 0.0);
        }
  const int ph = kH / 2, pw = kW / 2;
  std::vector<double> p(size_t(kN) * kK1 * ph * pw), y(size_t(kN) * kK2 * ph * pw);
  for (int n = 0; n < kN; ++n)
    for (int k = 0; k < kK1; ++k)
      for (int i = 0; i < ph; ++i)
        for (int j = 0; j < pw; ++j) {
          double m = -INFINITY;
          for (int u = 0; u < 2; ++u)
            for (int v = 0; v < 2; ++v) m = std::max(m, r1[size_t(((n * kK1 + k) * kH + 2 * i + u) * kW + 2 * j + v)]);
          p[size_t(((n * kK1 + k) * ph + i) * pw + j)] = m;
        }
  for (int n = 0; n < kN; ++n)
    for (int k = 0; k < kK2; ++k)
      for (int s = 0; s < ph * pw; ++s) {
        double acc = w.b2[size_t(k)];
        for (int c = 0; c < kK1; ++c) acc += p[size_t((n * kK1 + c) * ph * pw + s)] * double(w.w2[size_t(k * kK1 + c)]);
        y[size_t((n * kK2 + k) * ph * pw + s)] = acc;
      }
  return {{"x", std::vector<double>(x.begin(), x.end())}, {"r1", r1}, {"p", p}, {"y", y}};
}

class VectorCalibrator : public Calibrator {
 public:
  explicit VectorCalibrator(std::vector<std::map<std::string, HostTensor>> batches) : batches_(std::move(batches)) {}
  bool next_batch(std::map<std::string, HostTensor>& inputs) override {
    if (next_ >= batches_.size()) return false;
    inputs = batches_[next_++];
    return true;
  }
  int batch_count() const override { return int(batches_.size()); }

 private:
  std::vector<std::map<std::string, HostTensor>> batches_;
  size_t next_ = 0;
};

std::vector<std::vector<float>> input_batches(int count, uint32_t seed) {
  std::vector<std::vector<float>> out;
  for (int b = 0; b < count; ++b) out.push_back(dyadic(size_t(kN) * kC * kH * kW, seed + uint32_t(b), 8, 4));
  return out;
}

VectorCalibrator calibrator_of(const std::vector<std::vector<float>>& xs) {
  std::vector<std::map<std::string, HostTensor>> batches;
  for (const auto& x : xs) batches.push_back({{"x", floats({kN, kC, kH, kW}, x)}});
  return VectorCalibrator(std::move(batches));
}

// Every value each tensor takes over all batches, from the float64 reference.
std::map<std::string, std::vector<double>> reference_values(const Weights& w, const std::vector<std::vector<float>>& xs) {
  std::map<std::string, std::vector<double>> all;
  for (const auto& x : xs)
    for (auto& [name, v] : reference(w, x)) all[name].insert(all[name].end(), v.begin(), v.end());
  return all;
}

// The histogram rule of quant/histogram.h written out: range = the smallest
// power of two above max |x|, 2048 bins of |x| over [0, range).
struct RefHistogram {
  std::vector<uint64_t> bins = std::vector<uint64_t>(2048, 0);
  double width = 0;
};
RefHistogram histogram_of(const std::vector<double>& v) {
  double amax = 0;
  for (double x : v) amax = std::max(amax, std::fabs(x));
  RefHistogram h;
  if (amax == 0) {
    h.bins[0] = v.size();
    return h;
  }
  double range = 1;
  while (range <= amax) range *= 2;
  while (range / 2 > amax) range /= 2;
  h.width = range / 2048;
  for (double x : v) ++h.bins[size_t(std::floor(std::fabs(x) / h.width))];
  return h;
}

double ref_percentile(const RefHistogram& h, double pct) {
  uint64_t total = 0;
  for (uint64_t c : h.bins) total += c;
  const double target = pct / 100.0 * double(total);
  uint64_t cum = 0;
  for (size_t k = 0; k < h.bins.size(); ++k) {
    cum += h.bins[k];
    if (double(cum) >= target) return double(k + 1) * h.width;
  }
  return double(h.bins.size()) * h.width;
}

float ref_scale(double threshold) { return float(threshold / 127.0); }

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

fs::path temp_path(const std::string& tag) {
  return fs::temp_directory_path() / ("kiln_calib_" + tag + "_" + std::to_string(::getpid()) + ".cache");
}

struct Fixture {
  Weights w;
  NetworkPtr net = parse_onnx_bytes(model_bytes(w), ".");
  std::vector<std::vector<float>> xs = input_batches(3, 100);
};

TEST(Calibrate, MinMaxAndPercentileMatchFloat64Reference) {
  Fixture f;
  const auto values = reference_values(f.w, f.xs);
  for (auto method : {CalibrationMethod::kMinMax, CalibrationMethod::kPercentile}) {
    for (double pct : {50.0, 99.0, 100.0}) {
      if (method == CalibrationMethod::kMinMax && pct != 100.0) continue;
      SCOPED_TRACE(std::string(calibration_method_name(method)) + " " + std::to_string(pct));
      VectorCalibrator calib = calibrator_of(f.xs);
      CalibrationConfig cfg;
      cfg.method = method;
      cfg.percentile = pct;
      cfg.calibrator = &calib;
      const std::map<std::string, float> scales = calibrate(*f.net, cfg);
      // Conv+Relu fuse into one layer whose output keeps the Relu's name: c1 is gone.
      std::vector<std::string> names;
      for (auto& kv : scales) names.push_back(kv.first);
      EXPECT_EQ(names, (std::vector<std::string>{"p", "r1", "x", "y"}));
      for (auto& [name, v] : values) {
        if (!scales.count(name)) continue;
        double want;
        if (method == CalibrationMethod::kMinMax) {
          want = 0;
          for (double x : v) want = std::max(want, std::fabs(x));
        } else {
          want = ref_percentile(histogram_of(v), pct);
        }
        EXPECT_EQ(scales.at(name), ref_scale(want)) << name;
      }
    }
  }
}

TEST(Calibrate, EntropyMatchesNumpyReference) {
  const char* env = std::getenv("KILN_PYTHON");
  const std::string python = env && *env ? env : "python3";
  if (std::system((python + " -c 'import numpy' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python << " with numpy is not available; the reference check needs it";
  const fs::path script = fs::path(__FILE__).parent_path() / "thresholds_reference.py";
  ASSERT_TRUE(fs::exists(script)) << script;

  Fixture f;
  const auto values = reference_values(f.w, f.xs);
  nlohmann::json doc;
  for (auto& [name, v] : values) {
    const RefHistogram h = histogram_of(v);
    doc["histograms"].push_back({{"name", name}, {"bins", h.bins}, {"bin_width", h.width}, {"min", 0}, {"max", 0}});
  }
  const fs::path tmp = temp_path("entropy_json");
  std::ofstream(tmp) << doc.dump();
  FILE* pipe = ::popen((python + " '" + script.string() + "' '" + tmp.string() + "'").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string text;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) text.append(buf, n);
  const int rc = ::pclose(pipe);
  fs::remove(tmp);
  ASSERT_EQ(rc, 0) << text;
  const nlohmann::json ref = nlohmann::json::parse(text);

  VectorCalibrator calib = calibrator_of(f.xs);
  CalibrationConfig cfg;
  cfg.calibrator = &calib;  // entropy is the default
  const std::map<std::string, float> scales = calibrate(*f.net, cfg);
  ASSERT_EQ(scales.size(), 4u);
  for (auto& [name, s] : scales) {
    const double t = ref.at(name).at("entropy_threshold").get<double>();
    EXPECT_FLOAT_EQ(s, ref_scale(t)) << name;
  }
}

std::string cache_with_threads(const NetworkPtr& net, const std::vector<std::vector<float>>& xs, int threads,
                               CalibrationMethod method) {
  cpu::set_num_threads(threads);
  VectorCalibrator calib = calibrator_of(xs);
  CalibrationConfig cfg;
  cfg.method = method;
  cfg.calibrator = &calib;
  cfg.cache_path = temp_path("threads" + std::to_string(threads)).string();
  calibrate(*net, cfg);
  cpu::set_num_threads(0);  // back to the default
  const std::string text = read_text(cfg.cache_path);
  fs::remove(cfg.cache_path);
  return text;
}

TEST(Calibrate, CacheBytesDoNotDependOnThreadCount) {
  // Values that are not exact in float32, and more batches: the split of
  // tensors over threads must still not matter. Two threads run first so the
  // shared pool has a second worker.
  Weights w;
  NetworkPtr net = parse_onnx_bytes(model_bytes(w), ".");
  std::vector<std::vector<float>> xs;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.3f);
  for (int b = 0; b < 5; ++b) {
    xs.emplace_back(size_t(kN) * kC * kH * kW);
    for (float& v : xs.back()) v = nd(rng);
  }
  for (auto m : {CalibrationMethod::kEntropy, CalibrationMethod::kPercentile}) {
    const std::string two = cache_with_threads(net, xs, 2, m);
    const std::string one = cache_with_threads(net, xs, 1, m);
    EXPECT_EQ(two, one) << calibration_method_name(m);
    EXPECT_EQ(two.rfind(m == CalibrationMethod::kEntropy ? "KILN-1-Entropy\n" : "KILN-1-Percentile\n", 0), 0u) << two;
  }
}

TEST(Calibrate, CacheRoundTripsAndMismatchIsRefused) {
  Fixture f;
  const fs::path path = temp_path("roundtrip");
  VectorCalibrator calib = calibrator_of(f.xs);
  CalibrationConfig cfg;
  cfg.method = CalibrationMethod::kMinMax;
  cfg.calibrator = &calib;
  cfg.cache_path = path.string();
  const std::map<std::string, float> scales = calibrate(*f.net, cfg);
  const std::string text = read_text(path);
  ASSERT_EQ(text.rfind("KILN-1-MinMax\n", 0), 0u) << text;

  CalibrationConfig from_cache;
  from_cache.cache_path = path.string();
  EXPECT_EQ(calibrate(*f.net, from_cache), scales);

  auto expect_refused = [&](const std::string& bad, std::vector<std::string> needles) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
    try {
      calibrate(*f.net, from_cache);
      ADD_FAILURE() << "cache accepted:\n" << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kBadInput) << e.what();
      for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
  };
  std::string renamed = text;
  renamed.replace(renamed.find("\nr1: "), 5, "\nr1_renamed: ");
  expect_refused(renamed, {"'r1'", "'r1_renamed'", path.string()});
  std::string missing = text;
  const size_t at = missing.find("\np: ");
  missing.erase(at, missing.find('\n', at + 1) - at);
  expect_refused(missing, {"missing", "'p'"});
  fs::remove(path);
  try {
    calibrate(*f.net, from_cache);
    ADD_FAILURE() << "missing cache file accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

void expect_error(const std::function<void()>& f, ErrorCode code, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(Calibrate, UsageErrors) {
  Fixture f;
  expect_error([&] { calibrate(*f.net, CalibrationConfig{}); }, ErrorCode::kUsage, {"calibrat", "cache"});
  VectorCalibrator empty({});
  CalibrationConfig cfg;
  cfg.calibrator = &empty;
  expect_error([&] { calibrate(*f.net, cfg); }, ErrorCode::kUsage, {"no batch"});
  VectorCalibrator one = calibrator_of(f.xs);
  cfg.calibrator = &one;
  cfg.method = CalibrationMethod::kPercentile;
  cfg.percentile = 0.0;
  expect_error([&] { calibrate(*f.net, cfg); }, ErrorCode::kUsage, {"percentile"});
  EXPECT_STREQ(calibration_method_name(CalibrationMethod::kEntropy), "entropy");
  EXPECT_STREQ(calibration_method_name(CalibrationMethod::kMinMax), "minmax");
  EXPECT_STREQ(calibration_method_name(CalibrationMethod::kPercentile), "percentile");
}

TEST(Calibrate, BadBatchesNameInputAndBatch) {
  Fixture f;
  const HostTensor good = floats({kN, kC, kH, kW}, f.xs[0]);
  auto run = [&](std::map<std::string, HostTensor> second) {
    VectorCalibrator calib({{{"x", good}}, std::move(second)});
    CalibrationConfig cfg;
    cfg.calibrator = &calib;
    calibrate(*f.net, cfg);
  };
  expect_error([&] { run({}); }, ErrorCode::kBadInput, {"batch 1", "'x'", "fp32[2,2,6,6]"});
  expect_error([&] { run({{"x", HostTensor::zeros(DataType::kFloat32, {1, kC, kH, kW})}}); }, ErrorCode::kBadInput,
               {"batch 1", "'x'", "fp32[1,2,6,6]", "fp32[2,2,6,6]"});
  expect_error([&] { run({{"x", HostTensor::zeros(DataType::kFloat16, {kN, kC, kH, kW})}}); }, ErrorCode::kBadInput,
               {"batch 1", "'x'", "fp16"});
  expect_error([&] { run({{"x", good}, {"extra", good}}); }, ErrorCode::kBadInput, {"batch 1", "'extra'", "'x'"});
  HostTensor short_data = good;
  short_data.data.resize(8);
  expect_error([&] { run({{"x", short_data}}); }, ErrorCode::kBadInput, {"batch 1", "'x'", "bytes"});
}

TEST(Calibrate, LeavesNetworkUntouched) {
  Fixture f;
  const std::string before = f.net->graph->dump();
  VectorCalibrator calib = calibrator_of(f.xs);
  CalibrationConfig cfg;
  cfg.calibrator = &calib;
  calibrate(*f.net, cfg);
  EXPECT_EQ(f.net->graph->dump(), before);
}

}  // namespace
}  // namespace kiln
