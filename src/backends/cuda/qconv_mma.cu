// qconv_1x1_mma: 1x1 QConvs (any stride, no padding, groups 1) on int8
// tensor cores with mma.sync, for the layers whose reduction is short
// (C <= 512) and whose time is memory traffic: ResNet's 64- to 256-channel
// 1x1s move a whole activation map per few hundred multiply-adds per pixel,
// so what counts is keeping loads in flight and writing full 16-byte vectors.
//
// A CTA of 8 warps owns 64 output channels (their weights resident in shared
// memory) and loops over tiles of 128 output pixels. X streams through a
// ring of kStages chunks of 128 pixels x 64 channels with cp.async, prefetch
// running across tile boundaries; an int8 residual tile rides with its
// tile's first chunk. Each warp multiplies 16 pixels x 64 channels
// (m16n8k32, int32 sums) and finishes them in registers:
//   v = fma(acc, m[k], B[k]);  v = fma(z_scale, z, v);  act;  int8: cvt.rni.sat
// into its rows of a staging tile, written out as 16-byte vectors. For int8
// outputs with ReLU or no activation, 1 / y_scale is folded into m, B and
// z_scale (both commute with a positive scale); otherwise the activated value
// is multiplied by it. The fused multiply-adds and the reciprocal differ from
// the CPU reference's separate roundings only at exact .5 ties (one step), as
// the CUTLASS epilogue does.
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "backends/cuda/common.h"
#include "backends/cuda/epilogue.h"
#include "backends/cuda/ldmatrix.cuh"
#include "backends/cuda/qconv.h"
#include "kiln/error.h"

namespace kiln::cuda::qconv {

namespace {

constexpr int kThreads = 256;            // 8 warps, 16 pixels each
constexpr int kTileM = 128, kTileN = 64;  // output pixels x output channels per tile
constexpr int kChunk = 64;                // input channels per pipeline stage
constexpr int kStages = 4;
constexpr int kRowA = kChunk + 16;        // bytes per staged X row: ldmatrix rows fall in distinct banks
constexpr int kMaxC = 512;                // the weights of 64 channels stay resident

struct MmaArgs {
  const int8_t* x = nullptr;
  const int8_t* w = nullptr;  // [K][C]
  const float* m = nullptr;   // [K], times 1 / y_scale when `folded`
  const float* bias = nullptr;
  const void* z = nullptr;
  void* y = nullptr;
  int64_t pixels = 0;         // N * P * Q
  int c = 0, k = 0, p = 0, q = 0, h = 0, w_ = 0, sh = 1, sw = 1;
  int tiles_m = 0, tiles_n = 0, groups_m = 1;  // CTAs per output-channel block
  int z_slots = 0;            // int8 residual tiles staged in shared memory (0: none staged)
  int z_kind = kZNone, y_kind = kYInt8;
  float z_scale = 1.f;        // times 1 / y_scale when `folded`
  float inv_y = 1.f;          // int8 Y not folded: the requantization multiplier
  bool folded = false;        // int8 Y with ReLU or no activation: 1 / y_scale is in m, bias, z_scale
  ir::FusedActivation act;
};

// Staged residual tiles: enough that a tile's residual, loaded with its
// first chunk (kStages - 1 chunks ahead), is not overwritten before its
// epilogue: (slots - 1) * chunks per tile >= kStages - 1.
int z_slots_for(int c) {
  const int nch = c / kChunk;
  return nch == 1 ? 4 : nch == 2 ? 3 : 2;
}
constexpr int kRowZ = kTileN + 16;           // bytes per staged int8 residual row
__host__ __device__ inline int out_row_bytes(int y_kind) { return kTileN * (y_kind == kYInt8 ? 1 : 2) + 16; }
int smem_bytes(int c, int z_slots, int y_kind) {
  return kTileN * (c + 16) + kStages * kTileM * kRowA + z_slots * kTileM * kRowZ + kTileM * out_row_bytes(y_kind) +
         2 * kTileN * 4;
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void mma_s8(int* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// saturate_int8(round_half_even(v)), NaN -> 0: one instruction.
__device__ __forceinline__ uint32_t to_s8(float v) {
  int r;
  asm("cvt.rni.sat.s8.f32 %0, %1;\n" : "=r"(r) : "f"(v));
  return uint32_t(r) & 0xFFu;
}

// Byte offset in X of output pixel `pix` (stride 1: the pixel itself).
__device__ __forceinline__ int64_t x_pixel(const MmaArgs& a, int64_t pix) {
  if (a.sh == 1 && a.sw == 1) return pix * a.c;
  const int64_t qq = pix % a.q, t = pix / a.q, pp = t % a.p, n = t / a.p;
  return ((n * a.h + pp * a.sh) * a.w_ + qq * a.sw) * a.c;
}

// The epilogue variants compiled: the int8-output paths of ResNet-style
// networks (no residual or an int8 one; no activation or ReLU, with 1 /
// y_scale folded) have everything fixed at compile time; every other node
// runs the general variant, which reads Z kind, Y kind and activation from
// the arguments. ZK / YK -1: read at run time.
template <int ZK, int YK, int Act> struct Variant {
  static constexpr int kZ = ZK, kY = YK, kAct = Act;  // Act 0: none, 1: ReLU, 2: any (switch)
};
using General = Variant<-1, -1, 2>;

// One accumulator pair (output channels col, col + 1 of a row) through the
// epilogue into the warp's output staging row.
template <class V>
__device__ __forceinline__ void finish_pair(const MmaArgs& a, const int* acc, float2 m, float2 b, const int8_t* zrow,
                                            const __half* zglobal, int col, unsigned char* orow) {
  const int zk = V::kZ >= 0 ? V::kZ : a.z_kind, yk = V::kY >= 0 ? V::kY : a.y_kind;
  float v0 = __fmaf_rn(__int2float_rn(acc[0]), m.x, b.x);
  float v1 = __fmaf_rn(__int2float_rn(acc[1]), m.y, b.y);
  if (zk == kZInt8) {
    const char2 z = *reinterpret_cast<const char2*>(zrow + col);
    v0 = __fmaf_rn(a.z_scale, float(z.x), v0);
    v1 = __fmaf_rn(a.z_scale, float(z.y), v1);
  } else if (zk == kZHalf && zglobal) {
    const float2 z = __half22float2(*reinterpret_cast<const __half2*>(zglobal + col));
    v0 = __fmaf_rn(a.z_scale, z.x, v0);
    v1 = __fmaf_rn(a.z_scale, z.y, v1);
  }
  if (V::kAct == 1) {
    v0 = fmaxf(v0, 0.f);
    v1 = fmaxf(v1, 0.f);
  } else if (V::kAct == 2) {
    v0 = apply_activation(a.act, v0);
    v1 = apply_activation(a.act, v1);
  }
  if (yk == kYInt8) {
    if (V::kAct == 2 && !a.folded) {
      v0 *= a.inv_y;
      v1 *= a.inv_y;
    }
    *reinterpret_cast<uint16_t*>(orow + col) = uint16_t(to_s8(v0) | to_s8(v1) << 8);
  } else {
    *reinterpret_cast<__half2*>(orow + 2 * col) = __floats2half2_rn(v0, v1);
  }
}

// A warp's 16 rows (g and g + 8 of its m16 tile) through finish_pair.
template <class V>
__device__ __forceinline__ void finish_tile(const MmaArgs& a, int (&acc)[8][4], const float* m_s, const float* b_s,
                                            const int8_t* z_s, unsigned char* out_s, int orow_bytes, int64_t m0,
                                            int n0, int warp, int g, int t4) {
  const int8_t* zrow[2];
  const __half* zg[2];
  int row[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    row[h] = warp * 16 + g + h * 8;
    zrow[h] = z_s + row[h] * kRowZ;
    zg[h] = (V::kZ < 0 && a.z_kind == kZHalf && m0 + row[h] < a.pixels)
                ? static_cast<const __half*>(a.z) + (m0 + row[h]) * a.k + n0
                : nullptr;
  }
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    const int col = nt * 8 + t4 * 2;
    const float2 m = *reinterpret_cast<const float2*>(m_s + col), b = *reinterpret_cast<const float2*>(b_s + col);
#pragma unroll
    for (int h = 0; h < 2; ++h)
      finish_pair<V>(a, &acc[nt][2 * h], m, b, zrow[h], zg[h], col, out_s + row[h] * orow_bytes);
  }
}

template <class V>
__global__ void __launch_bounds__(kThreads) qconv_1x1_mma(const __grid_constant__ MmaArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int rowb = a.c + 16;                                       // bytes per resident weight row
  const int orow_bytes = out_row_bytes(a.y_kind);
  int8_t* w_s = reinterpret_cast<int8_t*>(smem);                   // [kTileN][rowb]
  int8_t* x_s = w_s + kTileN * rowb;                               // [kStages][kTileM][kRowA]
  int8_t* z_s = x_s + kStages * kTileM * kRowA;                    // [z_slots][kTileM][kRowZ]
  unsigned char* out_s = reinterpret_cast<unsigned char*>(z_s + a.z_slots * kTileM * kRowZ);  // [kTileM][orow]
  float* m_s = reinterpret_cast<float*>(out_s + kTileM * orow_bytes);  // [kTileN]
  float* b_s = m_s + kTileN;                                       // [kTileN]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
  const int tn = blockIdx.x % a.tiles_n, n0 = tn * kTileN;
  const int tm0 = blockIdx.x / a.tiles_n;
  const int nch = a.c / kChunk;
  const int my_tiles = tm0 < a.tiles_m ? (a.tiles_m - 1 - tm0) / a.groups_m + 1 : 0;
  const int total = my_tiles * nch;

  for (int i = tid; i < kTileN * (a.c / 16); i += kThreads) {
    const int row = i / (a.c / 16), col = (i - row * (a.c / 16)) * 16;
    cp_async16(w_s + row * rowb + col, a.w + int64_t(n0 + row) * a.c + col, true);
  }
  if (tid < kTileN) {
    m_s[tid] = a.m[n0 + tid];
    b_s[tid] = a.bias[n0 + tid];
  }
  // Chunks in order: tile lt of this CTA, input channels kc * 64; the
  // tile's staged residual rides with its first chunk. Counters, not
  // divisions: the issue side runs kStages - 1 chunks ahead.
  int i_lt = 0, i_kc = 0, i_stage = 0, i_zslot = 0;
  auto issue = [&]() {
    if (i_lt < my_tiles) {
      const int64_t m0 = int64_t(tm0 + i_lt * a.groups_m) * kTileM;
      int8_t* dst = x_s + i_stage * kTileM * kRowA;
#pragma unroll
      for (int v = 0; v < kTileM * kChunk / 16 / kThreads; ++v) {
        const int id = tid + v * kThreads, row = id >> 2, part = id & 3;
        const int64_t pix = m0 + row;
        const bool ok = pix < a.pixels;
        cp_async16(dst + row * kRowA + part * 16, a.x + (ok ? x_pixel(a, pix) + i_kc * kChunk + part * 16 : 0), ok);
        if (a.z_slots && i_kc == 0) {
          const int8_t* zsrc = static_cast<const int8_t*>(a.z) + (ok ? pix * a.k + n0 + part * 16 : 0);
          cp_async16(z_s + (i_zslot * kTileM + row) * kRowZ + part * 16, zsrc, ok);
        }
      }
      i_stage = i_stage + 1 == kStages ? 0 : i_stage + 1;
      if (++i_kc == nch) {
        i_kc = 0;
        ++i_lt;
        if (a.z_slots) i_zslot = i_zslot + 1 == a.z_slots ? 0 : i_zslot + 1;
      }
    }
    cp_async_commit();  // empty groups keep the wait counts uniform
  };
#pragma unroll 1
  for (int s = 0; s < kStages - 1; ++s) issue();  // the weights ride in the first group

  int acc[8][4];
#pragma unroll
  for (int nt = 0; nt < 8; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[nt][e] = 0;
  // ldmatrix lanes: A rows 0-15 of the m16 tile, k bytes 0-15 / 16-31;
  // B rows (output channels) of two n8 tiles, k bytes 0-15 / 16-31.
  const int a_row = lane & 15, a_col = (lane >> 4) * 16;
  const int b_row = ((lane >> 4) << 3) + (lane & 7), b_col = ((lane >> 3) & 1) * 16;

  const int esize = (V::kY >= 0 ? V::kY : a.y_kind) == kYInt8 ? 1 : 2;
  const int vec_shift = esize == 1 ? 2 : 3;  // 16-byte vectors per staging row: 4 or 8
  int lt = 0, kc = 0, stage = 0, zslot = 0;
  for (int j = 0; j < total; ++j) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // chunk j is in; every warp is done with chunk j - 1's stage
    issue();
    const int8_t* xa = x_s + stage * kTileM * kRowA;
#pragma unroll
    for (int ks = 0; ks < kChunk / 32; ++ks) {
      uint32_t af[4];
      ldmatrix_x4(af, xa + (warp * 16 + a_row) * kRowA + ks * 32 + a_col);
#pragma unroll
      for (int jb = 0; jb < 4; ++jb) {
        uint32_t b[4];
        ldmatrix_x4(b, w_s + (jb * 16 + b_row) * rowb + kc * kChunk + ks * 32 + b_col);
        mma_s8(acc[2 * jb], af, b[0], b[1]);
        mma_s8(acc[2 * jb + 1], af, b[2], b[3]);
      }
    }
    stage = stage + 1 == kStages ? 0 : stage + 1;
    if (++kc < nch) continue;
    kc = 0;

    // Tile done: each warp finishes its 16 rows into its staging rows and
    // writes them out as 16-byte vectors.
    const int64_t m0 = int64_t(tm0 + lt * a.groups_m) * kTileM;
    finish_tile<V>(a, acc, m_s, b_s, z_s + zslot * kTileM * kRowZ, out_s, orow_bytes, m0, n0, warp, g, t4);
    ++lt;
    if (a.z_slots) zslot = zslot + 1 == a.z_slots ? 0 : zslot + 1;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[nt][e] = 0;
    __syncwarp();
    for (int v = lane; v < (16 << vec_shift); v += 32) {
      const int row = warp * 16 + (v >> vec_shift), part = v & ((1 << vec_shift) - 1);
      if (m0 + row >= a.pixels) continue;
      const uint4 u = *reinterpret_cast<const uint4*>(out_s + row * orow_bytes + part * 16);
      *reinterpret_cast<uint4*>(static_cast<unsigned char*>(a.y) + ((m0 + row) * a.k + n0) * esize + part * 16) = u;
    }
    __syncwarp();  // the staging rows are rewritten by this warp only, at its next tile
  }
  cp_async_wait<0>();
}

using KernelFn = void (*)(MmaArgs);

KernelFn pick_variant(const MmaArgs& a) {
  if (a.y_kind == kYInt8 && a.folded) {
    const bool relu = a.act.kind == ir::FusedActivation::kRelu;
    if (a.z_kind == kZNone)
      return relu ? qconv_1x1_mma<Variant<kZNone, kYInt8, 1>> : qconv_1x1_mma<Variant<kZNone, kYInt8, 0>>;
    if (a.z_kind == kZInt8)
      return relu ? qconv_1x1_mma<Variant<kZInt8, kYInt8, 1>> : qconv_1x1_mma<Variant<kZInt8, kYInt8, 0>>;
  }
  return qconv_1x1_mma<General>;
}

class MmaKernel : public Kernel {
 public:
  explicit MmaKernel(const Plan& p) {
    a_.pixels = p.n * p.p * p.q;
    a_.c = int(p.c);
    a_.k = int(p.k);
    a_.p = int(p.p);
    a_.q = int(p.q);
    a_.h = int(p.h);
    a_.w_ = int(p.w);
    a_.sh = int(p.stride[0]);
    a_.sw = int(p.stride[1]);
    a_.tiles_m = int((a_.pixels + kTileM - 1) / kTileM);
    a_.tiles_n = int(p.k / kTileN);
    a_.z_kind = !p.has_z ? kZNone : p.z == DataType::kInt8 ? kZInt8 : kZHalf;
    a_.y_kind = p.y == DataType::kInt8 ? kYInt8 : kYHalf;
    a_.z_slots = a_.z_kind == kZInt8 ? z_slots_for(a_.c) : 0;
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
    w_ = upload(p.weights->data<int8_t>(), size_t(p.k * p.c));  // [K, C, 1, 1] is [K][C]
    m_ = upload(m.data(), m.size() * sizeof(float));
    b_ = upload(b.data(), b.size() * sizeof(float));
    smem_ = smem_bytes(a_.c, a_.z_slots, a_.y_kind);
    fn_ = pick_variant(a_);
    const int resident = resident_ctas(reinterpret_cast<const void*>(fn_), kThreads, smem_, "qconv_1x1_mma");
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
      throw_internal("qconv_1x1_mma: a tensor is not 16-byte aligned");
    if (a.pixels == 0) return;
    fn_<<<unsigned(a.tiles_n * a.groups_m), kThreads, smem_, l.stream>>>(a);
    KILN_CUDA_LAUNCHED("qconv_1x1_mma kernel");
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

std::string mma_refusal(const Plan& p) {
  if (p.r != 1 || p.s != 1 || p.pad[0] || p.pad[1] || p.pad_end[0] || p.pad_end[1] || p.group != 1)
    return "not a 1x1 convolution without padding or groups";
  if (p.c % kChunk != 0 || p.c > kMaxC) return "input channels not a multiple of 64 up to 512";
  if (p.k % kTileN != 0) return "output channels not a multiple of 64";
  if (p.y != DataType::kInt8 && p.y != DataType::kFloat16) return "output neither int8 nor fp16";
  if (p.has_z && p.z != DataType::kInt8 && p.z != DataType::kFloat16) return "residual neither int8 nor fp16";
  if (!packed_nhwc(p.xs, p.c, p.h, p.w) || !packed_nhwc(p.ys, p.k, p.p, p.q) ||
      (p.has_z && !packed_nhwc(p.zs, p.k, p.p, p.q)))
    return "X, Y or Z not packed channels-last";
  if (p.n * p.p * p.q >= INT_MAX / 2) return "too many output pixels";
  return "";
}

std::unique_ptr<Kernel> make_mma_kernel(const Plan& p) { return std::unique_ptr<Kernel>(new MmaKernel(p)); }

}  // namespace kiln::cuda::qconv
