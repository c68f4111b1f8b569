// qconv_mma: QConvs (groups 1, any window, stride, padding and dilation) on
// int8 tensor cores with mma.sync, as an implicit GEMM whose reduction runs
// over the taps and 64-channel blocks. ResNet's 64- to 256-channel 1x1s
// are memory-bound (keep loads in flight, write full 16-byte vectors); its
// 3x3s are bound by the instructions issued per mma and by how many warps
// hide mma latency (keep the per-chunk work small, the footprint small).
//
// A CTA of 8 warps owns 64 output channels and loops over tiles of 128 or
// 256 output pixels. Their KRSC weights stay resident in shared memory where
// that fits without costing warps; otherwise each chunk's 64x64 weights
// stream with it. X streams through a ring of 3 or 4 chunks (a tile's pixels
// x 64 channels of one tap, zeros outside the image; 3 where that fits more
// CTAs per SM) with cp.async, prefetch running across tile boundaries; the
// residual tile (int8 or fp16) rides with its tile's first chunk. Each warp
// multiplies 16 or 32 pixels x 64 channels (m16n8k32, int32 sums) and
// finishes them in registers:
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

constexpr int kThreads = 256;  // 8 warps, 16 * WM pixels each
constexpr int kTileN = 64;     // output channels per tile; a tile has 128 * WM output pixels
constexpr int kChunk = 64;                // input channels per pipeline stage
// Staged X rows are 64 bytes, their four 16-byte units XOR-swizzled by row
// bits 1-2 so that the 8 rows of an ldmatrix fall in distinct banks.
constexpr int kRowA = kChunk;
__host__ __device__ inline int x_unit(int row, int unit) { return (unit ^ ((row >> 1) & 3)) * 16; }
constexpr int kMaxSmem = 227 * 1024;      // sm_90's opt-in shared memory per CTA

struct MmaArgs {
  const int8_t* x = nullptr;
  const int8_t* w = nullptr;  // [K][R][S][C]
  const float* m = nullptr;   // [K], times 1 / y_scale when `folded`
  const float* bias = nullptr;
  const void* z = nullptr;
  void* y = nullptr;
  int64_t pixels = 0;         // N * P * Q
  int c = 0, k = 0, p = 0, q = 0, h = 0, w_ = 0, sh = 1, sw = 1;
  int r = 1, s = 1, pt = 0, pl = 0, dh = 1, dw = 1;  // window, top / left pads, dilations
  int red = 0;                // R * S * C: the reduction, one weight row in bytes
  bool plain = false;         // 1x1, stride 1, no pads: no window arithmetic
  int tiles_m = 0, tiles_n = 0, groups_m = 1;  // CTAs per output-channel block
  int stages = 4;             // chunks in the X ring: 4, or 3 where that fits more CTAs per SM
  bool stream = false;        // weights stream with X chunk by chunk instead of staying resident
  int z_slots = 0;            // residual tiles staged in shared memory (0: no residual)
  int z_kind = kZNone, y_kind = kYInt8;
  float z_scale = 1.f;        // times 1 / y_scale when `folded`
  float inv_y = 1.f;          // int8 Y not folded: the requantization multiplier
  bool folded = false;        // int8 Y with ReLU or no activation: 1 / y_scale is in m, bias, z_scale
  ir::FusedActivation act;
};

// Staged residual tiles: enough that a tile's residual, loaded with its
// first chunk (stages - 1 chunks ahead), is not overwritten before its
// epilogue: (slots - 1) * chunks per tile >= stages - 1.
int z_slots_for(int chunks_per_tile, int stages) {
  int slots = 2;
  while ((slots - 1) * chunks_per_tile < stages - 1) ++slots;
  return slots;
}
// Bytes per staged residual row (int8 or fp16).
__host__ __device__ inline int z_row_bytes(int z_kind) { return kTileN * (z_kind == kZHalf ? 2 : 1) + 16; }
__host__ __device__ inline int out_row_bytes(int y_kind) { return kTileN * (y_kind == kYInt8 ? 1 : 2) + 16; }
int smem_bytes(int tile_m, int stages, bool stream, int red, int z_slots, int z_kind, int y_kind) {
  const int weights = stream ? stages * kTileN * kChunk : kTileN * (red + 16);
  return weights + stages * tile_m * kRowA + z_slots * tile_m * z_row_bytes(z_kind) + tile_m * out_row_bytes(y_kind) +
         2 * kTileN * 4 + (red / kChunk) * 16;  // m, B; the chunk table
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

// The epilogue variants compiled: the int8-output paths of ResNet-style
// networks (no residual or an int8 one; no activation or ReLU, with 1 /
// y_scale folded) have everything fixed at compile time; other nodes with
// ReLU or no activation read Z and Y kinds from the arguments (uniform
// branches); only other activations run the general variant, whose switch,
// unrolled over 64 accumulators per fragment, costs instruction fetches.
// ZK / YK -1: read at run time.
template <int ZK, int YK, int Act> struct Variant {
  static constexpr int kZ = ZK, kY = YK, kAct = Act;  // Act 0: none, 1: ReLU, 2: any (switch)
};
using General = Variant<-1, -1, 2>;

// One accumulator pair (output channels col, col + 1 of a row) through the
// epilogue into the warp's output staging row.
template <class V>
__device__ __forceinline__ void finish_pair(const MmaArgs& a, const int* acc, float2 m, float2 b, const int8_t* zrow,
                                            int col, unsigned char* orow) {
  const int zk = V::kZ >= 0 ? V::kZ : a.z_kind, yk = V::kY >= 0 ? V::kY : a.y_kind;
  float v0 = __fmaf_rn(__int2float_rn(acc[0]), m.x, b.x);
  float v1 = __fmaf_rn(__int2float_rn(acc[1]), m.y, b.y);
  if (zk == kZInt8) {
    const char2 z = *reinterpret_cast<const char2*>(zrow + col);
    v0 = __fmaf_rn(a.z_scale, float(z.x), v0);
    v1 = __fmaf_rn(a.z_scale, float(z.y), v1);
  } else if (zk == kZHalf) {
    const float2 z = __half22float2(*reinterpret_cast<const __half2*>(zrow + 2 * col));
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

// One m16 fragment's rows (r0 + g and r0 + g + 8) through finish_pair.
template <class V>
__device__ __forceinline__ void finish_rows(const MmaArgs& a, int (&acc)[8][4], const float* m_s, const float* b_s,
                                            const int8_t* z_s, unsigned char* out_s, int orow_bytes, int r0,
                                            int g, int t4) {
  const int zrow_bytes = z_row_bytes(V::kZ >= 0 ? V::kZ : a.z_kind);
  const int8_t* zrow[2];
  int row[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    row[h] = r0 + g + h * 8;
    zrow[h] = z_s + row[h] * zrow_bytes;
  }
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    const int col = nt * 8 + t4 * 2;
    const float2 m = *reinterpret_cast<const float2*>(m_s + col), b = *reinterpret_cast<const float2*>(b_s + col);
#pragma unroll
    for (int h = 0; h < 2; ++h)
      finish_pair<V>(a, &acc[nt][2 * h], m, b, zrow[h], col, out_s + row[h] * orow_bytes);
  }
}

// WM: m16 fragments per warp. 1 suits the memory-bound layers (more CTAs
// per SM overlap one's epilogue with another's loads); 2 reuses each weight
// fragment for two row blocks (twice the accumulators per warp, fewer
// warps), which wins on the 3x3s and the deep 1x1s. Both are tactics; timing
// picks.
// Register caps keep 3 (WM 1) or 2 (WM 2) CTAs of registers per SM, so
// shared memory alone decides how many are resident.
template <class V, int WM>
__global__ void __launch_bounds__(kThreads, WM == 1 ? 3 : 2) qconv_mma(const __grid_constant__ MmaArgs a) {
  constexpr int kTileM = 128 * WM, kWarpM = 16 * WM;
  extern __shared__ __align__(16) unsigned char smem[];
  const int rowb = a.red + 16;                                     // bytes per resident weight row
  const int orow_bytes = out_row_bytes(a.y_kind);
  const int zk = V::kZ >= 0 ? V::kZ : a.z_kind, zrow_bytes = z_row_bytes(zk), zesize = zk == kZHalf ? 2 : 1;
  // Weights: resident [kTileN][rowb], or streamed [stages][kTileN][kChunk] swizzled like X.
  int8_t* w_s = reinterpret_cast<int8_t*>(smem);
  int8_t* x_s = w_s + (a.stream ? a.stages * kTileN * kChunk : kTileN * rowb);  // [stages][kTileM][kRowA], swizzled
  int8_t* z_s = x_s + a.stages * kTileM * kRowA;                   // [z_slots][kTileM][zrow_bytes]
  unsigned char* out_s = reinterpret_cast<unsigned char*>(z_s + a.z_slots * kTileM * zrow_bytes);  // [kTileM][orow]
  float* m_s = reinterpret_cast<float*>(out_s + kTileM * orow_bytes);  // [kTileN]
  float* b_s = m_s + kTileN;                                       // [kTileN]
  int4* tap_s = reinterpret_cast<int4*>(b_s + kTileN);             // [chunks per tile]: dy, dx, byte offset
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
  const int tn = blockIdx.x % a.tiles_n, n0 = tn * kTileN;
  const int tm0 = blockIdx.x / a.tiles_n;
  const int nch = a.red / kChunk, nch_c = a.c / kChunk;  // chunks per tile, per tap
  const int my_tiles = tm0 < a.tiles_m ? (a.tiles_m - 1 - tm0) / a.groups_m + 1 : 0;
  const int total = my_tiles * nch;

  for (int i = tid; !a.stream && i < kTileN * (a.red / 16); i += kThreads) {
    const int row = i / (a.red / 16), col = (i - row * (a.red / 16)) * 16;
    cp_async16(w_s + row * rowb + col, a.w + int64_t(n0 + row) * a.red + col, true);
  }
  if (tid < kTileN) {
    m_s[tid] = a.m[n0 + tid];
    b_s[tid] = a.bias[n0 + tid];
  }
  for (int kc = tid; kc < nch; kc += kThreads) {  // chunk kc: tap kc / nch_c, channel block kc % nch_c
    const int tap = kc / nch_c, dy = tap / a.s * a.dh, dx = tap % a.s * a.dw;
    tap_s[kc] = make_int4(dy, dx, (dy * a.w_ + dx) * a.c + kc % nch_c * kChunk, 0);
  }
  __syncthreads();  // the issue side reads the table from the first chunk on
  // Chunks in order: tile lt of this CTA, then tap (r, s), then 64 input
  // channels: the weight column of chunk kc is kc * 64 (KRSC). The tile's
  // staged residual rides with its first chunk. The issue side runs
  // stages - 1 chunks ahead and must stay cheap (it runs once per chunk,
  // 16 * WM mma per warp): each thread copies the same 16-byte part of kRowsPerThread
  // rows of every chunk; a row's window origin and source offset are found
  // once per tile, and a chunk adds one offset common to all rows, read from
  // a table made once per CTA.
  constexpr int kRowsPerThread = kTileM * kChunk / 16 / kThreads;
  const int part = tid & 3;
  int i_lt = 0, i_kc = 0, i_stage = 0, i_zslot = 0;
  int64_t row_src[kRowsPerThread];    // byte offset of the row's window origin, channel block 0, this part
  int row_ih[kRowsPerThread], row_iw[kRowsPerThread];  // window origin (may be negative); ih INT_MIN: no pixel
  auto locate = [&](int lt) {
    const int m0 = (tm0 + lt * a.groups_m) * kTileM;  // pixels < 2^30 (mma_refusal)
#pragma unroll
    for (int v = 0; v < kRowsPerThread; ++v) {
      const int pix = m0 + (tid >> 2) + v * (kThreads / 4);
      if (a.plain) {  // 1x1, stride 1, no pads: the input pixel is the output pixel
        row_ih[v] = pix < a.pixels ? 0 : INT_MIN;
        row_iw[v] = 0;
        row_src[v] = int64_t(pix) * a.c + part * 16;
        continue;
      }
      const int qq = pix % a.q, t = pix / a.q, pp = t % a.p, n = t / a.p;
      row_ih[v] = pix < a.pixels ? pp * a.sh - a.pt : INT_MIN;
      row_iw[v] = qq * a.sw - a.pl;
      row_src[v] = ((int64_t(n) * a.h + row_ih[v]) * a.w_ + row_iw[v]) * a.c + part * 16;
    }
  };
  auto issue = [&]() {
    if (i_lt < my_tiles) {
      if (i_kc == 0) {
        locate(i_lt);
        if (a.z_slots) {  // 64 int8 or fp16 residuals per row: 4 or 8 16-byte parts
          const int m0 = (tm0 + i_lt * a.groups_m) * kTileM;
#pragma unroll
          for (int v = 0; v < kRowsPerThread; ++v) {
            const int row = (tid >> 2) + v * (kThreads / 4);
            const bool live = m0 + row < a.pixels;
            const unsigned char* zrow =
                static_cast<const unsigned char*>(a.z) + (live ? (int64_t(m0 + row) * a.k + n0) * zesize : 0);
            int8_t* zdst = z_s + (i_zslot * kTileM + row) * zrow_bytes;
            for (int zp = part; zp < 4 * zesize; zp += 4) cp_async16(zdst + zp * 16, zrow + zp * 16, live);
          }
        }
      }
      // Rows tid / 4 + v * 64 share row bits 1-2, hence the swizzle.
      int8_t* dst = x_s + i_stage * kTileM * kRowA + (tid >> 2) * kRowA + x_unit(tid >> 2, part);
      const int4 tap = tap_s[i_kc];
#pragma unroll
      for (int v = 0; v < kRowsPerThread; ++v) {
        // ih of a row past the last pixel is INT_MIN: out of range whatever the tap.
        const bool ok = unsigned(row_ih[v] + tap.x) < unsigned(a.h) && unsigned(row_iw[v] + tap.y) < unsigned(a.w_);
        cp_async16(dst + v * (kThreads / 4) * kRowA, a.x + (ok ? row_src[v] + tap.z : 0), ok);  // outside: zeros
      }
      if (a.stream)  // the chunk's 64 x 64 weight bytes: one 16-byte part per thread
        cp_async16(w_s + i_stage * kTileN * kChunk + (tid >> 2) * kChunk + x_unit(tid >> 2, part),
                   a.w + int64_t(n0 + (tid >> 2)) * a.red + i_kc * kChunk + part * 16, true);
      i_stage = i_stage + 1 == a.stages ? 0 : i_stage + 1;
      if (++i_kc == nch) {
        i_kc = 0;
        ++i_lt;
        if (a.z_slots) i_zslot = i_zslot + 1 == a.z_slots ? 0 : i_zslot + 1;
      }
    }
    cp_async_commit();  // empty groups keep the wait counts uniform
  };
#pragma unroll 1
  for (int s = 0; s < a.stages - 1; ++s) issue();  // resident weights ride in the first group

  int acc[WM][8][4];
#pragma unroll
  for (int mi = 0; mi < WM; ++mi)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][nt][e] = 0;
  // ldmatrix lanes: A rows 0-15 of the m16 tile, k bytes 0-15 / 16-31;
  // B rows (output channels) of two n8 tiles, k bytes 0-15 / 16-31.
  // (The row's swizzle depends on lane & 15 alone: warp and fragment offsets are multiples of 16.)
  const int8_t* a_lane = x_s + (warp * kWarpM + (lane & 15)) * kRowA;
  const int a_unit[2] = {x_unit(lane & 15, lane >> 4), x_unit(lane & 15, 2 + (lane >> 4))};  // k bytes 0-31, 32-63
  // B: two n8 tiles of weight rows per ldmatrix; resident rows of rowb
  // bytes, or streamed 64-byte rows swizzled like X (row bits 1-2 come from
  // lane & 7: the tile offsets are multiples of 8).
  const int b_row = ((lane >> 4) << 3) + (lane & 7), b_unit = (lane >> 3) & 1;
  const int b_pitch = a.stream ? kChunk : rowb, b_step = 16 * b_pitch;
  const int8_t* b_lane = w_s + b_row * b_pitch;
  const int b_off[2] = {a.stream ? x_unit(b_row, b_unit) : b_unit * 16,
                        a.stream ? x_unit(b_row, 2 + b_unit) : 32 + b_unit * 16};  // k bytes 0-31, 32-63

  const int esize = (V::kY >= 0 ? V::kY : a.y_kind) == kYInt8 ? 1 : 2;
  const int vec_shift = esize == 1 ? 2 : 3;  // 16-byte vectors per staging row: 4 or 8
  int lt = 0, kc = 0, stage = 0, zslot = 0;
  for (int j = 0; j < total; ++j) {
    if (a.stages == 3) cp_async_wait<1>();
    else cp_async_wait<2>();
    __syncthreads();  // chunk j is in; every warp is done with chunk j - 1's stage
    issue();
    const int8_t* xa = a_lane + stage * kTileM * kRowA;
    const int8_t* wb = b_lane + (a.stream ? stage * kTileN * kChunk : kc * kChunk);
#pragma unroll
    for (int ks = 0; ks < kChunk / 32; ++ks) {
      uint32_t af[WM][4];
#pragma unroll
      for (int mi = 0; mi < WM; ++mi) ldmatrix_x4(af[mi], xa + mi * 16 * kRowA + a_unit[ks]);
#pragma unroll
      for (int jb = 0; jb < 4; ++jb) {
        uint32_t b[4];
        ldmatrix_x4(b, wb + jb * b_step + b_off[ks]);
#pragma unroll
        for (int mi = 0; mi < WM; ++mi) {
          mma_s8(acc[mi][2 * jb], af[mi], b[0], b[1]);
          mma_s8(acc[mi][2 * jb + 1], af[mi], b[2], b[3]);
        }
      }
    }
    stage = stage + 1 == a.stages ? 0 : stage + 1;
    if (++kc < nch) continue;
    kc = 0;

    // Tile done: each warp finishes its rows into its staging rows and
    // writes them out as 16-byte vectors.
    const int64_t m0 = int64_t(tm0 + lt * a.groups_m) * kTileM;
#pragma unroll
    for (int mi = 0; mi < WM; ++mi)
      finish_rows<V>(a, acc[mi], m_s, b_s, z_s + zslot * kTileM * zrow_bytes, out_s, orow_bytes,
                     warp * kWarpM + mi * 16, g, t4);
    ++lt;
    if (a.z_slots) zslot = zslot + 1 == a.z_slots ? 0 : zslot + 1;
#pragma unroll
    for (int mi = 0; mi < WM; ++mi)
#pragma unroll
      for (int nt = 0; nt < 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mi][nt][e] = 0;
    __syncwarp();
    for (int v = lane; v < (kWarpM << vec_shift); v += 32) {
      const int row = warp * kWarpM + (v >> vec_shift), part = v & ((1 << vec_shift) - 1);
      if (m0 + row >= a.pixels) continue;
      const uint4 u = *reinterpret_cast<const uint4*>(out_s + row * orow_bytes + part * 16);
      *reinterpret_cast<uint4*>(static_cast<unsigned char*>(a.y) + ((m0 + row) * a.k + n0) * esize + part * 16) = u;
    }
    __syncwarp();  // the staging rows are rewritten by this warp only, at its next tile
  }
  cp_async_wait<0>();
}

using KernelFn = void (*)(MmaArgs);

template <int WM> KernelFn pick_variant(const MmaArgs& a) {
  const bool relu = a.act.kind == ir::FusedActivation::kRelu;
  if (!relu && a.act.kind != ir::FusedActivation::kNone) return qconv_mma<General, WM>;
  if (a.y_kind == kYInt8 && a.folded) {
    if (a.z_kind == kZNone)
      return relu ? qconv_mma<Variant<kZNone, kYInt8, 1>, WM> : qconv_mma<Variant<kZNone, kYInt8, 0>, WM>;
    if (a.z_kind == kZInt8)
      return relu ? qconv_mma<Variant<kZInt8, kYInt8, 1>, WM> : qconv_mma<Variant<kZInt8, kYInt8, 0>, WM>;
  }
  return relu ? qconv_mma<Variant<-1, -1, 1>, WM> : qconv_mma<Variant<-1, -1, 0>, WM>;
}

int staged_residuals(const Plan& p, int stages) {
  return p.has_z ? z_slots_for(int(p.r * p.s * p.c / kChunk), stages) : 0;
}
int z_kind_of(const Plan& p) { return !p.has_z ? kZNone : p.z == DataType::kInt8 ? kZInt8 : kZHalf; }
int y_kind_of(const Plan& p) { return p.y == DataType::kInt8 ? kYInt8 : kYHalf; }
int smem_for(const Plan& p, int wm, int stages, bool stream) {
  return smem_bytes(128 * wm, stages, stream, int(p.r * p.s * p.c), staged_residuals(p, stages), z_kind_of(p),
                    y_kind_of(p));
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
    a_.tiles_n = int(p.k / kTileN);
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
    fn_ = wm == 2 ? pick_variant<2>(a_) : pick_variant<1>(a_);
    // A 4-chunk ring prefetches deeper; a 3-chunk one is taken where it
    // leaves room for more resident CTAs (latency is hidden by warps).
    int resident = 0;
    for (int stages : {4, 3}) {
      const int smem = smem_for(p, wm, stages, shape.stream);
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
  if (p.k % kTileN != 0) return "output channels not a multiple of 64";
  if (p.y != DataType::kInt8 && p.y != DataType::kFloat16) return "output neither int8 nor fp16";
  if (p.has_z && p.z != DataType::kInt8 && p.z != DataType::kFloat16) return "residual neither int8 nor fp16";
  if (!packed_nhwc(p.xs, p.c, p.h, p.w) || !packed_nhwc(p.ys, p.k, p.p, p.q) ||
      (p.has_z && !packed_nhwc(p.zs, p.k, p.p, p.q)))
    return "X, Y or Z not packed channels-last";
  if (p.n * p.p * p.q >= INT_MAX / 2 || p.n * p.h * p.w >= INT_MAX / 2) return "too many pixels";
  if (p.h * p.w * p.c >= INT_MAX) return "one image of X over 2 GiB";
  if (smem_for(p, shape.wm, 3, shape.stream) > kMaxSmem)
    return shape.stream ? "the pipeline exceeds shared memory"
                        : "R*S*C too deep: the weights of 64 output channels and the pipeline exceed shared memory";
  return "";
}

std::unique_ptr<Kernel> make_mma_kernel(const Plan& p, MmaShape shape) {
  return std::unique_ptr<Kernel>(new MmaKernel(p, shape));
}

}  // namespace kiln::cuda::qconv
