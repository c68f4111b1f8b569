#include "quant/calibration_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "kiln/error.h"

namespace kiln::quant {
namespace {

namespace fs = std::filesystem;

// Independent decode of a normal float32 bit pattern by its fields.
double decode_bits(std::uint32_t u) {
  const int exp = static_cast<int>((u >> 23) & 0xff);
  const double mant = 1.0 + static_cast<double>(u & 0x7fffff) / 8388608.0;
  return ((u >> 31) ? -1.0 : 1.0) * std::ldexp(mant, exp - 127);
}

std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

fs::path temp_file(const std::string& tag) {
  return fs::temp_directory_path() / ("kiln_quant_cache_" + tag + "_" + std::to_string(::getpid()) + ".txt");
}

// Expects parse to throw kBadInput with each of `needles` in the message.
void expect_refused(const std::string& text, const std::vector<std::string>& needles) {
  try {
    parse_calibration_cache(text, "calib.cache");
    ADD_FAILURE() << "accepted:\n" << text;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadInput);
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST(QuantCache, WritesKnownBytesSorted) {
  CalibrationCache c;
  c.header = kiln_cache_header(CalibrationMethod::kEntropy);
  c.scales["zeta"] = 1.0f;      // 0x3f800000
  c.scales["alpha"] = 0.5f;     // 0x3f000000
  c.scales["mid:0"] = 2.0f;    // 0x40000000
  EXPECT_EQ(format_calibration_cache(c), "KILN-1-Entropy\nalpha: 3f000000\nmid:0: 40000000\nzeta: 3f800000\n");
}

TEST(QuantCache, RoundTripIsBitExactAndBytesStable) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-20.0f, 10.0f);
  CalibrationCache c;
  c.header = kiln_cache_header(CalibrationMethod::kPercentile);
  for (int i = 0; i < 50; ++i) c.scales["t" + std::to_string(i * 7919 % 101)] = std::exp(u(rng));
  c.scales["min_normal"] = FLT_MIN;
  c.scales["max"] = FLT_MAX;
  c.scales["name: with colon"] = 0.125f;
  const fs::path p1 = temp_file("a"), p2 = temp_file("b");
  write_calibration_cache(c, p1.string());
  const CalibrationCache back = read_calibration_cache(p1.string());
  write_calibration_cache(back, p2.string());
  EXPECT_EQ(back.header, c.header);
  ASSERT_EQ(back.scales.size(), c.scales.size());
  for (const auto& [name, s] : c.scales) EXPECT_EQ(bits(back.scales.at(name)), bits(s)) << name;
  EXPECT_EQ(format_calibration_cache(c), format_calibration_cache(back));
  std::ifstream f1(p1, std::ios::binary), f2(p2, std::ios::binary);
  const std::string b1((std::istreambuf_iterator<char>(f1)), {}), b2((std::istreambuf_iterator<char>(f2)), {});
  EXPECT_EQ(b1, b2);
  fs::remove(p1);
  fs::remove(p2);
}

TEST(QuantCache, ParsesTensorRtSnippet) {
  const std::string text =
      "TRT-8601-EntropyCalibration2\r\n"
      "input: 3c010a14\r\n"
      "(Unnamed Layer* 0) [Convolution]_output: 3d0c8f7b\r\n"
      "conv1/relu:0: 3e4ccccd\n"
      "\n";
  const CalibrationCache c = parse_calibration_cache(text, "trt.cache");
  EXPECT_EQ(c.header, "TRT-8601-EntropyCalibration2");
  ASSERT_EQ(c.scales.size(), 3u);
  EXPECT_EQ(static_cast<double>(c.scales.at("input")), decode_bits(0x3c010a14));
  EXPECT_EQ(static_cast<double>(c.scales.at("(Unnamed Layer* 0) [Convolution]_output")), decode_bits(0x3d0c8f7b));
  EXPECT_EQ(static_cast<double>(c.scales.at("conv1/relu:0")), decode_bits(0x3e4ccccd));
  EXPECT_NEAR(c.scales.at("conv1/relu:0"), 0.2, 1e-8);
}

TEST(QuantCache, RefusesMalformed) {
  const std::string h = "KILN-1-MinMax\n";
  expect_refused("", {"calib.cache", "empty"});
  expect_refused("a: 3f800000\n", {"calib.cache:1", "header"});
  expect_refused("TRT-x-Entropy\n", {"calib.cache:1"});
  expect_refused(h + "a 3f800000\n", {"calib.cache:2", "a 3f800000"});
  expect_refused(h + "a: 3g800000\n", {"calib.cache:2", "'a'"});
  expect_refused(h + "a: 3f8000000\n", {"calib.cache:2"});  // 9 digits
  expect_refused(h + "a: \n", {"calib.cache:2"});
  expect_refused(h + "a: 3f800000\n\nb: 1\na: 3f800000\n", {"calib.cache:5", "'a'", "twice"});
  expect_refused(h + "neg: bf800000\n", {"calib.cache:2", "'neg'"});
  expect_refused(h + "nan: 7fc00000\n", {"calib.cache:2", "'nan'"});
  expect_refused(h + "inf: 7f800000\n", {"calib.cache:2", "'inf'"});
  expect_refused(h + "zero: 0\n", {"calib.cache:2", "'zero'"});
}

TEST(QuantCache, WriteRefusesBadScales) {
  CalibrationCache c{"KILN-1-MinMax", {{"x", 0.0f}}};
  EXPECT_THROW(format_calibration_cache(c), Error);
  c.scales["x"] = std::nanf("");
  EXPECT_THROW(format_calibration_cache(c), Error);
  c.scales = {{"a\nb", 1.0f}};
  EXPECT_THROW(format_calibration_cache(c), Error);
}

TEST(QuantCache, MismatchListsNames) {
  CalibrationCache c{"KILN-1-Entropy", {{"a", 1.0f}, {"b", 1.0f}, {"stale1", 1.0f}, {"stale2", 1.0f}}};
  EXPECT_NO_THROW(check_cache_matches(c, {"stale2", "a", "stale1", "b"}, "m.cache"));
  std::vector<std::string> net = {"a", "b", "new_x", "new_y"};
  for (int i = 0; i < 10; ++i) net.push_back("more" + std::to_string(i));
  try {
    check_cache_matches(c, net, "m.cache");
    FAIL() << "expected a mismatch";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(e.code(), ErrorCode::kBadInput);
    for (const char* n : {"m.cache", "12 tensor(s) missing", "'more0'", "'more1'", "7 more", "2 cache name(s)", "'stale1'", "'stale2'"})
      EXPECT_NE(m.find(n), std::string::npos) << n << " not in: " << m;
    EXPECT_EQ(m.find("'a'"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace kiln::quant
