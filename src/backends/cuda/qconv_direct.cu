// The own QConv kernels (see qconv.h): one thread per output element, output
// channels on the fastest thread axis so a warp shares one input window
// (broadcast loads) and reads neighbouring weights (coalesced, since the
// weights are stored with K innermost). qconv_dp4a multiplies four int8
// channels per instruction; qconv_direct takes any layout and group.
//
// The epilogue rounds as the CPU reference does: acc * m[k] and + B[k] are
// separate IEEE operations (__fmul_rn / __fadd_rn are never fused), the
// residual term z_scale * z + v is one FMA (the CPU build contracts it the
// same way: -mfma with GCC's default fp-contract), and v / y_scale is a true
// division; int8 outputs then match the reference up to the fused
// activation's own math (expf and friends).
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>

#include "backends/cuda/common.h"
#include "backends/cuda/epilogue.h"
#include "backends/cuda/qconv.h"
#include "kiln/error.h"

namespace kiln::cuda::qconv {

namespace {

constexpr int kThreads = 256;

// saturate_int8(round_half_even(v / scale)); NaN gives 0.
__device__ __forceinline__ int8_t requantize(float v, float scale) {
  float t = __fdiv_rn(v, scale);
  if (t != t) return 0;
  t = rintf(t);
  t = fminf(fmaxf(t, -128.f), 127.f);
  return int8_t(int(t));
}

// Bias, residual, activation and the store of one output element.
template <class I>
__device__ __forceinline__ void finish(const DirectArgs& a, int32_t acc, I k, I zoff, I yoff) {
  float v = __fadd_rn(__fmul_rn(__int2float_rn(acc), a.m[k]), a.bias[k]);
  switch (a.z_kind) {
    case kZInt8: v = __fmaf_rn(a.z_scale, float(static_cast<const int8_t*>(a.z)[zoff]), v); break;
    case kZHalf: v = __fadd_rn(v, __half2float(static_cast<const __half*>(a.z)[zoff])); break;
    case kZFloat: v = __fadd_rn(v, static_cast<const float*>(a.z)[zoff]); break;
    default: break;
  }
  v = apply_activation(a.act, v);
  switch (a.y_kind) {
    case kYInt8: static_cast<int8_t*>(a.y)[yoff] = requantize(v, a.y_scale); break;
    case kYHalf: static_cast<__half*>(a.y)[yoff] = __float2half_rn(v); break;
    default: static_cast<float*>(a.y)[yoff] = v; break;
  }
}

// Output index i (ordered n, p, q, k with k fastest) as coordinates.
template <class I> struct Where {
  I n, k, p, q;
};
template <class I> __device__ __forceinline__ Where<I> where(const DirectArgs& a, I i) {
  Where<I> o;
  o.k = i % I(a.k);
  i /= I(a.k);
  o.q = i % I(a.q);
  i /= I(a.q);
  o.p = i % I(a.p);
  o.n = i / I(a.p);
  return o;
}

template <class I> __device__ __forceinline__ void offsets(const DirectArgs& a, const Where<I>& o, I& zoff, I& yoff) {
  yoff = o.n * I(a.ys[0]) + o.k * I(a.ys[1]) + o.p * I(a.ys[2]) + o.q * I(a.ys[3]);
  zoff = o.n * I(a.zs[0]) + o.k * I(a.zs[1]) + o.p * I(a.zs[2]) + o.q * I(a.zs[3]);
}

// Any layout, any group: int8 products summed in int32 (exact).
template <class I> __global__ void __launch_bounds__(kThreads) qconv_direct_kernel(const __grid_constant__ DirectArgs a) {
  const int8_t* __restrict__ x = a.x;
  const int8_t* __restrict__ w = static_cast<const int8_t*>(a.w);
  const I stride = I(gridDim.x) * kThreads;
  for (I i = I(blockIdx.x) * kThreads + threadIdx.x; i < I(a.total); i += stride) {
    const Where<I> o = where(a, i);
    const I g = o.k / I(a.kg);
    const I xbase = o.n * I(a.xs[0]) + g * I(a.cg) * I(a.xs[1]);
    const I wbase = o.k * I(a.wsk);
    int32_t acc = 0;
    for (int r = 0; r < a.r; ++r) {
      const int64_t ih = int64_t(o.p) * a.stride_h - a.pad_h + int64_t(r) * a.dil_h;
      if (ih < 0 || ih >= a.h) continue;
      for (int s = 0; s < a.s; ++s) {
        const int64_t iw = int64_t(o.q) * a.stride_w - a.pad_w + int64_t(s) * a.dil_w;
        if (iw < 0 || iw >= a.w_) continue;
        const int8_t* xp = x + (xbase + I(ih) * I(a.xs[2]) + I(iw) * I(a.xs[3]));
        const int8_t* wp = w + (wbase + I(r * a.s + s) * I(a.cg) * I(a.wsc));
        for (int c = 0; c < a.cg; ++c) acc += int32_t(xp[I(c) * I(a.xs[1])]) * int32_t(wp[I(c) * I(a.wsc)]);
      }
    }
    I zoff, yoff;
    offsets(a, o, zoff, yoff);
    finish(a, acc, o.k, zoff, yoff);
  }
}

// Channels contiguous in X (stride 1) and C/group % 4 == 0: four channels
// per __dp4a. kWords: every pixel row starts on a 4-byte boundary, so X is
// read as 32-bit words; otherwise (X a view at an odd offset) byte by byte.
__device__ __forceinline__ int load4(const int8_t* p) {
  return int(uint32_t(uint8_t(p[0])) | uint32_t(uint8_t(p[1])) << 8 | uint32_t(uint8_t(p[2])) << 16 |
             uint32_t(uint8_t(p[3])) << 24);
}

template <class I, bool kWords>
__global__ void __launch_bounds__(kThreads) qconv_dp4a_kernel(const __grid_constant__ DirectArgs a) {
  const int8_t* __restrict__ x = a.x;
  const int* __restrict__ w = static_cast<const int*>(a.w);
  const int c4 = a.cg / 4;
  const I stride = I(gridDim.x) * kThreads;
  for (I i = I(blockIdx.x) * kThreads + threadIdx.x; i < I(a.total); i += stride) {
    const Where<I> o = where(a, i);
    const I g = o.k / I(a.kg);
    const I xbase = o.n * I(a.xs[0]) + g * I(a.cg);
    int32_t acc = 0;
    for (int r = 0; r < a.r; ++r) {
      const int64_t ih = int64_t(o.p) * a.stride_h - a.pad_h + int64_t(r) * a.dil_h;
      if (ih < 0 || ih >= a.h) continue;
      for (int s = 0; s < a.s; ++s) {
        const int64_t iw = int64_t(o.q) * a.stride_w - a.pad_w + int64_t(s) * a.dil_w;
        if (iw < 0 || iw >= a.w_) continue;
        const int8_t* xp = x + (xbase + I(ih) * I(a.xs[2]) + I(iw) * I(a.xs[3]));
        const int* wp = w + (I(r * a.s + s) * I(c4) * I(a.k) + o.k);
        if constexpr (kWords) {
          const int* xw = reinterpret_cast<const int*>(xp);
#pragma unroll 4
          for (int c = 0; c < c4; ++c) acc = __dp4a(__ldg(xw + c), __ldg(wp + I(c) * I(a.k)), acc);
        } else {
          for (int c = 0; c < c4; ++c) acc = __dp4a(load4(xp + 4 * c), __ldg(wp + I(c) * I(a.k)), acc);
        }
      }
    }
    I zoff, yoff;
    offsets(a, o, zoff, yoff);
    finish(a, acc, o.k, zoff, yoff);
  }
}

template <class T> __global__ void __launch_bounds__(kThreads) crop_kernel(const __grid_constant__ CropArgs a) {
  const T* __restrict__ src = static_cast<const T*>(a.src);
  T* dst = static_cast<T*>(a.dst);
  const int64_t total = a.n * a.p * a.q * a.k;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kThreads) {
    const int64_t k = i % a.k, row = i / a.k;
    const int64_t q = row % a.q, p = row / a.q % a.p, n = row / (a.q * a.p);
    dst[n * a.ys[0] + k * a.ys[1] + p * a.ys[2] + q * a.ys[3]] = src[row * a.kp + k];
  }
}

bool aligned4(const void* p) { return reinterpret_cast<uintptr_t>(p) % 4 == 0; }

void check_pointers(const DirectArgs& a, const char* what) {
  if (!a.x || !a.w || !a.m || !a.bias || !a.y || (a.z_kind != kZNone && !a.z))
    throw_internal(std::string(what) + ": a tensor pointer is missing");
}

}  // namespace

void launch_direct(const DirectArgs& a, cudaStream_t s) {
  if (a.total == 0) return;
  check_pointers(a, "qconv_direct");
  const unsigned grid = grid_for(a.total, kThreads);
  if (a.small) qconv_direct_kernel<int32_t><<<grid, kThreads, 0, s>>>(a);
  else qconv_direct_kernel<int64_t><<<grid, kThreads, 0, s>>>(a);
  KILN_CUDA_LAUNCHED("qconv_direct_kernel");
}

void launch_dp4a(const DirectArgs& a, cudaStream_t s) {
  if (a.total == 0) return;
  check_pointers(a, "qconv_dp4a");
  if (a.xs[1] != 1 || a.cg % 4 != 0 || !aligned4(a.w))
    throw_internal("qconv_dp4a: X is not channels-last with C/group a multiple of 4");
  // The factory checked the strides; the pointer is checked here, since a
  // view into an arena may start anywhere.
  const bool words = aligned4(a.x) && (a.n == 1 || a.xs[0] % 4 == 0) && (a.h == 1 || a.xs[2] % 4 == 0) &&
                     (a.w_ == 1 || a.xs[3] % 4 == 0);
  const unsigned grid = grid_for(a.total, kThreads);
  if (words) {
    if (a.small) qconv_dp4a_kernel<int32_t, true><<<grid, kThreads, 0, s>>>(a);
    else qconv_dp4a_kernel<int64_t, true><<<grid, kThreads, 0, s>>>(a);
  } else {
    if (a.small) qconv_dp4a_kernel<int32_t, false><<<grid, kThreads, 0, s>>>(a);
    else qconv_dp4a_kernel<int64_t, false><<<grid, kThreads, 0, s>>>(a);
  }
  KILN_CUDA_LAUNCHED("qconv_dp4a_kernel");
}

void launch_crop(const CropArgs& a, cudaStream_t s) {
  const int64_t total = a.n * a.p * a.q * a.k;
  if (total == 0) return;
  if (!a.src || !a.dst || a.k > a.kp || (a.esize != 1 && a.esize != 2 && a.esize != 4))
    throw_internal("qconv crop: bad arguments");
  const unsigned grid = grid_for(total, kThreads);
  if (a.esize == 1) crop_kernel<uint8_t><<<grid, kThreads, 0, s>>>(a);
  else if (a.esize == 2) crop_kernel<uint16_t><<<grid, kThreads, 0, s>>>(a);
  else crop_kernel<uint32_t><<<grid, kThreads, 0, s>>>(a);
  KILN_CUDA_LAUNCHED("qconv crop_kernel");
}

}  // namespace kiln::cuda::qconv
