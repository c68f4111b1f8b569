// kiln::QConv on the GPU against the CPU QConv kernel (the reference, see
// qconv_check.h for the layout mixes and tolerances): every tactic the
// registry offers, on shapes that reach each tactic's fast path (the CUTLASS
// int8, fp16 and fp32 tiles, with output channels padded to 16 or not; dp4a)
// and the direct fallback (odd channel counts, groups, depthwise), with int8
// / fp32 / fp16 residuals, activations, and int8 / fp32 / fp16 outputs. The
// 1x1 GEMM tiles have their own cases in qconv_gemm_test.cpp.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "backends/cuda/qconv_check.h"

namespace kiln {
namespace {

using qconv_check::any_cutlass;
using qconv_check::any_gemm;
using qconv_check::check_case;
using qconv_check::QCase;

TEST(CudaQConv, Int8OutReluOnTheInt8Tiles) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "3x3 C32 K64 relu int8";
  c.n = 2, c.c = 32, c.h = 14, c.w = 14, c.k = 64;
  c.act = "Relu";
  c.cutlass = {"i8_128x128x64", "i8_128x64x64"};
  c.dp4a = true;
  check_case(c);
}

TEST(CudaQConv, Int8ResidualClipStride2) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "1x1 s2 C64 K128 int8 Z clip";
  c.n = 1, c.c = 64, c.h = 15, c.w = 15, c.k = 128, c.r = 1, c.s = 1;
  c.strides = {2, 2}, c.pads = {0, 0, 0, 0};
  c.z = DataType::kInt8;
  c.act = "Clip";
  c.act_params = {-0.5f, 1.5f};
  c.cutlass = {"i8_128x128x64", "i8_128x64x64"};
  c.dp4a = true;
  c.seed = 11;
  EXPECT_FALSE(any_gemm(check_case(c)));  // a strided 1x1 is no plain GEMM
}

TEST(CudaQConv, AsymmetricPadsNoBiasLargerMap) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "3x3 s2 asymmetric pads C16 K48 no bias";
  c.n = 1, c.c = 16, c.h = 57, c.w = 43, c.k = 48;
  c.strides = {2, 2}, c.pads = {0, 1, 1, 0};
  c.bias = false;
  c.cutlass = {"i8_128x128x64", "i8_128x64x64"};
  c.dp4a = true;
  c.seed = 21;
  check_case(c);
}

TEST(CudaQConv, Fp16OutFp16ResidualLeakyDilated) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "3x3 dilation 2 C48 K32 fp16 Z leaky fp16 out";
  c.n = 2, c.c = 48, c.h = 12, c.w = 10, c.k = 32;
  c.pads = {2, 2, 2, 2}, c.dil = {2, 2};
  c.z = DataType::kFloat16;
  c.to = DataType::kFloat16;
  c.act = "LeakyRelu";
  c.act_params = {0.1f};
  c.cutlass = {"f16zf16_128x128x64"};
  c.dp4a = true;
  c.seed = 31;
  check_case(c);
}

TEST(CudaQConv, Fp16OutWithoutResidual) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "3x3 C16 K16 fp16 out";
  c.n = 3, c.c = 16, c.h = 9, c.w = 9, c.k = 16;
  c.to = DataType::kFloat16;
  c.cutlass = {"f16_128x128x64"};
  c.dp4a = true;
  c.seed = 41;
  // Without Z the two fp16 tiles are the same kernel but for the residual
  // dtype: one tactic.
  EXPECT_FALSE(check_case(c).count("cutlass_sm90_i8:f16zf16_128x128x64"));
}

TEST(CudaQConv, Fp32OutFp32ResidualOnTheF32Tile) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "3x3 C48 K48 fp32 Z fp32 out";
  c.n = 1, c.c = 48, c.h = 11, c.w = 13, c.k = 48;
  c.z = DataType::kFloat32;
  c.to = DataType::kFloat32;
  c.act = "Relu";
  c.cutlass = {"f32_128x128x64"};
  c.dp4a = true;
  c.seed = 51;
  check_case(c);
}

TEST(CudaQConv, Fp32ResidualWithOddOutputChannelsStaysOffTheTiles) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "3x3 C48 K40 fp32 Z fp32 out";
  c.n = 1, c.c = 48, c.h = 11, c.w = 13, c.k = 40;
  c.z = DataType::kFloat32;
  c.to = DataType::kFloat32;
  c.dp4a = true;
  c.seed = 52;
  EXPECT_FALSE(any_cutlass(check_case(c)));  // padding K would need a padded Z too
}

TEST(CudaQConv, Int8OutWithFloatResidualRunsOwnKernels) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "1x1 C32 K32 fp32 Z int8 out";
  c.n = 2, c.c = 32, c.h = 7, c.w = 7, c.k = 32, c.r = 1, c.s = 1;
  c.pads = {0, 0, 0, 0};
  c.z = DataType::kFloat32;
  c.dp4a = true;
  c.seed = 61;
  EXPECT_FALSE(any_cutlass(check_case(c)));  // no compiled tile pairs int8 Y with a float Z
}

TEST(CudaQConv, FirstLayerThreeChannelsFallsBack) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "7x7 s2 C3 K24";
  c.n = 1, c.c = 3, c.h = 32, c.w = 30, c.k = 24, c.r = 7, c.s = 7;
  c.strides = {2, 2}, c.pads = {3, 3, 3, 3};
  c.act = "Relu";
  c.seed = 71;
  const std::set<std::string> names = check_case(c);
  EXPECT_FALSE(any_cutlass(names));
  EXPECT_FALSE(names.count("qconv_dp4a"));  // C/group = 3
}

TEST(CudaQConv, DepthwiseInt8Residual) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "depthwise 3x3 C32 int8 Z relu";
  c.n = 2, c.c = 32, c.h = 10, c.w = 9, c.k = 32, c.group = 32;
  c.z = DataType::kInt8;
  c.act = "Relu";
  c.seed = 81;
  EXPECT_FALSE(any_cutlass(check_case(c)));
}

TEST(CudaQConv, GroupedFp16OutOnDp4a) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "grouped 4 C32 K64 fp16 out";
  c.n = 1, c.c = 32, c.h = 8, c.w = 12, c.k = 64, c.group = 4;
  c.to = DataType::kFloat16;
  c.dp4a = true;
  c.seed = 91;
  EXPECT_FALSE(any_cutlass(check_case(c)));
}

TEST(CudaQConv, SigmoidIsLeftToTheOwnKernels) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "3x3 C16 K16 sigmoid fp32 out";
  c.n = 1, c.c = 16, c.h = 6, c.w = 6, c.k = 16;
  c.to = DataType::kFloat32;
  c.act = "Sigmoid";
  c.dp4a = true;
  c.seed = 101;
  EXPECT_FALSE(any_cutlass(check_case(c, 1e-4)));  // the tensor-core epilogue takes none/Relu/LeakyRelu/Clip
}

// K not a multiple of 16: the tiles compute zero-padded channels into the
// workspace and a copy crops them.
TEST(CudaQConv, PaddedOutputChannelsFp32Head) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "3x3 C64 K84 fp32 out (padded to 96)";
  c.n = 1, c.c = 64, c.h = 19, c.w = 19, c.k = 84;
  c.to = DataType::kFloat32;
  c.cutlass = {"f32_128x128x64"};
  c.dp4a = true;
  c.seed = 111;
  check_case(c);
}

TEST(CudaQConv, PaddedOutputChannelsFp16Head) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "3x3 C64 K84 fp16 out (padded to 96)";
  c.n = 1, c.c = 64, c.h = 19, c.w = 19, c.k = 84;
  c.to = DataType::kFloat16;
  c.cutlass = {"f16_128x128x64"};
  c.dp4a = true;
  c.seed = 112;
  check_case(c);
}

TEST(CudaQConv, PaddedOutputChannelsInt8) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "1x1 C32 K24 int8 out (padded to 32)";
  c.n = 2, c.c = 32, c.h = 10, c.w = 10, c.k = 24, c.r = 1, c.s = 1;
  c.pads = {0, 0, 0, 0};
  c.act = "Relu";
  c.cutlass = {"i8_128x128x64", "i8_128x64x64"};
  c.gemm = {"i8_128x128x128_pingpong", "i8_256x128x128_coop"};  // padded and cropped the same way
  c.dp4a = true;
  c.seed = 113;
  check_case(c);
}

TEST(CudaQConv, PaddedOutputChannelsWithResidualStayOffTheTiles) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "1x1 C32 K24 int8 Z";
  c.n = 1, c.c = 32, c.h = 6, c.w = 6, c.k = 24, c.r = 1, c.s = 1;
  c.pads = {0, 0, 0, 0};
  c.z = DataType::kInt8;
  c.dp4a = true;
  c.seed = 114;
  EXPECT_FALSE(any_cutlass(check_case(c)));  // Z would need padding too
}

TEST(CudaQConv, ManyTilesInt8) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "3x3 C64 K64 56x56 int8 Z relu";
  c.n = 1, c.c = 64, c.h = 56, c.w = 56, c.k = 64;
  c.z = DataType::kInt8;
  c.act = "Relu";
  c.cutlass = {"i8_128x128x64", "i8_128x64x64"};
  c.dp4a = true;
  c.seed = 121;
  check_case(c);
}

// The last bottleneck of ResNet-50 (scaled down): int8 residual, fp16 output
// for the float pooling after it, on the fp16 tile that reads Z as int8.
TEST(CudaQConv, Fp16OutInt8ResidualOnTheF16Tile) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "1x1 C64 K160 7x7 int8 Z relu fp16 out";
  c.n = 3, c.c = 64, c.h = 7, c.w = 7, c.k = 160, c.r = 1, c.s = 1;
  c.pads = {0, 0, 0, 0};
  c.z = DataType::kInt8;
  c.to = DataType::kFloat16;
  c.act = "Relu";
  c.cutlass = {"f16_128x128x64"};
  c.gemm = {"f16_128x128x128_pingpong"};
  c.dp4a = true;
  c.seed = 131;
  check_case(c);
}

// Int8 Z with an fp32 output, and an fp16 Z with an int8 output: no tile
// pairs these dtypes, the own kernels run them.
TEST(CudaQConv, UnpairedResidualDtypesRunOwnKernels) {
  KILN_REQUIRE_GPU();
  QCase c;
  c.name = "1x1 C32 K48 int8 Z fp32 out";
  c.n = 2, c.c = 32, c.h = 6, c.w = 5, c.k = 48, c.r = 1, c.s = 1;
  c.pads = {0, 0, 0, 0};
  c.z = DataType::kInt8;
  c.to = DataType::kFloat32;
  c.dp4a = true;
  c.seed = 141;
  EXPECT_FALSE(any_cutlass(check_case(c)));
  c.name = "1x1 C32 K48 fp16 Z int8 out";
  c.z = DataType::kFloat16;
  c.to = DataType::kInt8;
  c.seed = 142;
  EXPECT_FALSE(any_cutlass(check_case(c)));
}

}  // namespace
}  // namespace kiln
