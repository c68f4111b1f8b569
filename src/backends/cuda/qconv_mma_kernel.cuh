// qconv_mma kernels: QConvs (groups 1, any window, stride, padding and
// dilation) on int8 tensor cores, as an implicit GEMM whose reduction runs
// over the taps and 64-channel blocks: mma.sync on sm_90, or Hopper's
// warpgroup mma (wgmma) on sm_90a. ResNet's 64- to 256-channel 1x1s are
// memory-bound (keep loads in flight, write full 16-byte vectors); its 3x3s
// and deep 1x1s are bound by the instructions issued per multiply and by
// how many warps hide its latency (keep the per-chunk work small, the
// footprint small).
//
// A CTA of 8 warps owns TN output channels (64; 128 on wgmma) and loops over
// tiles of 128 or 256 output pixels. Their KRSC weights stay resident in
// shared memory where that fits without costing warps; otherwise each
// chunk's TN x 64 weights stream with it. X streams through a ring of 3 or
// 4 chunks (a tile's pixels x 64 channels of one tap, zeros outside the
// image; 3 where that fits more CTAs per SM) with cp.async, prefetch running
// across tile boundaries; the residual tile (int8 or fp16) rides with its
// tile's first chunk. mma.sync: each warp multiplies 16 or 32 pixels x 64
// channels (m16n8k32 on ldmatrix fragments). wgmma: each warpgroup
// multiplies 64 or 128 pixels x TN channels (m64nTNk32 from the swizzled
// stages, no fragment loads), a warp holding 16 rows of each 64. Both leave
// int32 sums in the same fragment layout, finished in registers:
//   v = fma(acc, m[k], B[k]);  v = fma(z_scale, z, v);  act;  int8: cvt.rni.sat
// into the warp's rows of a staging tile, written out as 16-byte vectors. For int8
// outputs with ReLU or no activation, 1 / y_scale is folded into m, B and
// z_scale (both commute with a positive scale); otherwise the activated value
// is multiplied by it. The fused multiply-adds and the reciprocal differ from
// the CPU reference's separate roundings only at exact .5 ties (one step), as
// the CUTLASS epilogue does.
//
// Included by qconv_mma.cu (sm_90, mma.sync) and sm90a/qconv_wgmma.cu
// (sm_90a, wgmma), which instantiate the kernel for their architecture.
#pragma once

#include <cuda_fp16.h>

#include <climits>
#include <cstdint>

#include "backends/cuda/epilogue.h"
#include "backends/cuda/ldmatrix.cuh"
#include "backends/cuda/qconv.h"

namespace kiln::cuda::qconv::mma {

constexpr int kThreads = 256;  // 8 warps; a tile: 128 * WM pixels x TN (64, or 128 on wgmma) channels
constexpr int kChunk = 64;                // input channels per pipeline stage
// Staged X rows are 64 bytes, their four 16-byte units XOR-swizzled by row
// bits 1-2 so that the 8 rows of an ldmatrix fall in distinct banks; it is
// also the layout wgmma reads with its 64-byte swizzle.
constexpr int kRowA = kChunk;
__host__ __device__ inline int x_unit(int row, int unit) { return (unit ^ ((row >> 1) & 3)) * 16; }
constexpr int kMaxSmem = 227 * 1024;      // sm_90's opt-in shared memory per CTA
constexpr int kWgAlign = 512;             // the 64-byte swizzle's period: wgmma operand tiles start on it

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
inline int z_slots_for(int chunks_per_tile, int stages) {
  int slots = 2;
  while ((slots - 1) * chunks_per_tile < stages - 1) ++slots;
  return slots;
}
// Bytes per staged residual row (int8 or fp16).
__host__ __device__ inline int z_row_bytes(int z_kind, int tn) { return tn * (z_kind == kZHalf ? 2 : 1) + 16; }
__host__ __device__ inline int y_size(int y_kind) { return y_kind == kYInt8 ? 1 : y_kind == kYHalf ? 2 : 4; }
__host__ __device__ inline int out_row_bytes(int y_kind, int tn) { return tn * y_size(y_kind) + 16; }
// wgmma reads its operands through 512-byte-aligned descriptors: resident
// weights are chunk-major tn x 64 blocks swizzled like X (no row padding),
// and the base is aligned at run time (hence the slack).
inline int smem_bytes(int tile_m, int tn, int stages, bool stream, int red, int z_slots, int z_kind, int y_kind,
                      bool wg) {
  const int weights = stream ? stages * tn * kChunk : wg ? tn * red : tn * (red + 16);
  return (wg ? kWgAlign : 0) + weights + stages * tile_m * kRowA + z_slots * tile_m * z_row_bytes(z_kind, tn) +
         tile_m * out_row_bytes(y_kind, tn) + 2 * tn * 4 + (red / kChunk) * 16;  // m, B; the chunk table
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Hopper warpgroup mma (sm_90a only; the sm_90 build instantiates no caller).
// Operands are K-major 64-byte rows in shared memory with the 64-byte swizzle
// (x_unit): descriptor LBO 16 bytes (unused), SBO 512 bytes between 8-row
// groups, layout type 2. A k32 step adds 32 bytes to the start address.
__device__ __forceinline__ uint64_t wg_desc(const void* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return uint64_t((a >> 4) & 0x3FFF) | uint64_t(1) << 16 | uint64_t(kWgAlign >> 4) << 32 | uint64_t(2) << 62;
}
// One-instruction sm_90a statements; empty in the sm_90 build, which
// instantiates no caller.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KILN_SM90A_ASM(text) asm volatile(text ::: "memory")
#else
#define KILN_SM90A_ASM(text)
#endif
__device__ __forceinline__ void wg_fence() { KILN_SM90A_ASM("wgmma.fence.sync.aligned;\n"); }
__device__ __forceinline__ void wg_commit() { KILN_SM90A_ASM("wgmma.commit_group.sync.aligned;\n"); }
__device__ __forceinline__ void wg_wait_all() { KILN_SM90A_ASM("wgmma.wait_group.sync.aligned 0;\n"); }
// cp.async writes go through the generic proxy, wgmma reads through the async one.
__device__ __forceinline__ void fence_proxy_async() { KILN_SM90A_ASM("fence.proxy.async.shared::cta;\n"); }
#undef KILN_SM90A_ASM
// d (64 x N int32 of the warpgroup; this thread's N / 2, the m16n8 C
// fragment layout over N / 8 column blocks, rows 16 * (warp % 4) + lane / 4
// (+ 8)) = (accumulate ? d : 0) + A (64 rows x 32 bytes) * B (N rows x 32 bytes)^T.
#define KILN_ACC4(i) "+r"(d[i][0]), "+r"(d[i][1]), "+r"(d[i][2]), "+r"(d[i][3])
__device__ __forceinline__ void wgmma_s8(int (&d)[8][4], uint64_t da, uint64_t db, bool accumulate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 "
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p;\n}\n"
      : KILN_ACC4(0), KILN_ACC4(1), KILN_ACC4(2), KILN_ACC4(3), KILN_ACC4(4), KILN_ACC4(5), KILN_ACC4(6), KILN_ACC4(7)
      : "l"(da), "l"(db), "r"(int(accumulate)));
#else
  __trap();
#endif
}
__device__ __forceinline__ void wgmma_s8(int (&d)[16][4], uint64_t da, uint64_t db, bool accumulate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p;\n}\n"
      : KILN_ACC4(0), KILN_ACC4(1), KILN_ACC4(2), KILN_ACC4(3), KILN_ACC4(4), KILN_ACC4(5), KILN_ACC4(6), KILN_ACC4(7),
        KILN_ACC4(8), KILN_ACC4(9), KILN_ACC4(10), KILN_ACC4(11), KILN_ACC4(12), KILN_ACC4(13), KILN_ACC4(14),
        KILN_ACC4(15)
      : "l"(da), "l"(db), "r"(int(accumulate)));
#else
  __trap();
#endif
}
#undef KILN_ACC4
// Keeps the compiler from moving accumulator reads across wgmma.wait_group.
template <int NT> __device__ __forceinline__ void wg_pin(int (&d)[NT][4]) {
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(d[nt][e])::"memory");
}

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
  } else if (yk == kYHalf) {
    *reinterpret_cast<__half2*>(orow + 2 * col) = __floats2half2_rn(v0, v1);
  } else {
    *reinterpret_cast<float2*>(orow + 4 * col) = make_float2(v0, v1);
  }
}

// One m16 fragment's rows (r0 + g and r0 + g + 8) through finish_pair.
template <class V, int NT>
__device__ __forceinline__ void finish_rows(const MmaArgs& a, int (&acc)[NT][4], const float* m_s, const float* b_s,
                                            const int8_t* z_s, unsigned char* out_s, int orow_bytes, int r0,
                                            int g, int t4) {
  const int zrow_bytes = z_row_bytes(V::kZ >= 0 ? V::kZ : a.z_kind, NT * 8);
  const int8_t* zrow[2];
  int row[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    row[h] = r0 + g + h * 8;
    zrow[h] = z_s + row[h] * zrow_bytes;
  }
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
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
// Wg (sm_90a): the two warpgroups multiply with wgmma straight from shared
// memory, rows 64 * WM * warpgroup + 64 * mi + 16 * (warp % 4) of the
// warp's fragment mi, instead of mma.sync on ldmatrix fragments, rows
// 16 * WM * warp + 16 * mi.
template <int WM, bool Wg> __device__ __forceinline__ int warp_row(int warp, int mi) {
  return Wg ? (warp >> 2) * 64 * WM + mi * 64 + (warp & 3) * 16 : warp * 16 * WM + mi * 16;
}
// TN 128 (wgmma only): each staged X chunk feeds twice the output channels.
template <class V, int WM, bool Wg, int TN>
__global__ void __launch_bounds__(kThreads, WM * TN == 64 ? 3 : 2) qconv_mma(const __grid_constant__ MmaArgs a) {
  static_assert(TN == 64 || (Wg && TN == 128), "mma.sync fragments cover 64 output channels");
  constexpr int kTileM = 128 * WM, kWarpM = 16 * WM, kTileN = TN;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = smem_raw;
  if (Wg) smem += (kWgAlign - static_cast<unsigned>(__cvta_generic_to_shared(smem_raw)) % kWgAlign) % kWgAlign;
  const int rowb = Wg ? a.red : a.red + 16;                        // bytes per resident weight row (Wg: chunked)
  const int orow_bytes = out_row_bytes(a.y_kind, TN);
  const int zk = V::kZ >= 0 ? V::kZ : a.z_kind, zrow_bytes = z_row_bytes(zk, TN), zesize = zk == kZHalf ? 2 : 1;
  // Weights: resident [kTileN][rowb] (Wg: [chunks][kTileN][kChunk] swizzled
  // like X), or streamed [stages][kTileN][kChunk] swizzled like X.
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
    int8_t* dst = Wg ? w_s + (col / kChunk) * kTileN * kChunk + row * kChunk + x_unit(row, (col % kChunk) / 16)
                     : w_s + row * rowb + col;
    cp_async16(dst, a.w + int64_t(n0 + row) * a.red + col, true);
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
        if (a.z_slots) {  // TN int8 or fp16 residuals per row: TN / 16 or TN / 8 16-byte parts
          const int m0 = (tm0 + i_lt * a.groups_m) * kTileM;
#pragma unroll
          for (int v = 0; v < kRowsPerThread; ++v) {
            const int row = (tid >> 2) + v * (kThreads / 4);
            const bool live = m0 + row < a.pixels;
            const unsigned char* zrow =
                static_cast<const unsigned char*>(a.z) + (live ? (int64_t(m0 + row) * a.k + n0) * zesize : 0);
            int8_t* zdst = z_s + (i_zslot * kTileM + row) * zrow_bytes;
            for (int zp = part; zp < TN / 16 * zesize; zp += 4) cp_async16(zdst + zp * 16, zrow + zp * 16, live);
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
      // The chunk's TN x 64 weight bytes: TN / 64 16-byte parts per thread.
#pragma unroll
      for (int wr = tid >> 2; a.stream && wr < TN; wr += kThreads / 4)
        cp_async16(w_s + i_stage * kTileN * kChunk + wr * kChunk + x_unit(wr, part),
                   a.w + int64_t(n0 + wr) * a.red + i_kc * kChunk + part * 16, true);
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

  int acc[WM][TN / 8][4];
#pragma unroll
  for (int mi = 0; mi < WM; ++mi)
#pragma unroll
    for (int nt = 0; nt < TN / 8; ++nt)
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

  const int esize = y_size(V::kY >= 0 ? V::kY : a.y_kind);
  const int vec_shift = (TN == 128) + (esize == 1 ? 2 : esize == 2 ? 3 : 4);  // log2 of the 16-byte vectors per row
  int lt = 0, kc = 0, stage = 0, zslot = 0;
  for (int j = 0; j < total; ++j) {
    if (a.stages == 3) cp_async_wait<1>();
    else cp_async_wait<2>();
    if (Wg) fence_proxy_async();
    __syncthreads();  // chunk j is in; every warp is done with chunk j - 1's stage
    if constexpr (Wg) {
      // The warpgroup's rows of the stage and the chunk's weights; the
      // first chunk of a tile overwrites the sums. The next chunk's copies
      // are issued while the multiplies run.
      const int8_t* xa = x_s + stage * kTileM * kRowA + (warp >> 2) * 64 * WM * kRowA;
      const int8_t* wb = w_s + (a.stream ? stage : kc) * kTileN * kChunk;
      wg_fence();
#pragma unroll
      for (int ks = 0; ks < kChunk / 32; ++ks)
#pragma unroll
        for (int mi = 0; mi < WM; ++mi)
          wgmma_s8(acc[mi], wg_desc(xa + mi * 64 * kRowA + ks * 32), wg_desc(wb + ks * 32), kc > 0 || ks > 0);
      wg_commit();
      issue();
      wg_wait_all();
#pragma unroll
      for (int mi = 0; mi < WM; ++mi) wg_pin(acc[mi]);
    } else {
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
                     warp_row<WM, Wg>(warp, mi), g, t4);
    ++lt;
    if (a.z_slots) zslot = zslot + 1 == a.z_slots ? 0 : zslot + 1;
#pragma unroll
    for (int mi = 0; mi < WM && !Wg; ++mi)
#pragma unroll
      for (int nt = 0; nt < TN / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mi][nt][e] = 0;
    __syncwarp();
    for (int v = lane; v < (kWarpM << vec_shift); v += 32) {
      const int i = v >> vec_shift, row = warp_row<WM, Wg>(warp, i >> 4) + (i & 15), part = v & ((1 << vec_shift) - 1);
      if (m0 + row >= a.pixels) continue;
      const uint4 u = *reinterpret_cast<const uint4*>(out_s + row * orow_bytes + part * 16);
      *reinterpret_cast<uint4*>(static_cast<unsigned char*>(a.y) + ((m0 + row) * a.k + n0) * esize + part * 16) = u;
    }
    __syncwarp();  // the staging rows are rewritten by this warp only, at its next tile
  }
  cp_async_wait<0>();
}

using KernelFn = void (*)(MmaArgs);

template <int WM, bool Wg, int TN = 64> KernelFn pick_variant(const MmaArgs& a) {
  const bool relu = a.act.kind == ir::FusedActivation::kRelu;
  if (!relu && a.act.kind != ir::FusedActivation::kNone) return qconv_mma<General, WM, Wg, TN>;
  if (a.y_kind == kYInt8 && a.folded) {
    if (a.z_kind == kZNone)
      return relu ? qconv_mma<Variant<kZNone, kYInt8, 1>, WM, Wg, TN>
                  : qconv_mma<Variant<kZNone, kYInt8, 0>, WM, Wg, TN>;
    if (a.z_kind == kZInt8)
      return relu ? qconv_mma<Variant<kZInt8, kYInt8, 1>, WM, Wg, TN>
                  : qconv_mma<Variant<kZInt8, kYInt8, 0>, WM, Wg, TN>;
  }
  return relu ? qconv_mma<Variant<-1, -1, 1>, WM, Wg, TN> : qconv_mma<Variant<-1, -1, 0>, WM, Wg, TN>;
}

}  // namespace kiln::cuda::qconv::mma
