#include "quant/weights.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>

#include "kiln/error.h"

namespace kiln::quant {
namespace {

TEST(QuantWeights, PerChannelScalesWithZeroAndTinyChannels) {
  // [4, 2, 2]: a normal channel, an all-zero one, a negative-max one, a tiny one.
  const std::vector<float> w = {0.5f, -1.25f, 0.0f, 1.0f,  0.0f, -0.0f, 0.0f, 0.0f,
                                -3.3f, 2.0f, 1.0f, 0.1f,   1e-40f, 0.0f, -2e-40f, 0.0f};
  const std::vector<float> s = per_channel_weight_scales(w.data(), {4, 2, 2}, "conv.weight");
  ASSERT_EQ(s.size(), 4u);
  // Oracle: the float64 quotient rounded to float (same as a rounded float
  // division for these operands).
  EXPECT_EQ(s[0], static_cast<float>(1.25 / 127.0));
  EXPECT_EQ(s[1], 1.0f);
  EXPECT_EQ(s[2], static_cast<float>(static_cast<double>(3.3f) / 127.0));
  EXPECT_EQ(s[3], FLT_MIN);  // 2e-40 / 127 is denormal: raised
  for (float v : s) EXPECT_TRUE(std::isnormal(v) && v > 0);
}

TEST(QuantWeights, RefusesBadInput) {
  const std::vector<float> w = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  try {
    per_channel_weight_scales(w.data(), {2, 1}, "fc.weight");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find("fc.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("channel 1"), std::string::npos);
  }
  EXPECT_THROW(per_channel_weight_scales(w.data(), {}, "s"), Error);
  EXPECT_THROW(per_channel_weight_scales(w.data(), {2, 0}, "z"), Error);
}

}  // namespace
}  // namespace kiln::quant
