// Tensor-core convolution for few input channels (see conv_small_channel.h).
//
// The GEMM: rows are output pixels, columns the K output channels, and the
// reduction runs over (r, s, c) with c padded to 4, so a tap's channels are
// 8 bytes and every reduction pair (c, c+1) is one aligned 32-bit word.
// A persistent CTA of 4 warps keeps the weights in shared memory ([K][k],
// rows padded by 16 bytes so ldmatrix is conflict-free) and loops over tiles
// of 8 x 16 output pixels: it stages the tile's input patch ([rows][cols][4]
// halves, zeros outside the image), then each warp multiplies two tile rows
// (two m16 tiles) against all K columns with mma.sync m16n8k16, FP32
// accumulators. A rows are read straight from the patch: pixel (ty, tx) and
// reduction index k live at
//   ((ty * sh) * cols + tx * sw) * 4 + (k / 4S) * cols * 4 + k % 4S.
// The epilogue adds bias, applies the activation, stages FP16 results in
// shared memory and writes each pixel's K channels as 16-byte stores.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/cuda/common.h"
#include "backends/cuda/conv_small_channel.h"
#include "backends/cuda/epilogue.h"
#include "backends/cuda/ldmatrix.cuh"
#include "kiln/error.h"

namespace kiln::cuda {

namespace {

constexpr int kTileH = 8, kTileW = 16;  // output pixels per tile; one m16 tile per tile row
constexpr int kThreads = 128;           // 4 warps, two tile rows each
constexpr int kMaxSteps = 13;           // 16-wide reduction steps: 7x7 taps x 4 channels = 196 -> 208
constexpr int kPatchLoads = 8;          // patch pixels per thread loaded in one batch (7x7/2: 777 of 1024)

struct StemArgs {
  int n, c, h, w, oh, ow;
  int r, s, sh, sw, ph, pw;
  int rows, cols;  // patch: (kTileH - 1) * sh + r rows, (kTileW - 1) * sw + s columns
  int steps;       // reduction steps: ceil(r * s * 4 / 16)
  int tiles_h, tiles_w, tiles;
  int64_t xs[4];   // X element strides (N, C, H, W)
  Activation act;
};

__device__ __forceinline__ void mma_16816(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Shared memory of one CTA, in halves: weights, output staging, patch.
__host__ __device__ constexpr int staging_pitch(int k) { return k + 8; }
int smem_bytes(const StemArgs& p, int k) {
  return 2 * (k * (p.steps * 16 + 8) + kTileH * kTileW * staging_pitch(k) + p.rows * p.cols * 4);
}

// Bias, activation (Act 0: none, 1: ReLU, 2: any, through the switch) and
// FP16 conversion of a warp's two m16 tiles into its staging rows.
template <int NT, int Act>
__device__ __forceinline__ void stage_tile(const float (&acc)[2][NT][4], const float* bias, const Activation& act,
                                           __half* stage, int g, int t4) {
  constexpr int OP = staging_pitch(NT * 8);
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int ch = nt * 8 + t4 * 2;
    const float b0 = bias ? __ldg(bias + ch) : 0.f, b1 = bias ? __ldg(bias + ch + 1) : 0.f;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float v0 = acc[i][nt][2 * h] + b0, v1 = acc[i][nt][2 * h + 1] + b1;
        if (Act == 1) {
          v0 = v0 > 0.f ? v0 : 0.f;
          v1 = v1 > 0.f ? v1 : 0.f;
        } else if (Act == 2) {
          v0 = apply_activation(act, v0);
          v1 = apply_activation(act, v1);
        }
        *reinterpret_cast<__half2*>(stage + (i * kTileW + g + h * 8) * OP + ch) = __floats2half2_rn(v0, v1);
      }
  }
}

// Steps: reduction steps unrolled (runtime p.steps <= Steps); NT: K / 8.
template <int Steps, int NT>
__global__ void __launch_bounds__(kThreads) small_c_conv(StemArgs p, const __half* __restrict__ x,
                                                         const __half* __restrict__ wg,
                                                         const float* __restrict__ bias, __half* __restrict__ y,
                                                         bool y_aligned) {
  constexpr int K = NT * 8, OP = staging_pitch(K), CH = K / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  const int kpad = p.steps * 16, wp = kpad + 8;
  __half* w_s = reinterpret_cast<__half*>(smem);  // [K][wp]
  __half* out_s = w_s + K * wp;                   // [kTileH * kTileW][OP]
  __half* patch = out_s + kTileH * kTileW * OP;   // [rows][cols][4]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;

  for (int i = tid; i < K * kpad / 8; i += kThreads) {
    const int row = i / (kpad / 8), col = (i - row * (kpad / 8)) * 8;
    *reinterpret_cast<uint4*>(w_s + row * wp + col) = __ldg(reinterpret_cast<const uint4*>(wg + row * kpad + col));
  }
  // This lane's A columns in each step are t4*2 (+1) and t4*2+8 (+1): their
  // patch offsets, -1 past the real reduction (those columns read as zero).
  const int s4 = p.s * 4, kr = p.r * s4;
  int off[Steps][2];
#pragma unroll
  for (int ks = 0; ks < Steps; ++ks)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int k = ks * 16 + t4 * 2 + h * 8, rr = k / s4;
      off[ks][h] = k < kr ? rr * p.cols * 4 + (k - rr * s4) : -1;
    }
  // ldmatrix: lanes 0-15 address the rows of an even n8 tile (k low, k high),
  // lanes 16-31 those of the odd one.
  const int b_row = ((lane >> 4) << 3) + (lane & 7), b_col = ((lane >> 3) & 1) * 8;

  for (int tile = blockIdx.x; tile < p.tiles; tile += gridDim.x) {
    const int tw = tile % p.tiles_w, th = (tile / p.tiles_w) % p.tiles_h, n = tile / (p.tiles_w * p.tiles_h);
    const int oy0 = th * kTileH, ox0 = tw * kTileW;
    const int iy0 = oy0 * p.sh - p.ph, ix0 = ox0 * p.sw - p.pw;
    __syncthreads();  // every warp is done with the previous patch (and the weights are in)
    // Every load of this thread's patch pixels is issued before the first
    // store: one memory round trip per tile, not one per pixel.
    const __half* xn = x + int64_t(n) * p.xs[0];
    const int pixels = p.rows * p.cols;
    for (int first = 0; first < pixels; first += kPatchLoads * kThreads) {
      uint32_t e[kPatchLoads][4];
#pragma unroll
      for (int u = 0; u < kPatchLoads; ++u) {
        const int i = first + u * kThreads + tid, py = i / p.cols, px = i - py * p.cols;
        const int iy = iy0 + py, ix = ix0 + px;
#pragma unroll
        for (int c = 0; c < 4; ++c) e[u][c] = 0u;
        if (i < pixels && unsigned(iy) < unsigned(p.h) && unsigned(ix) < unsigned(p.w)) {
          const __half* q = xn + iy * p.xs[2] + ix * p.xs[3];
#pragma unroll
          for (int c = 0; c < 4; ++c)
            if (c < p.c) e[u][c] = __half_as_ushort(q[c * p.xs[1]]);
        }
      }
#pragma unroll
      for (int u = 0; u < kPatchLoads; ++u) {
        const int i = first + u * kThreads + tid;
        if (i < pixels)
          *reinterpret_cast<uint2*>(patch + i * 4) = make_uint2(e[u][0] | (e[u][1] << 16), e[u][2] | (e[u][3] << 16));
      }
    }
    __syncthreads();

    // m16 tile i of this warp is tile row warp*2 + i; its rows g and g+8 are
    // pixels tx = g and g + 8.
    int base[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) base[i][h] = ((warp * 2 + i) * p.sh * p.cols + (g + h * 8) * p.sw) * 4;
    float acc[2][NT][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][nt][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < Steps; ++ks) {
      if (ks >= p.steps) break;
      uint32_t a[2][4];
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int o = off[ks][e >> 1];  // a0, a1: k low; a2, a3: k high; odd: row g+8
          a[i][e] = o >= 0 ? *reinterpret_cast<const uint32_t*>(patch + base[i][e & 1] + o) : 0u;
        }
#pragma unroll
      for (int j = 0; j < NT / 2; ++j) {
        uint32_t b[4];
        ldmatrix_x4(b, w_s + (j * 16 + b_row) * wp + ks * 16 + b_col);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          mma_16816(acc[i][2 * j], a[i], b[0], b[1]);
          mma_16816(acc[i][2 * j + 1], a[i], b[2], b[3]);
        }
      }
    }

    // Epilogue: accumulator (row, col) pairs -> staging -> 16-byte stores.
    // One unrolled copy per common activation keeps the per-value code free
    // of the generic activation switch.
    __half* stage = out_s + warp * 2 * kTileW * OP;
    if (p.act.kind == Activation::kRelu) stage_tile<NT, 1>(acc, bias, p.act, stage, g, t4);
    else if (p.act.kind == Activation::kNone) stage_tile<NT, 0>(acc, bias, p.act, stage, g, t4);
    else stage_tile<NT, 2>(acc, bias, p.act, stage, g, t4);
    __syncwarp();
    for (int q = lane; q < 2 * kTileW * CH; q += 32) {
      const int i = q / (kTileW * CH), rem = q - i * (kTileW * CH), px = rem / CH, part = rem - px * CH;
      const int oy = oy0 + warp * 2 + i, ox = ox0 + px;
      if (oy >= p.oh || ox >= p.ow) continue;
      const uint4 v = *reinterpret_cast<const uint4*>(out_s + ((warp * 2 + i) * kTileW + px) * OP + part * 8);
      __half* dst = y + ((int64_t(n) * p.oh + oy) * p.ow + ox) * K + part * 8;
      if (y_aligned) {
        *reinterpret_cast<uint4*>(dst) = v;
      } else {
        const __half* src = reinterpret_cast<const __half*>(&v);
        for (int e = 0; e < 8; ++e) dst[e] = src[e];
      }
    }
  }
}

using KernelFn = void (*)(StemArgs, const __half*, const __half*, const float*, __half*, bool);

KernelFn pick(int steps, int k) {
  const bool short_k = steps <= 4;
  switch (k) {
    case 16: return short_k ? small_c_conv<4, 2> : small_c_conv<kMaxSteps, 2>;
    case 32: return short_k ? small_c_conv<4, 4> : small_c_conv<kMaxSteps, 4>;
    case 64: return short_k ? small_c_conv<4, 8> : small_c_conv<kMaxSteps, 8>;
  }
  return nullptr;
}

struct StemPlan {
  StemArgs p{};
  int k = 0;
  std::shared_ptr<const ir::Tensor> w, b;
};

class SmallChannelConv : public Kernel {
 public:
  explicit SmallChannelConv(const StemPlan& pl) : p_(pl.p), k_(pl.k), fn_(pick(pl.p.steps, pl.k)) {
    // Weights [K][C][R][S] -> [K][steps*16] FP16 in the kernel's reduction
    // order (r, s, c of 4), zeros in the padding.
    const int kpad = p_.steps * 16;
    const ir::Tensor& wt = *pl.w;
    std::vector<uint16_t> wk(size_t(k_) * kpad, 0);
    for (int o = 0; o < k_; ++o)
      for (int c = 0; c < p_.c; ++c)
        for (int r = 0; r < p_.r; ++r)
          for (int s = 0; s < p_.s; ++s) {
            const size_t src = ((size_t(o) * p_.c + c) * p_.r + r) * p_.s + s;
            wk[size_t(o) * kpad + (r * p_.s + s) * 4 + c] =
                wt.dtype() == DataType::kFloat16 ? wt.data<uint16_t>()[src] : float_to_half(wt.data<float>()[src]);
          }
    w_ = upload(wk.data(), wk.size() * sizeof(uint16_t));
    if (pl.b) {
      std::vector<float> bf(static_cast<size_t>(k_));
      for (int o = 0; o < k_; ++o)
        bf[size_t(o)] = pl.b->dtype() == DataType::kFloat16 ? half_to_float(pl.b->data<uint16_t>()[o])
                                                            : pl.b->data<float>()[o];
      b_ = upload(bf.data(), bf.size() * sizeof(float));
    }
    smem_ = smem_bytes(p_, k_);
    const int resident = resident_ctas(reinterpret_cast<const void*>(fn_), kThreads, smem_, "small_c_mma");
    grid_ = unsigned(std::min<int64_t>(p_.tiles, resident));
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    const bool aligned = (reinterpret_cast<uintptr_t>(out[0]) & 15) == 0;
    fn_<<<grid_, kThreads, smem_, l.stream>>>(p_, static_cast<const __half*>(in[0]),
                                              static_cast<const __half*>(w_.get()),
                                              static_cast<const float*>(b_.get()), static_cast<__half*>(out[0]),
                                              aligned);
    KILN_CUDA_LAUNCHED("small-channel convolution kernel");
  }

 private:
  StemArgs p_;
  int k_;
  KernelFn fn_;
  int smem_ = 0;
  unsigned grid_ = 1;
  DevicePtr w_, b_;
};

}  // namespace

std::vector<Tactic> small_channel_tactics(const ir::Node& n, std::string* why) {
  auto no = [&](const std::string& m) {
    if (why) *why = m;
    return std::vector<Tactic>{};
  };
  const ir::Value* x = n.in(0);
  const ir::Value* y = n.outputs.empty() ? nullptr : n.outputs[0];
  const ir::Tensor* wt = constant_input(n, 1);
  if (!x || !y || !wt) return no("small_c_mma needs constant weights");
  if (x->dims.size() != 4 || wt->dims().size() != 4) return no("small_c_mma takes 2-D convolutions only");
  if (x->dtype != DataType::kFloat16 || y->dtype != DataType::kFloat16) return no("small_c_mma takes fp16 only");
  if (y->layout != ir::Layout::kNHWC) return no("small_c_mma writes channels-last outputs only");
  if (n.in(3)) return no("small_c_mma has no residual input");
  if (n.i("group", 1) != 1) return no("small_c_mma takes groups = 1 only");
  for (int64_t d : n.ints("dilations"))
    if (d != 1) return no("small_c_mma takes dilation 1 only");
  const std::vector<int64_t> st = n.ints("strides"), pads = n.ints("pads");
  if (st.size() != 2 || pads.size() != 4) return no("window attributes were not made explicit");
  for (int64_t s : st)
    if (s < 1 || s > 4) return no("small_c_mma takes strides 1 to 4");
  const ir::Dims& wd = wt->dims();
  const int64_t k = wd[0], c = wd[1], r = wd[2], s = wd[3];
  if (c != x->dims[1] || c > 4) return no("small_c_mma takes up to 4 input channels");
  if (k != 16 && k != 32 && k != 64) return no("small_c_mma takes 16, 32 or 64 output channels");
  if (r * s * 4 > kMaxSteps * 16) return no("small_c_mma takes kernels up to 52 taps (7x7)");
  if (wt->dtype() != DataType::kFloat16 && wt->dtype() != DataType::kFloat32) return no("weights are not float");
  const ir::Tensor* bt = nullptr;
  if (n.in(2)) {
    bt = constant_input(n, 2);
    if (!bt) return no("small_c_mma needs a constant bias");
  }
  if (ir::numel_of(x->dims) >= INT32_MAX) return no("2^31 or more input elements");
  StemPlan pl;
  StemArgs& p = pl.p;
  p.n = int(x->dims[0]);
  p.c = int(c);
  p.h = int(x->dims[2]);
  p.w = int(x->dims[3]);
  p.oh = int(y->dims[2]);
  p.ow = int(y->dims[3]);
  p.r = int(r);
  p.s = int(s);
  p.sh = int(st[0]);
  p.sw = int(st[1]);
  p.ph = int(pads[0]);
  p.pw = int(pads[1]);
  p.rows = (kTileH - 1) * p.sh + p.r;
  p.cols = (kTileW - 1) * p.sw + p.s;
  p.steps = int((r * s * 4 + 15) / 16);
  p.tiles_h = (p.oh + kTileH - 1) / kTileH;
  p.tiles_w = (p.ow + kTileW - 1) / kTileW;
  if (int64_t(p.n) * p.tiles_h * p.tiles_w >= INT32_MAX) return no("too many output tiles");
  p.tiles = p.n * p.tiles_h * p.tiles_w;
  const std::vector<int64_t> xs = strides_of(*x);
  for (int a = 0; a < 4; ++a) p.xs[a] = xs[size_t(a)];
  p.act = Activation::from_node(n);  // rejects an unknown activation here rather than at load
  pl.k = int(k);
  pl.w = n.in(1)->constant;
  pl.b = bt ? n.in(2)->constant : nullptr;
  if (smem_bytes(p, pl.k) > (227 << 10)) return no("the input patch does not fit in shared memory");
  return {Tactic{"small_c_mma", [pl] { return std::unique_ptr<Kernel>(new SmallChannelConv(pl)); }}};
}

}  // namespace kiln::cuda
