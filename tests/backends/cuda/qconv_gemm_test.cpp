// kiln::QConv 1x1 convolutions (stride 1, no padding, groups 1) on the
// persistent CUTLASS GEMM tiles (cutlass_sm90_i8gemm:<config>) against the
// CPU QConv kernel, next to every other tactic offered for the same node
// (qconv_check.h: layout mixes, tolerances). Shapes are ResNet-50's 1x1
// layers at batch 2, plus partial tiles in every dimension; the GEMM tiles
// must be offered there (on an sm_90 GPU with CUTLASS built) and nowhere a
// 1x1 convolution is not a plain GEMM.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "backends/cuda/qconv_check.h"

namespace kiln {
namespace {

using qconv_check::any_cutlass;
using qconv_check::any_gemm;
using qconv_check::check_case;
using qconv_check::QCase;

// The int8-output GEMM tiles, both expected wherever int8 Y fits.
const std::vector<std::string> kInt8Gemms = {"i8_128x128x128_pingpong", "i8_256x128x128_coop"};

// A 1x1 stride-1 QConv of batch 2 on an hw x hw map with Relu, int8 output.
QCase one_by_one(const char* name, int64_t c, int64_t hw, int64_t k, uint32_t seed) {
  QCase q;
  q.name = name;
  q.n = 2, q.c = c, q.h = hw, q.w = hw, q.k = k, q.r = 1, q.s = 1;
  q.pads = {0, 0, 0, 0};
  q.act = "Relu";
  q.cutlass = {"i8_128x128x64", "i8_128x64x64"};
  q.gemm = kInt8Gemms;
  q.dp4a = true;
  q.seed = seed;
  return q;
}

// layer1.x conv3 with the block's int8 shortcut: M = 6272 rows, a K tile of
// 128 over C = 64 (half the tile beyond C, read as zeros).
TEST(CudaQConvGemm, Resnet50Layer1Conv3Int8ResidualRelu) {
  KILN_REQUIRE_GPU();
  QCase c = one_by_one("1x1 56x56 C64 K256 int8 Z relu", 64, 56, 256, 201);
  c.z = DataType::kInt8;
  check_case(c);
}

// layer1.x conv1: 64 output channels, half of a 128-wide N tile.
TEST(CudaQConvGemm, Resnet50Layer1Conv1) {
  KILN_REQUIRE_GPU();
  check_case(one_by_one("1x1 56x56 C256 K64 relu", 256, 56, 64, 202));
}

// layer3.x conv1: a long reduction (C = 1024, 8 K tiles).
TEST(CudaQConvGemm, Resnet50Layer3Conv1) {
  KILN_REQUIRE_GPU();
  check_case(one_by_one("1x1 14x14 C1024 K256 relu", 1024, 14, 256, 203));
}

// layer4.x conv1: C = 2048, M = 98 rows (less than one tile), K = 512.
TEST(CudaQConvGemm, Resnet50Layer4Conv1) {
  KILN_REQUIRE_GPU();
  check_case(one_by_one("1x1 7x7 C2048 K512 relu", 2048, 7, 512, 204));
}

// layer4.x conv3 with its int8 shortcut: 2048 output channels (16 N tiles).
TEST(CudaQConvGemm, Resnet50Layer4Conv3Int8Residual) {
  KILN_REQUIRE_GPU();
  QCase c = one_by_one("1x1 7x7 C512 K2048 int8 Z relu", 512, 7, 2048, 205);
  c.z = DataType::kInt8;
  check_case(c);
}

// M = 143 (one 13 x 11 image), C = 48 and K = 80: no dimension a multiple
// of its tile; an int8 residual, Clip, no bias.
TEST(CudaQConvGemm, OddRowsPartialTilesResidualClip) {
  KILN_REQUIRE_GPU();
  QCase c = one_by_one("1x1 13x11 C48 K80 int8 Z clip no bias", 48, 1, 80, 206);
  c.n = 1, c.h = 13, c.w = 11;
  c.bias = false;
  c.z = DataType::kInt8;
  c.act = "Clip";
  c.act_params = {-0.25f, 2.f};
  check_case(c);
}

// LeakyRelu without a residual; M = 2 * 9 * 9 = 162 rows: the last M tile
// holds 34 of 128 rows (ping-pong), the only one 162 of 256 (cooperative).
TEST(CudaQConvGemm, LeakyReluWithoutResidual) {
  KILN_REQUIRE_GPU();
  QCase c = one_by_one("1x1 9x9 C128 K96 leaky", 128, 9, 96, 207);
  c.act = "LeakyRelu";
  c.act_params = {0.1f};
  check_case(c);
}

// fp16 output: with an int8 residual (layer4.2 conv3 before the float
// pooling, scaled down) and without one.
TEST(CudaQConvGemm, Fp16OutWithAndWithoutResidual) {
  KILN_REQUIRE_GPU();
  QCase c = one_by_one("1x1 7x7 C256 K512 int8 Z relu fp16 out", 256, 7, 512, 208);
  c.z = DataType::kInt8;
  c.to = DataType::kFloat16;
  c.cutlass = {"f16_128x128x64"};
  c.gemm = {"f16_128x128x128_pingpong"};
  check_case(c);
  c = one_by_one("1x1 5x5 C64 K48 fp16 out", 64, 5, 48, 209);
  c.to = DataType::kFloat16;
  c.cutlass = {"f16_128x128x64"};
  c.gemm = {"f16_128x128x128_pingpong"};
  check_case(c);
}

// The GEMM tiles take only stride 1 without padding, groups 1, C a multiple
// of 16 and the output dtypes they are compiled for: other tactics run these.
TEST(CudaQConvGemm, NotPlainGemmsStayOffTheGemmTiles) {
  KILN_REQUIRE_GPU();
  QCase c = one_by_one("1x1 pad 1 C32 K32", 32, 6, 32, 211);
  c.pads = {1, 1, 1, 1};
  c.gemm = {};
  EXPECT_FALSE(any_gemm(check_case(c)));

  c = one_by_one("1x1 stride 2 C32 K32 int8 Z", 32, 9, 32, 212);
  c.strides = {2, 2};
  c.z = DataType::kInt8;
  c.gemm = {};
  EXPECT_FALSE(any_gemm(check_case(c)));

  c = one_by_one("1x1 groups 2 C32 K32", 32, 6, 32, 213);
  c.group = 2;
  c.cutlass = {}, c.gemm = {};
  EXPECT_FALSE(any_cutlass(check_case(c)));

  c = one_by_one("1x1 C32 K32 fp32 out", 32, 6, 32, 214);
  c.to = DataType::kFloat32;
  c.cutlass = {"f32_128x128x64"}, c.gemm = {};
  EXPECT_FALSE(any_gemm(check_case(c)));  // no fp32 GEMM tile is compiled

  c = one_by_one("1x1 C40 K32", 40, 6, 32, 215);
  c.cutlass = {}, c.gemm = {};
  EXPECT_FALSE(any_cutlass(check_case(c)));  // C not a multiple of 16
}

}  // namespace
}  // namespace kiln
