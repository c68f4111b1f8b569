// qconv_mma tactics: the host side of the kernels in qconv_mma_kernel.cuh
// (mma.sync, compiled here for sm_90; wgmma, compiled for sm_90a in
// sm90a/qconv_wgmma.cu): weight layout, tile and ring choice, launch.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "backends/cuda/common.h"
#include "backends/cuda/qconv_mma_kernel.cuh"
#include "kiln/error.h"

namespace kiln::cuda::qconv {

namespace mma {
// sm90a/qconv_wgmma.cu: the wgmma kernel for `a` with tiles of 128 * wm
// pixels x tn output channels (wm 1 where tn is 128).
KernelFn wgmma_variant(const MmaArgs& a, int wm, int tn);
}  // namespace mma

namespace {

using namespace mma;

int staged_residuals(const Plan& p, int stages) {
  return p.has_z ? z_slots_for(int(p.r * p.s * p.c / kChunk), stages) : 0;
}
int z_kind_of(const Plan& p) { return !p.has_z ? kZNone : p.z == DataType::kInt8 ? kZInt8 : kZHalf; }
int y_kind_of(const Plan& p) {
  return p.y == DataType::kInt8 ? kYInt8 : p.y == DataType::kFloat16 ? kYHalf : kYFloat;
}
int smem_for(const Plan& p, MmaShape shape, int stages) {
  return smem_bytes(128 * shape.wm, shape.tn, stages, shape.stream, int(p.r * p.s * p.c),
                    staged_residuals(p, stages), z_kind_of(p), y_kind_of(p), shape.wgmma);
}

class MmaKernel : public Kernel {
 public:
  MmaKernel(const Plan& p, MmaShape shape) {
    const int wm = shape.wm;
    a_.stream = shape.stream;
    a_.pixels = p.n * p.p * p.q;
    a_.c = int(p.c);
    a_.k = int(p.k);
    a_.p = int(p.p);
    a_.q = int(p.q);
    a_.h = int(p.h);
    a_.w_ = int(p.w);
    a_.sh = int(p.stride[0]);
    a_.sw = int(p.stride[1]);
    a_.r = int(p.r);
    a_.s = int(p.s);
    a_.pt = int(p.pad[0]);
    a_.pl = int(p.pad[1]);
    a_.dh = int(p.dil[0]);
    a_.dw = int(p.dil[1]);
    a_.red = int(p.r * p.s * p.c);
    a_.plain = p.r == 1 && p.s == 1 && p.stride[0] == 1 && p.stride[1] == 1 && !p.pad[0] && !p.pad[1] &&
               !p.pad_end[0] && !p.pad_end[1];
    const int tile_m = 128 * wm;
    a_.tiles_m = int((a_.pixels + tile_m - 1) / tile_m);
    a_.tiles_n = int(p.k / shape.tn);
    a_.z_kind = z_kind_of(p);
    a_.y_kind = y_kind_of(p);
    a_.act = p.act;
    // int8 Y: round(act(v) / y_scale) becomes round(act(v * (1 / y_scale)))
    // for ReLU or no activation (both commute with a positive scale); a
    // multiply for a division moves a result by one step only at an exact
    // .5 tie.
    const float inv = 1.f / p.y_scale;
    a_.folded = a_.y_kind == kYInt8 &&
                (p.act.kind == ir::FusedActivation::kNone || p.act.kind == ir::FusedActivation::kRelu);
    a_.inv_y = a_.y_kind == kYInt8 ? inv : 1.f;
    const float f = a_.folded ? inv : 1.f;
    std::vector<float> m(p.m), b(p.bias);
    for (float& v : m) v *= f;
    for (float& v : b) v *= f;
    a_.z_scale = (p.has_z && p.z == DataType::kInt8 ? p.z_scale : 1.f) * f;
    // [K, C, R, S] -> [K][R][S][C]: a chunk's 64 channels of one tap are contiguous.
    const int8_t* wsrc = p.weights->data<int8_t>();
    std::vector<int8_t> wk(size_t(p.k) * size_t(a_.red));
    for (int64_t o = 0; o < p.k; ++o)
      for (int64_t ci = 0; ci < p.c; ++ci)
        for (int64_t t = 0; t < p.r * p.s; ++t)
          wk[size_t(o * a_.red + t * p.c + ci)] = wsrc[(o * p.c + ci) * p.r * p.s + t];
    w_ = upload(wk.data(), wk.size());
    m_ = upload(m.data(), m.size() * sizeof(float));
    b_ = upload(b.data(), b.size() * sizeof(float));
    fn_ = shape.wgmma ? wgmma_variant(a_, wm, shape.tn)
          : wm == 2   ? pick_variant<2, false>(a_)
                      : pick_variant<1, false>(a_);
    // A 4-chunk ring prefetches deeper; a 3-chunk one is taken where it
    // leaves room for more resident CTAs (latency is hidden by warps).
    int resident = 0;
    for (int stages : {4, 3}) {
      const int smem = smem_for(p, shape, stages);
      if (smem > kMaxSmem) continue;
      const int r = resident_ctas(reinterpret_cast<const void*>(fn_), kThreads, smem, "qconv_mma");
      if (r <= resident) continue;
      resident = r;
      smem_ = smem;
      a_.stages = stages;
    }
    a_.z_slots = staged_residuals(p, a_.stages);
    // Persistent: each output-channel block gets an equal share of the resident CTAs.
    a_.groups_m = std::max(1, std::min(a_.tiles_m, resident / a_.tiles_n));
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    MmaArgs a = a_;
    a.x = static_cast<const int8_t*>(in.at(0));
    a.w = static_cast<const int8_t*>(w_.get());
    a.m = static_cast<const float*>(m_.get());
    a.bias = static_cast<const float*>(b_.get());
    a.z = a.z_kind != kZNone ? in.at(3) : nullptr;
    a.y = out.at(0);
    auto misaligned = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15) != 0; };
    if (misaligned(a.x) || misaligned(a.y) || (a.z && misaligned(a.z)))
      throw_internal("qconv_mma: a tensor is not 16-byte aligned");
    if (a.pixels == 0) return;
    fn_<<<unsigned(a.tiles_n * a.groups_m), kThreads, smem_, l.stream>>>(a);
    KILN_CUDA_LAUNCHED("qconv_mma kernel");
  }

 private:
  MmaArgs a_;
  KernelFn fn_ = nullptr;
  int smem_ = 0;
  DevicePtr w_, m_, b_;
};

// Packed channels-last: element strides (H*W*C, 1, W*C, C).
bool packed_nhwc(const int64_t s[4], int64_t c, int64_t h, int64_t w) {
  return s[1] == 1 && s[3] == c && s[2] == w * c && s[0] == h * w * c;
}

}  // namespace

std::string mma_refusal(const Plan& p, MmaShape shape) {
  if (p.group != 1) return "grouped convolution";
  if (p.c % kChunk != 0) return "input channels not a multiple of 64";
  if (p.k % kChunk != 0) return "output channels not a multiple of 64";
  if (shape.tn != 64 && !(shape.tn == 128 && shape.wgmma && shape.wm == 1)) return "no such tile";
  if (p.k % shape.tn != 0) return "output channels not a multiple of the tile's 128";
  if (p.y != DataType::kInt8 && p.y != DataType::kFloat16 && p.y != DataType::kFloat32)
    return "output not int8, fp16 or fp32";
  if (p.has_z && p.z != DataType::kInt8 && p.z != DataType::kFloat16) return "residual neither int8 nor fp16";
  if (!packed_nhwc(p.xs, p.c, p.h, p.w) || !packed_nhwc(p.ys, p.k, p.p, p.q) ||
      (p.has_z && !packed_nhwc(p.zs, p.k, p.p, p.q)))
    return "X, Y or Z not packed channels-last";
  if (p.n * p.p * p.q >= INT_MAX / 2 || p.n * p.h * p.w >= INT_MAX / 2) return "too many pixels";
  if (p.h * p.w * p.c >= INT_MAX) return "one image of X over 2 GiB";
  if (smem_for(p, shape, 3) > kMaxSmem)
    return shape.stream ? "the pipeline exceeds shared memory"
                        : "R*S*C too deep: the weights of " + std::to_string(shape.tn) +
                              " output channels and the pipeline exceed shared memory";
  return "";
}

std::unique_ptr<Kernel> make_mma_kernel(const Plan& p, MmaShape shape) {
  return std::unique_ptr<Kernel>(new MmaKernel(p, shape));
}

}  // namespace kiln::cuda::qconv
