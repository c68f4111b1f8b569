// CUDA Conv tactics (cuDNN, cuDNN fused, dw_direct, small_c_mma) against the CPU kernel,
// in fp32 and fp16, linear and channels-last, through the parity harness.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "backends/cuda/parity.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using ir::Dims;
using test::attr_floats;
using test::attr_i;
using test::attr_ints;
using test::attr_s;
using test::check_cuda_parity;
using test::cin;
using test::in;
using test::none;
using test::random_tensor;

using Attrs = std::map<std::string, ir::Attribute>;

bool has_prefix(const test::ParityReport& r, const std::string& prefix) {
  return std::any_of(r.tactics.begin(), r.tactics.end(),
                     [&](const std::string& t) { return t.compare(0, prefix.size(), prefix) == 0; });
}

struct Case {
  Dims x, w;                 // X [N, C, H, W] (or [N, C, W]), W [M, C/g, kh, kw]
  Dims strides, pads, dils;  // pads: begins then ends
  int64_t group = 1;
  bool bias = true, residual = false;
  std::string act;
  std::vector<float> act_params;
};

// Output spatial extent of one axis.
int64_t out_extent(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe) {
  return (in + pb + pe - ((k - 1) * d + 1)) / s + 1;
}

test::ParityReport run_case(const Case& c, uint32_t seed, const test::ParityOptions& opts = {}) {
  const size_t r = c.x.size() - 2;
  Dims y{c.x[0], c.w[0]};
  for (size_t i = 0; i < r; ++i)
    y.push_back(out_extent(c.x[2 + i], c.w[2 + i], c.strides[i], c.dils[i], c.pads[i], c.pads[r + i]));
  Attrs a{{"strides", attr_ints(c.strides)}, {"pads", attr_ints(c.pads)}, {"dilations", attr_ints(c.dils)},
          {"group", attr_i(c.group)}};
  if (!c.act.empty()) {
    a["activation"] = attr_s(c.act);
    a["activation_params"] = attr_floats(c.act_params);
  }
  std::vector<test::OpInput> ins{in(random_tensor(DataType::kFloat32, c.x, seed)),
                                 cin(random_tensor(DataType::kFloat32, c.w, seed + 1, -0.5, 0.5))};
  ins.push_back(c.bias ? cin(random_tensor(DataType::kFloat32, {c.w[0]}, seed + 2)) : none());
  if (c.residual) ins.push_back(in(random_tensor(DataType::kFloat32, y, seed + 3)));
  test::ParityReport rep = check_cuda_parity("Conv", ins, a, 1, opts);
  EXPECT_GT(rep.checked, 0);
  return rep;
}

Case plain(Dims x, Dims w, int64_t s = 1, int64_t p = 0, int64_t d = 1, int64_t g = 1) {
  Case c;
  c.x = x;
  c.w = w;
  c.strides = {s, s};
  c.pads = {p, p, p, p};
  c.dils = {d, d};
  c.group = g;
  return c;
}

TEST(CudaConv, Conv3x3Pad1OffersCudnnTactics) {
  KILN_REQUIRE_GPU();
  auto rep = run_case(plain({1, 16, 12, 10}, {24, 16, 3, 3}, 1, 1), 1);
  EXPECT_TRUE(has_prefix(rep, "cudnn:")) << "no cuDNN tactic";
  EXPECT_TRUE(has_prefix(rep, "cudnn_cba:implicit_precomp_gemm")) << "bias alone should fuse through cuDNN";
  EXPECT_FALSE(has_prefix(rep, "dw_direct"));
}

TEST(CudaConv, Pointwise1x1NoBias) {
  KILN_REQUIRE_GPU();
  Case c = plain({2, 32, 7, 9}, {64, 32, 1, 1});
  c.bias = false;
  auto rep = run_case(c, 2);
  EXPECT_TRUE(has_prefix(rep, "cudnn:"));
}

TEST(CudaConv, Stride2OddChannels) {
  KILN_REQUIRE_GPU();
  // Output channels not a multiple of 8 also run padded to one (fp16 only).
  auto rep = run_case(plain({1, 3, 17, 15}, {5, 3, 3, 3}, 2, 1), 3);
  EXPECT_TRUE(has_prefix(rep, "cudnn_padk:"));
  EXPECT_TRUE(has_prefix(rep, "cudnn_cba_padk:"));
  run_case(plain({1, 7, 16, 16}, {9, 7, 7, 7}, 2, 3), 4);  // stem-like 7x7 / 2
}

TEST(CudaConv, GroupedAndDilated) {
  KILN_REQUIRE_GPU();
  run_case(plain({1, 8, 10, 10}, {12, 4, 3, 3}, 1, 1, 1, 2), 5);
  run_case(plain({1, 6, 13, 11}, {6, 6, 3, 3}, 1, 2, 2), 6);  // SSD300's dilated conv6 pattern
}

TEST(CudaConv, DepthwiseOffersDwDirect) {
  KILN_REQUIRE_GPU();
  for (int64_t s : {1, 2}) {
    for (int64_t k : {3, 5}) {
      // 16 channels: the paired channels-last path; 7: the one-channel path.
      for (int64_t ch : {16, 7}) {
        Case c = plain({1, ch, 11, 12}, {ch, 1, k, k}, s, k / 2, 1, ch);
        c.act = "HardSwish";
        c.residual = s == 1 && k == 3;
        auto rep = run_case(c, uint32_t(10 + s * 7 + k + ch));
        EXPECT_TRUE(has_prefix(rep, "dw_direct")) << "k=" << k << " s=" << s << " c=" << ch;
      }
    }
  }
}

TEST(CudaConv, DepthwiseDilatedResidualAnd7x7) {
  KILN_REQUIRE_GPU();
  Case c = plain({2, 10, 9, 9}, {10, 1, 3, 3}, 1, 2, 2, 10);
  c.residual = true;
  c.act = "Relu";
  EXPECT_TRUE(has_prefix(run_case(c, 30), "dw_direct"));
  Case d = plain({1, 12, 14, 14}, {12, 1, 7, 7}, 1, 3, 1, 12);
  d.bias = false;
  EXPECT_TRUE(has_prefix(run_case(d, 31), "dw_direct"));
  // 24 channels: whole 16-byte vectors in fp16 and fp32, a kernel size without its own instance.
  Case e = plain({2, 24, 9, 8}, {24, 1, 3, 3}, 2, 1, 1, 24);
  e.pads = {1, 0, 2, 1};
  e.residual = true;
  e.act = "Clip";
  e.act_params = {0.f, 6.f};
  EXPECT_TRUE(has_prefix(run_case(e, 33), "dw_direct"));
  Case f = plain({1, 32, 10, 10}, {32, 1, 7, 7}, 2, 3, 1, 32);
  EXPECT_TRUE(has_prefix(run_case(f, 34), "dw_direct"));
}

TEST(CudaConv, DepthwiseWithMultiplierIsNotDwDirect) {
  KILN_REQUIRE_GPU();
  auto rep = run_case(plain({1, 4, 8, 8}, {8, 1, 3, 3}, 1, 1, 1, 4), 32);
  EXPECT_FALSE(has_prefix(rep, "dw_direct"));
  EXPECT_TRUE(has_prefix(rep, "cudnn:"));
}

TEST(CudaConv, EachFusedActivation) {
  KILN_REQUIRE_GPU();
  const std::vector<std::pair<std::string, std::vector<float>>> acts = {
      {"Relu", {}}, {"LeakyRelu", {0.1f}}, {"Clip", {-0.5f, 1.5f}}, {"Sigmoid", {}}, {"HardSigmoid", {0.2f, 0.5f}},
      {"HardSwish", {}}, {"Tanh", {}}, {"SiLU", {}}};
  uint32_t seed = 40;
  for (const auto& [name, params] : acts) {
    Case c = plain({1, 8, 9, 9}, {11, 8, 3, 3}, 1, 1);
    c.act = name;
    c.act_params = params;
    auto rep = run_case(c, seed++);
    EXPECT_TRUE(has_prefix(rep, "cudnn:")) << name;
    // cuDNN's fused call takes ReLU only.
    EXPECT_EQ(has_prefix(rep, "cudnn_cba:"), name == "Relu") << name;
  }
}

TEST(CudaConv, BiasResidualRelu) {
  KILN_REQUIRE_GPU();
  // ResNet's bottleneck end: relu(conv(x) + b + shortcut).
  Case c = plain({1, 16, 8, 8}, {32, 16, 1, 1});
  c.residual = true;
  c.act = "Relu";
  auto rep = run_case(c, 60);
  EXPECT_TRUE(has_prefix(rep, "cudnn_cba:"));
  EXPECT_TRUE(has_prefix(rep, "cudnn:"));
  // Residual without activation (MobileNetV2's projection + skip).
  Case d = plain({1, 12, 6, 6}, {12, 12, 1, 1});
  d.residual = true;
  run_case(d, 61);
  // Residual with an activation cuDNN cannot fuse, no bias.
  Case e = plain({1, 5, 7, 7}, {6, 5, 3, 3}, 1, 1);
  e.residual = true;
  e.bias = false;
  e.act = "SiLU";
  EXPECT_TRUE(has_prefix(run_case(e, 62), "cudnn_padk:"));
}

TEST(CudaConv, AsymmetricPads) {
  KILN_REQUIRE_GPU();
  // End pad longer (SAME_UPPER, stride 2) and shorter than the begin pad.
  for (const Dims& pads : {Dims{0, 0, 1, 1}, Dims{1, 2, 0, 1}, Dims{2, 1, 1, 0}}) {
    Case c = plain({1, 6, 10, 9}, {8, 6, 3, 3}, 2);
    c.pads = pads;
    c.act = "Relu";
    auto rep = run_case(c, 70 + uint32_t(pads[0] * 3 + pads[1]));
    EXPECT_TRUE(has_prefix(rep, "cudnn:")) << shape_str(pads);
  }
  Case dw = plain({1, 8, 10, 10}, {8, 1, 3, 3}, 2, 0, 1, 8);
  dw.pads = {0, 0, 1, 1};
  EXPECT_TRUE(has_prefix(run_case(dw, 80), "dw_direct"));
}

TEST(CudaConv, OneDimensional) {
  KILN_REQUIRE_GPU();
  Case c;
  c.x = {2, 6, 20};
  c.w = {4, 6, 5};
  c.strides = {2};
  c.pads = {2, 2};
  c.dils = {1};
  c.act = "Tanh";
  EXPECT_TRUE(has_prefix(run_case(c, 90), "cudnn:"));
  Case d = c;
  d.w = {6, 1, 3};
  d.group = 6;
  d.pads = {1, 1};
  EXPECT_TRUE(has_prefix(run_case(d, 91), "dw_direct"));
}

TEST(CudaConv, Fp32WithoutTf32StaysPrecise) {
  KILN_REQUIRE_GPU();
  // A long reduction (K = 576): TF32 products would miss 1e-4; FMA math must not.
  test::ParityOptions o;
  o.fp16 = false;
  o.tol_fp32 = 1e-4;
  run_case(plain({1, 64, 12, 12}, {32, 64, 3, 3}, 1, 1), 95, o);
}

// Stems on few input channels get small_c_mma in fp16 channels-last: ResNet's
// 7x7/2 on RGB and VGG's 3x3 (both 64 channels), MobileNet's 3x3/2 to 16 with
// asymmetric pads, a 5x5 on one channel to 32 and a 4-channel stride 3;
// spatial sizes leave partial 8x16 tiles, the batch spans tiles.
TEST(CudaConv, SmallChannelStemsOfferSmallCMma) {
  KILN_REQUIRE_GPU();
  std::vector<Case> cases;
  Case resnet = plain({2, 3, 37, 45}, {64, 3, 7, 7}, 2, 3);
  resnet.act = "Relu";
  cases.push_back(resnet);
  Case vgg = plain({1, 3, 20, 33}, {64, 3, 3, 3}, 1, 1);
  vgg.bias = false;
  cases.push_back(vgg);
  Case mobilenet = plain({2, 3, 17, 19}, {16, 3, 3, 3}, 2, 1);
  mobilenet.pads = {0, 1, 1, 0};
  mobilenet.act = "HardSwish";
  cases.push_back(mobilenet);
  Case gray = plain({1, 1, 12, 40}, {32, 1, 5, 5}, 1, 2);
  gray.act = "Clip";
  gray.act_params = {-0.5f, 0.5f};
  cases.push_back(gray);
  cases.push_back(plain({3, 4, 29, 31}, {16, 4, 7, 7}, 3, 2));
  uint32_t seed = 70;
  for (const Case& c : cases) {
    test::ParityOptions o;
    o.fp32 = false;  // the tactic is fp16-only; cuDNN's fp32 paths are covered above
    EXPECT_TRUE(has_prefix(run_case(c, seed++, o), "small_c_mma")) << "case " << seed - 70;
  }
}

TEST(CudaConv, SmallChannelMmaDeclinesWhatItDoesNotCover) {
  KILN_REQUIRE_GPU();
  test::ParityOptions o;
  o.fp32 = false;
  // 8 input channels, 48 output channels, a residual: library tactics only.
  EXPECT_FALSE(has_prefix(run_case(plain({1, 8, 10, 10}, {64, 8, 3, 3}, 1, 1), 80, o), "small_c_mma"));
  EXPECT_FALSE(has_prefix(run_case(plain({1, 3, 10, 10}, {48, 3, 3, 3}, 1, 1), 81, o), "small_c_mma"));
  Case z = plain({1, 3, 10, 10}, {64, 3, 3, 3}, 1, 1);
  z.residual = true;
  EXPECT_FALSE(has_prefix(run_case(z, 82, o), "small_c_mma"));
}

}  // namespace
}  // namespace kiln
