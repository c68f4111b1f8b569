// kiln::QConv on qconv_mma (int8 mma.sync implicit GEMM, qconv_mma_kernel.cuh) and
// qconv_wgmma (the same kernel on wgmma, sm90a/qconv_wgmma.cu) against the
// CPU QConv kernel, next to every other tactic offered for the same node
// (qconv_check.h: layout mixes, tolerances). The tactics must be offered
// channels-last wherever they apply (groups 1, C and K multiples of 64, int8,
// fp16 or fp32 Y, int8 or fp16 Z; resident weights as deep as they fit,
// streamed ones for R*S*C >= 512; wgmma on compute capability 9.0, with the
// same tiles) and nowhere else.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/common.h"
#include "backends/cuda/qconv.h"
#include "backends/cuda/qconv_check.h"

namespace kiln {
namespace {

using qconv_check::check_case;
using qconv_check::QCase;

constexpr const char* kM128 = "qconv_mma:m128";  // 16 pixels per warp
constexpr const char* kM256 = "qconv_mma:m256";  // 32 pixels per warp
constexpr const char* kM128s = "qconv_mma:m128s";  // the same, weights streamed
constexpr const char* kM256s = "qconv_mma:m256s";

QCase one_by_one(const char* name, int64_t n, int64_t c, int64_t hw, int64_t k, uint32_t seed) {
  QCase q;
  q.name = name;
  q.n = n, q.c = c, q.h = hw, q.w = hw, q.k = k, q.r = 1, q.s = 1;
  q.pads = {0, 0, 0, 0};
  q.act = "Relu";
  q.seed = seed;
  return q;
}

// A 3x3, pads 1, stride 1, on one_by_one's other settings.
QCase three_by_three(const char* name, int64_t n, int64_t c, int64_t hw, int64_t k, uint32_t seed) {
  QCase q = one_by_one(name, n, c, hw, k, seed);
  q.r = q.s = 3;
  q.pads = {1, 1, 1, 1};
  return q;
}

// check_case compares every offered tactic with the CPU reference; this
// says which of the qconv_mma tactics were among them, after checking that
// the wgmma family offered the same tiles on sm_90 and none elsewhere, and
// 128-channel tiles where K allows.
struct Offered {
  bool m128, m256, m128s, m256s;
  bool operator==(const Offered& o) const {
    return m128 == o.m128 && m256 == o.m256 && m128s == o.m128s && m256s == o.m256s;
  }
};
bool wgmma_device() {
  std::string why;
  return cuda::current_device_is_sm90(why);
}
Offered mma_tiles(const QCase& c) {
  const auto ran = check_case(c);
  auto family = [&](const std::string& f) {
    return Offered{ran.count(f + ":m128") > 0, ran.count(f + ":m256") > 0, ran.count(f + ":m128s") > 0,
                   ran.count(f + ":m256s") > 0};
  };
  const Offered o = family("qconv_mma");
  const bool wg = wgmma_device();
  EXPECT_TRUE(family("qconv_wgmma") == (wg ? o : Offered{})) << c.name;
  // 128 output channels per tile: wgmma only, where K is a multiple of 128.
  const bool n128 = ran.count("qconv_wgmma:m128n128") + ran.count("qconv_wgmma:m128n128s") > 0;
  EXPECT_EQ(n128, wg && c.k % 128 == 0 && (o.m128 || o.m128s)) << c.name;
  return o;
}
// Both resident tiles; and the streamed ones too where R*S*C >= 512.
bool offers_mma(const QCase& c) {
  const Offered o = mma_tiles(c);
  const bool deep = c.r * c.s * c.c >= 512;
  return o.m128 && o.m256 && o.m128s == deep && o.m256s == deep;
}
bool offers_no_mma(const QCase& c) {
  const Offered o = mma_tiles(c);
  return !o.m128 && !o.m256 && !o.m128s && !o.m256s;
}

// ResNet-50 layer1 conv1 (64 -> 64) at batch 12: 37632 pixels, more 128-pixel
// tiles than resident CTAs, so each CTA loops and prefetches across tiles.
TEST(CudaQConvMma, Layer1Conv1ManyTilesPerCta) {
  KILN_REQUIRE_GPU();
  EXPECT_TRUE(offers_mma(one_by_one("1x1 56x56 C64 K64 relu n12", 12, 64, 56, 64, 301)));
}

// layer1 conv3 shape with an int8 shortcut; a partial last tile (162 pixels).
TEST(CudaQConvMma, Int8ResidualPartialTile) {
  KILN_REQUIRE_GPU();
  QCase c = one_by_one("1x1 9x9 C64 K256 int8 Z relu", 2, 64, 9, 256, 302);
  c.z = DataType::kInt8;
  EXPECT_TRUE(offers_mma(c));
}

// A reduction of 8 chunks (C = 512), two channel blocks, no activation, no bias.
TEST(CudaQConvMma, DeepestReductionNoActivationNoBias) {
  KILN_REQUIRE_GPU();
  QCase c = one_by_one("1x1 7x7 C512 K128 none", 3, 512, 7, 128, 303);
  c.act = "";
  c.bias = false;
  EXPECT_TRUE(offers_mma(c));
}

// The strided downsample of a bottleneck: 1x1 stride 2, 256 -> 512.
TEST(CudaQConvMma, Stride2Downsample) {
  KILN_REQUIRE_GPU();
  QCase c = one_by_one("1x1/2 13x13 C256 K512", 2, 256, 13, 512, 304);
  c.strides = {2, 2};
  c.act = "";
  EXPECT_TRUE(offers_mma(c));
}

// fp16 and fp32 outputs with an int8 and with an fp16 residual; Clip and
// LeakyRelu take the generic activation path.
TEST(CudaQConvMma, FloatOutputsAndResiduals) {
  KILN_REQUIRE_GPU();
  QCase c = one_by_one("1x1 7x7 C128 K192 int8 Z clip fp16 out", 2, 128, 7, 192, 305);
  c.z = DataType::kInt8;
  c.to = DataType::kFloat16;
  c.act = "Clip";
  c.act_params = {-0.5f, 1.5f};
  EXPECT_TRUE(offers_mma(c));
  // C = 192: three chunks per tile, so the 256-pixel tile's fp16 residual
  // slots fit in shared memory too.
  c = one_by_one("1x1 6x6 C192 K128 fp16 Z leaky fp16 out", 2, 192, 6, 128, 306);
  c.z = DataType::kFloat16;
  c.to = DataType::kFloat16;
  c.act = "LeakyRelu";
  c.act_params = {0.1f};
  EXPECT_TRUE(offers_mma(c));
  // ReLU with Z or Y in fp16 runs the variant that reads their kinds at run
  // time: an int8 output over an fp16 residual (a float layer's output as
  // an INT8 downsample's residual), and a 3x3 with an int8 residual to fp16.
  c = one_by_one("1x1 5x5 C128 K128 fp16 Z relu int8 out", 3, 128, 5, 128, 307);
  c.z = DataType::kFloat16;
  EXPECT_TRUE(offers_mma(c));
  c = three_by_three("3x3 pad 1 C64 K128 int8 Z relu fp16 out", 2, 64, 7, 128, 308);
  c.z = DataType::kInt8;
  c.to = DataType::kFloat16;
  EXPECT_TRUE(offers_mma(c));
  // fp32 outputs (an INT8 conv read by an FP32 layer): with an int8
  // residual and ReLU, and with no residual and the generic path.
  c = one_by_one("1x1 6x6 C128 K256 int8 Z relu fp32 out", 2, 128, 6, 256, 309);
  c.z = DataType::kInt8;
  c.to = DataType::kFloat32;
  EXPECT_TRUE(offers_mma(c));
  c = three_by_three("3x3 pad 1 C64 K64 leaky fp32 out", 1, 64, 5, 64, 314);
  c.to = DataType::kFloat32;
  c.act = "LeakyRelu";
  c.act_params = {0.2f};
  EXPECT_TRUE(offers_mma(c));
}

// The shared-memory limit is per kernel function: a node made after a larger
// one of the same variant (C = 64 after C = 512) must leave the larger one
// launchable.
TEST(CudaQConvMma, SmallerNodeKeepsALargerOnesSharedMemory) {
  KILN_REQUIRE_GPU();
  qconv_check::Built big = qconv_check::build(one_by_one("1x1 C512", 1, 512, 4, 64, 320));
  qconv_check::Built small = qconv_check::build(one_by_one("1x1 C64", 1, 64, 4, 64, 321));
  auto mma_kernel = [](qconv_check::Built& b, const std::string& name) -> std::unique_ptr<cuda::Kernel> {
    b.node->inputs[0]->layout = b.node->outputs[0]->layout = ir::Layout::kNHWC;
    for (const cuda::Tactic& t : cuda::Registry::global().tactics(*b.node))
      if (t.name == name) return t.make();
    return nullptr;
  };
  for (const std::string& name : {std::string(kM128), std::string("qconv_wgmma:m128")}) {
    if (name != kM128 && !wgmma_device()) continue;
    std::unique_ptr<cuda::Kernel> kb = mma_kernel(big, name), ks = mma_kernel(small, name);
    ASSERT_TRUE(kb && ks);
    std::vector<cuda::DevicePtr> keep;
    std::vector<const void*> in;
    for (size_t i = 0; i < big.node->inputs.size(); ++i) {
      const ir::Value* v = big.node->inputs[i];
      if (!v || !big.host[i]) {
        in.push_back(nullptr);
        continue;
      }
      const std::vector<uint8_t> bytes = test::to_layout(*big.host[i], *v);
      keep.push_back(cuda::upload(bytes.data(), bytes.size()));
      in.push_back(keep.back().get());
    }
    const ir::Value& y = *big.node->outputs[0];
    std::vector<uint8_t> out(size_t(ir::numel_of(y.dims)) * dtype_size(y.dtype));
    cuda::DevicePtr yd = cuda::device_alloc(out.size());
    ASSERT_NO_THROW(kb->enqueue(in, {yd.get()}, cuda::Launch{}));
    ASSERT_EQ(cudaMemcpy(out.data(), yd.get(), out.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    qconv_check::compare(test::from_layout(out, y), big.ref, 1e-5, name + ": C512 after C64");
  }
}

// ResNet's 3x3s: layer1 (C = 64, pad 1) with 9 taps of one chunk each,
// layer2's first (C = 128, stride 2), partial tiles; a dilated 3x3 with
// asymmetric pads and an int8 residual; a 5x5 to fp16 with Clip.
TEST(CudaQConvMma, WindowsStridesPadsAndDilations) {
  KILN_REQUIRE_GPU();
  QCase c = three_by_three("3x3 pad 1 C64 K64 relu", 2, 64, 9, 64, 330);
  EXPECT_TRUE(offers_mma(c));
  c = three_by_three("3x3/2 pad 1 C128 K128 relu", 2, 128, 11, 128, 331);
  c.strides = {2, 2};
  EXPECT_TRUE(offers_mma(c));
  c = one_by_one("3x3 dil 2 pads 2,1,0,3 C64 K128 int8 Z", 1, 64, 10, 128, 332);
  c.r = c.s = 3;
  c.dil = {2, 2};
  c.pads = {2, 1, 0, 3};
  c.h = 10, c.w = 9;
  c.z = DataType::kInt8;
  EXPECT_TRUE(offers_mma(c));
  c = one_by_one("5x5 pad 2 C64 K64 clip fp16 out", 1, 64, 7, 64, 333);
  c.r = c.s = 5;
  c.pads = {2, 2, 2, 2};
  c.to = DataType::kFloat16;
  c.act = "Clip";
  c.act_params = {-1.f, 2.f};
  EXPECT_TRUE(offers_mma(c));
}

// The 256-pixel tile's pipeline leaves room for fewer resident weights: a
// 3x3 over 320 channels (R*S*C 2880) keeps them on 128-pixel tiles only,
// and one over 512 channels (4608) only streams them.
TEST(CudaQConvMma, DeepReductionsKeepWeightsResidentWhereTheyFit) {
  KILN_REQUIRE_GPU();
  Offered o = mma_tiles(three_by_three("3x3 pad 1 C320 K64 relu", 1, 320, 5, 64, 334));
  EXPECT_TRUE(o.m128 && o.m128s && o.m256s);
  EXPECT_FALSE(o.m256);
  QCase c = three_by_three("3x3 pad 1 C512 K128 relu int8 Z", 2, 512, 4, 128, 335);
  c.z = DataType::kInt8;
  o = mma_tiles(c);
  EXPECT_TRUE(o.m128s && o.m256s);
  EXPECT_FALSE(o.m128 || o.m256);
}

// Which tiles a node gets is host arithmetic (shapes, dtypes, shared memory
// against sm_90's 227 KB per CTA), checked without a GPU.
TEST(CudaQConvMma, TileRefusalsNeedNoDevice) {
  using cuda::qconv::MmaShape;
  auto packed = [](int64_t* st, int64_t ch, int64_t hw) {
    st[0] = hw * hw * ch, st[1] = 1, st[2] = hw * ch, st[3] = ch;
  };
  auto plan = [&](int64_t c, int64_t k, int64_t rs) {
    cuda::qconv::Plan p;
    p.n = 2, p.c = c, p.h = p.w = p.p = p.q = 8, p.k = k, p.r = p.s = rs;
    p.pad[0] = p.pad[1] = p.pad_end[0] = p.pad_end[1] = rs / 2;
    packed(p.xs, c, 8);
    packed(p.ys, k, 8);
    packed(p.zs, k, 8);
    return p;
  };
  auto runs = [](const cuda::qconv::Plan& p, MmaShape s) { return cuda::qconv::mma_refusal(p, s).empty(); };
  const MmaShape wg64{1, false, true, 64}, wg128{1, false, true, 128}, wg128s{1, true, true, 128};
  // 128-channel tiles: wgmma with 128-pixel tiles only, K a multiple of 128.
  cuda::qconv::Plan p = plan(64, 192, 1);
  EXPECT_TRUE(runs(p, wg64));
  EXPECT_FALSE(runs(p, wg128));
  p = plan(64, 256, 1);
  EXPECT_TRUE(runs(p, wg128));
  EXPECT_FALSE(runs(p, MmaShape{2, false, true, 128}));
  EXPECT_FALSE(runs(p, MmaShape{1, false, false, 128}));
  // Outputs int8, fp16 or fp32; residuals int8 or fp16.
  p.y = DataType::kFloat32;
  EXPECT_TRUE(runs(p, MmaShape{}) && runs(p, wg128));
  p.has_z = true;
  p.z = DataType::kFloat16;
  EXPECT_TRUE(runs(p, MmaShape{}));
  p.z = DataType::kFloat32;
  EXPECT_FALSE(runs(p, MmaShape{}) || runs(p, wg128));
  // A 3x3 over 256 channels: 128 x 2304 resident weight bytes exceed shared
  // memory, 64 x 2304 fit; streamed weights fit either way.
  p = plan(256, 256, 3);
  EXPECT_FALSE(runs(p, wg128));
  EXPECT_TRUE(runs(p, wg128s) && runs(p, wg64));
}

TEST(CudaQConvMma, DeclinesWhatItDoesNotCover) {
  KILN_REQUIRE_GPU();
  QCase c = one_by_one("1x1 C48", 1, 48, 6, 64, 310);
  EXPECT_TRUE(offers_no_mma(c));
  c = one_by_one("1x1 K80", 1, 64, 6, 80, 312);
  EXPECT_TRUE(offers_no_mma(c));
  c = three_by_three("grouped 3x3", 1, 128, 6, 64, 313);
  c.group = 2;
  EXPECT_TRUE(offers_no_mma(c));
  c = one_by_one("1x1 fp32 Z", 1, 64, 6, 64, 315);
  c.z = DataType::kFloat32;
  EXPECT_TRUE(offers_no_mma(c));
}

}  // namespace
}  // namespace kiln
