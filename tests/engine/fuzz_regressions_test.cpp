// Replays the fuzz seeds and every crash input the fuzzers ever found
// (fuzz/corpus/<target>/, fuzz/regressions/<target>/) through the same entry
// points the fuzz targets use. Each input must either parse or throw
// kiln::Error; a crash, a sanitizer report or another exception fails here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "kiln/kiln.h"
#include "npy.h"
#include "quant/calibration_cache.h"

namespace {

namespace fs = std::filesystem;

fs::path fuzz_dir() {
  if (const char* root = std::getenv("KILN_SOURCE_DIR")) return fs::path(root) / "fuzz";
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "fuzz";
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<fs::path> files_in(const std::string& kind, const std::string& target) {
  std::vector<fs::path> out;
  fs::path dir = fuzz_dir() / kind / target;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

struct Quiet : kiln::Logger {
  void log(kiln::Severity, const std::string&) override {}
};

// The fuzz targets' bodies. Returns true when the input was accepted.
bool run_onnx(const std::vector<uint8_t>& b) {
  try {
    auto net = kiln::parse_onnx_bytes(std::string(b.begin(), b.end()), "/nonexistent-kiln-fuzz-dir");
    (void)kiln::summarize(*net);
    return true;
  } catch (const kiln::Error&) {
    return false;
  }
}

bool run_plan(const std::vector<uint8_t>& b) {
  try {
    auto engine = kiln::Runtime().deserialize(b, "<fuzz>");
    (void)engine->summary();
    (void)engine->create_context();
    return true;
  } catch (const kiln::Error&) {
    return false;
  }
}

bool run_npy(const std::vector<uint8_t>& b) {
  try {
    kiln::HostTensor t = kiln::npy::parse(b, "<fuzz>");
    (void)kiln::npy::serialize(t);
    return true;
  } catch (const kiln::Error&) {
    return false;
  }
}

// A cache that parses must write back and parse to the same scales.
bool run_calib_cache(const std::vector<uint8_t>& b) {
  kiln::quant::CalibrationCache c;
  try {
    c = kiln::quant::parse_calibration_cache(std::string(b.begin(), b.end()), "<fuzz>");
  } catch (const kiln::Error&) {
    return false;
  }
  const auto again = kiln::quant::parse_calibration_cache(kiln::quant::format_calibration_cache(c), "<again>");
  EXPECT_EQ(again.scales, c.scales);
  return true;
}

class FuzzReplay : public ::testing::Test {
 protected:
  void SetUp() override { kiln::set_logger(&quiet_); }
  void TearDown() override { kiln::set_logger(nullptr); }
  // Every regression input, plus every seed and every truncation of it
  // (cut-off files are the commonest corruption a reader meets).
  void replay(const std::string& target, const std::function<bool(const std::vector<uint8_t>&)>& fn) {
    for (const auto& p : files_in("regressions", target)) {
      SCOPED_TRACE(p.string());
      (void)fn(read_bytes(p));
    }
    for (const auto& p : files_in("corpus", target)) {
      SCOPED_TRACE(p.string());
      std::vector<uint8_t> b = read_bytes(p);
      size_t step = b.size() > 512 ? b.size() / 256 : 1;
      for (size_t n = 0; n < b.size(); n += step) fn(std::vector<uint8_t>(b.begin(), b.begin() + n));
    }
  }
  Quiet quiet_;
};

TEST_F(FuzzReplay, OnnxImporter) {
  ASSERT_FALSE(files_in("corpus", "onnx_importer_fuzz").empty()) << "seeds missing under " << fuzz_dir();
  replay("onnx_importer_fuzz", run_onnx);
  // The well-formed seeds must still be accepted, or the fuzzer would only be
  // exploring the first error check.
  for (const char* name : {"relu.onnx", "conv.onnx", "shape_reshape.onnx", "local_function.onnx"}) {
    EXPECT_TRUE(run_onnx(read_bytes(fuzz_dir() / "corpus/onnx_importer_fuzz" / name))) << name;
  }
  // Fuzzed models with a node that names no outputs (kernels index outs[0]).
  for (int k = 1; k <= 4; ++k) {
    std::string name = "node_without_outputs_" + std::to_string(k) + ".onnx";
    EXPECT_FALSE(run_onnx(read_bytes(fuzz_dir() / "regressions/onnx_importer_fuzz" / name))) << name;
  }
  // Its weight file is absent on purpose: a clean refusal.
  EXPECT_FALSE(run_onnx(read_bytes(fuzz_dir() / "corpus/onnx_importer_fuzz/external_data.onnx")));
}

TEST_F(FuzzReplay, PlanReader) {
  replay("plan_reader_fuzz", run_plan);
  for (const auto& p : files_in("corpus", "plan_reader_fuzz")) {
    EXPECT_TRUE(run_plan(read_bytes(p))) << p << " no longer loads; after a plan format change regenerate it with "
                                         << "python3 fuzz/make_seeds.py build-fuzz/fuzz/make_plan_seed";
  }
}

TEST_F(FuzzReplay, NpyReader) {
  ASSERT_FALSE(files_in("corpus", "npy_reader_fuzz").empty()) << "seeds missing under " << fuzz_dir();
  replay("npy_reader_fuzz", run_npy);
  // Values written by numpy (fuzz/make_seeds.py): arange(6).reshape(2, 3).
  kiln::HostTensor t = kiln::npy::parse(read_bytes(fuzz_dir() / "corpus/npy_reader_fuzz/f4.npy"), "f4.npy");
  ASSERT_EQ(t.shape, (std::vector<int64_t>{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t.as<float>()[i], static_cast<float>(i));
  for (const auto& p : files_in("corpus", "npy_reader_fuzz")) EXPECT_TRUE(run_npy(read_bytes(p))) << p;
  // Shape (2, 1, 2, 1, 1212221, 12122212122212, ..., 0, ...): empty, but its
  // other dimensions overflow int64 when multiplied; numpy refuses it too.
  try {
    kiln::npy::parse(read_bytes(fuzz_dir() / "regressions/npy_reader_fuzz/empty_shape_overflow.npy"), "x.npy");
    ADD_FAILURE() << "an empty shape whose other dimensions overflow was accepted";
  } catch (const kiln::Error& e) {
    EXPECT_EQ(e.code(), kiln::ErrorCode::kBadInput);
  }
}

}  // namespace

TEST_F(FuzzReplay, CalibrationCacheReader) {
  ASSERT_FALSE(files_in("corpus", "calib_cache_fuzz").empty()) << "seeds missing under " << fuzz_dir();
  replay("calib_cache_fuzz", run_calib_cache);
  for (const auto& p : files_in("corpus", "calib_cache_fuzz")) EXPECT_TRUE(run_calib_cache(read_bytes(p))) << p;
  // Found by the fuzzer: a header or a tensor name holding a carriage return
  // was read, but could not be written back.
  for (const auto& p : files_in("regressions", "calib_cache_fuzz")) EXPECT_FALSE(run_calib_cache(read_bytes(p))) << p;
}
