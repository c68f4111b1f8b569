// Pieces the reduction kernels (reduce.cu, softmax.cu) share: fp32/fp16
// element access, the split of a tensor's axes into kept and reduced groups
// with their strides in each operand's layout, and warp/block combines.
//
// A reduction's output elements enumerate the kept axes (innermost fastest);
// each reads the reduced axes of one input slab. Axes are merged when their
// strides allow so the per-element index math stays short.
#pragma once

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "backends/cuda/kernel.h"

namespace kiln::cuda::red {

__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void st(float* p, float v) { *p = v; }
__device__ __forceinline__ void st(__half* p, float v) { *p = __float2half_rn(v); }

// NaN-propagating max/min, as the CPU reference combines.
__device__ __forceinline__ float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }
__device__ __forceinline__ float nan_min(float a, float b) { return (a < b || a != a) ? a : b; }

// Arg-extreme order: NaN beats numbers; equal values pick the lower index
// (or the higher with select_last_index). Any merge order gives the result
// of the sequential scan.
__device__ __forceinline__ bool arg_better(float v, int64_t i, float b, int64_t bi, bool is_max, bool last) {
  const bool vn = v != v, bn = b != b;
  if (vn || bn) {
    if (vn != bn) return vn;
    return last ? i > bi : i < bi;
  }
  if (v == b) return last ? i > bi : i < bi;
  return is_max ? v > b : v < b;
}

// Kept axes (output order) with input and output strides; reduced axes with
// input strides, sorted by decreasing stride (the last is the inner loop).
struct Geometry {
  int nk = 0, nr = 0;
  int64_t kdim[kMaxRank] = {}, kx[kMaxRank] = {}, ky[kMaxRank] = {};
  int64_t rdim[kMaxRank] = {}, rx[kMaxRank] = {};
  int64_t outputs = 1;  // product of kept dims
  int64_t R = 1;        // product of reduced dims
  int64_t r_inner = 1;  // extent of the last reduced axis (1 if none)
};

// `reduced[a]` marks input axis a; `y_axis[a]` is the output axis of kept
// axis a (-1 for reduced). x and y are the operands' descriptors.
inline Geometry make_geometry(const TensorDesc& x, const TensorDesc& y, const std::vector<bool>& reduced,
                              const std::vector<int>& y_axis) {
  Geometry g;
  for (int a = 0; a < x.rank; ++a) {
    if (reduced[size_t(a)]) {
      g.R *= x.dims[a];
      if (x.dims[a] == 1) continue;
      g.rdim[g.nr] = x.dims[a];
      g.rx[g.nr] = x.strides[a];
      ++g.nr;
    } else {
      g.outputs *= x.dims[a];
      if (x.dims[a] == 1) continue;
      const int64_t ys = y.strides[y_axis[size_t(a)]];
      if (g.nk > 0 && g.kx[g.nk - 1] == x.strides[a] * x.dims[a] && g.ky[g.nk - 1] == ys * x.dims[a]) {
        g.kdim[g.nk - 1] *= x.dims[a];  // contiguous in both operands: one axis
        g.kx[g.nk - 1] = x.strides[a];
        g.ky[g.nk - 1] = ys;
        continue;
      }
      g.kdim[g.nk] = x.dims[a];
      g.kx[g.nk] = x.strides[a];
      g.ky[g.nk] = ys;
      ++g.nk;
    }
  }
  // Reduced axes: order by stride (outer first), then merge neighbours that tile memory.
  for (int i = 0; i < g.nr; ++i)
    for (int j = i + 1; j < g.nr; ++j)
      if (g.rx[j] > g.rx[i]) {
        std::swap(g.rx[i], g.rx[j]);
        std::swap(g.rdim[i], g.rdim[j]);
      }
  int m = 0;
  for (int i = 0; i < g.nr; ++i) {
    if (m > 0 && g.rx[m - 1] == g.rx[i] * g.rdim[i]) {
      g.rdim[m - 1] *= g.rdim[i];
      g.rx[m - 1] = g.rx[i];
      continue;
    }
    g.rdim[m] = g.rdim[i];
    g.rx[m] = g.rx[i];
    ++m;
  }
  g.nr = m;
  g.r_inner = g.nr ? g.rdim[g.nr - 1] : 1;
  return g;
}

// Input and output offsets of output element o.
__device__ __forceinline__ void kept_offsets(const Geometry& g, int64_t o, int64_t& xo, int64_t& yo) {
  xo = 0;
  yo = 0;
  for (int j = g.nk - 1; j >= 0; --j) {
    const int64_t q = o % g.kdim[j];
    o /= g.kdim[j];
    xo += q * g.kx[j];
    yo += q * g.ky[j];
  }
}

// Input offset of index q over all reduced axes but the last.
__device__ __forceinline__ int64_t outer_offset(const Geometry& g, int64_t q) {
  int64_t off = 0;
  for (int j = g.nr - 2; j >= 0; --j) {
    off += (q % g.rdim[j]) * g.rx[j];
    q /= g.rdim[j];
  }
  return off;
}

__device__ __forceinline__ int64_t inner_stride(const Geometry& g) { return g.nr ? g.rx[g.nr - 1] : 0; }

// Combines across a warp; every lane gets the result.
template <typename F> __device__ __forceinline__ float warp_all(float v, F f) {
  for (int o = 16; o > 0; o >>= 1) v = f(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Combines across a block of whole warps (at most 1024 threads); every
// thread gets the result. `sh` holds 32 floats; the block must call it uniformly.
template <typename F> __device__ __forceinline__ float block_all(float v, F f, float* sh) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_all(v, f);
  __syncthreads();  // sh may still be read by a previous call
  if (lane == 0) sh[w] = v;
  __syncthreads();
  float r = sh[0];
  for (int i = 1; i < nw; ++i) r = f(r, sh[i]);
  return r;
}

// Arg-extreme combines; i < 0 marks "no candidate", which loses to any.
__device__ __forceinline__ void arg_merge(float& v, int64_t& i, float ov, int64_t oi, bool is_max, bool last) {
  if (oi >= 0 && (i < 0 || arg_better(ov, oi, v, i, is_max, last))) {
    v = ov;
    i = oi;
  }
}

// Across a warp: every lane gets the winner.
__device__ __forceinline__ void warp_arg(float& v, int64_t& i, bool is_max, bool last) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int64_t oi = int64_t(__shfl_xor_sync(0xffffffffu, (long long)i, o));
    arg_merge(v, i, ov, oi, is_max, last);
  }
}

// Across a block of whole warps; `sv`/`si` hold 32 entries each.
__device__ __forceinline__ void block_arg(float& v, int64_t& i, bool is_max, bool last, float* sv, long long* si) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  warp_arg(v, i, is_max, last);
  __syncthreads();
  if (lane == 0) {
    sv[w] = v;
    si[w] = i;
  }
  __syncthreads();
  v = sv[0];
  i = si[0];
  for (int k = 1; k < nw; ++k) arg_merge(v, i, sv[k], int64_t(si[k]), is_max, last);
}

// Grid-stride helpers in 64-bit.
__device__ __forceinline__ int64_t global_thread() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_threads() { return int64_t(gridDim.x) * blockDim.x; }

}  // namespace kiln::cuda::red
