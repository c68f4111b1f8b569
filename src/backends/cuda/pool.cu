// CUDA pooling: MaxPool, AveragePool, LpPool (1-3 spatial axes, viewed as
// 3-D like the CPU reference in src/backends/cpu/pool.cpp) and the Global
// forms. Window attributes arrive explicit from shape inference. Semantics
// follow the CPU kernel: padding never wins a max (a window with no valid tap
// gives -inf), averages divide by the valid taps or, with count_include_pad,
// by the taps inside [-pad_begin, in + pad_end). Accumulation is fp32.
//
// MaxPool also runs on int8 (output int8, the input's scale: max commutes
// with the monotone quantization); values are exact in float.
//
// Tactics, all correct for any layout (every access goes through strides):
//   pool_nchw        threads over output pixels, W fastest (linear layout)
//   pool_nhwc        threads over channels, C fastest (channels-last)
//   pool_nhwc_vec    channels-last, C a multiple of 16 bytes: 16-byte loads
//   global_warp      one warp per (n, c) plane
//   global_block     one block per (n, c) plane: large planes, few channels
//   global_channels  32 channels x 16 spatial slices per block (channels-last)
//   global_channels_vec  channels-last X and Y, C a multiple of 16 bytes: one
//                    16-byte channel group of one image per thread
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backends/cuda/common.h"
#include "backends/cuda/kernel.h"

namespace kiln::cuda {

namespace {

enum class Kind : int { kMax, kAvg, kLp };

__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void st(float* p, float v) { *p = v; }
__device__ __forceinline__ void st(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ float ld(const int8_t* p) { return float(*p); }
// A max of int8 taps is an int8 value; a window without taps (-inf) saturates.
__device__ __forceinline__ void st(int8_t* p, float v) { *p = int8_t(int(fminf(fmaxf(v, -128.f), 127.f))); }

__device__ __forceinline__ int64_t gthread() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t gthreads() { return int64_t(gridDim.x) * blockDim.x; }

// |v|^p as the CPU taps it.
__device__ __forceinline__ float lp_tap(float v, int p) {
  const float a = fabsf(v);
  return p == 1 ? a : p == 2 ? a * a : powf(a, float(p));
}
__device__ __forceinline__ float lp_root(float s, int p) { return p == 1 ? s : p == 2 ? sqrtf(s) : powf(s, 1.f / float(p)); }

// ---- windowed pools ----

// Per output coordinate of one axis: first tap position, the taps [lo, hi)
// that land inside the input, and the taps inside the padded extent.
// Built on the host once, like the CPU kernel's tables, so the device does
// no division per window.
using AxisTap = int4;  // {start, lo, hi, padded}

std::vector<AxisTap> axis_taps(int64_t in, int64_t out, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe) {
  std::vector<AxisTap> t;
  for (int64_t o = 0; o < out; ++o) {
    const int64_t st0 = o * s - pb;
    int64_t lo = k, hi = 0, cnt = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t q = st0 + j * d;
      if (q >= 0 && q < in) {
        lo = std::min(lo, j);
        hi = j + 1;
      }
      if (q >= -pb && q < in + pe) ++cnt;
    }
    if (hi <= lo) lo = hi = 0;
    t.push_back(make_int4(int(st0), int(lo), int(hi), int(cnt)));
  }
  return t;
}

struct WinParams {
  int64_t N = 1, C = 1;
  int64_t od[3] = {1, 1, 1}, d[3] = {1, 1, 1};
  int64_t xn = 0, xc = 0, xs[3] = {0, 0, 0};  // input strides (missing spatial axes: 0)
  int64_t yn = 0, yc = 0, ys[3] = {0, 0, 0};
  int64_t total = 0;  // output elements
  Kind kind = Kind::kMax;
  bool include_pad = false;
  int p = 2;
  bool narrow = false;  // every element offset fits in 32 bits
  const AxisTap* taps = nullptr;  // od[0] + od[1] + od[2] entries (device)
};

// I: index type, int32 when every offset fits (integer division is the
// main cost of a small window).
template <typename T, bool kChannelsFast, typename I>
__global__ void window_pool(const T* __restrict__ x, T* __restrict__ y, WinParams p) {
  const I C = I(p.C), od0 = I(p.od[0]), od1 = I(p.od[1]), od2 = I(p.od[2]);
  const I d0 = I(p.d[0]), d1 = I(p.d[1]), d2 = I(p.d[2]);
  const I xs0 = I(p.xs[0]), xs1 = I(p.xs[1]), xs2 = I(p.xs[2]);
  for (int64_t i = gthread(); i < p.total; i += gthreads()) {
    I r = I(i), n, c = 0, o0, o1, o2;
    if (kChannelsFast) {
      c = r % C;
      r /= C;
    }
    o2 = r % od2;
    r /= od2;
    o1 = r % od1;
    r /= od1;
    o0 = r % od0;
    r /= od0;
    if (!kChannelsFast) {
      c = r % C;
      r /= C;
    }
    n = r;
    const AxisTap t0 = p.taps[o0], t1 = p.taps[od0 + o1], t2 = p.taps[od0 + od1 + o2];
    const T* xp = x + n * I(p.xn) + c * I(p.xc);
    float acc = p.kind == Kind::kMax ? -INFINITY : 0.f;
    for (I kz = t0.y; kz < t0.z; ++kz) {
      const T* pz = xp + (t0.x + kz * d0) * xs0;
      for (I kh = t1.y; kh < t1.z; ++kh) {
        const T* ph = pz + (t1.x + kh * d1) * xs1;
        for (I kw = t2.y; kw < t2.z; ++kw) {
          const float v = ld(ph + (t2.x + kw * d2) * xs2);
          if (p.kind == Kind::kMax) acc = v > acc ? v : acc;
          else if (p.kind == Kind::kAvg) acc += v;
          else acc += lp_tap(v, p.p);
        }
      }
    }
    if (p.kind == Kind::kAvg) {
      const float cnt = p.include_pad ? float(t0.w) * float(t1.w) * float(t2.w)
                                      : float(t0.z - t0.y) * float(t1.z - t1.y) * float(t2.z - t2.y);
      acc = cnt > 0.f ? acc * (1.f / cnt) : 0.f;
    } else if (p.kind == Kind::kLp) {
      acc = lp_root(acc, p.p);
    }
    st(y + n * I(p.yn) + c * I(p.yc) + o0 * I(p.ys[0]) + o1 * I(p.ys[1]) + o2 * I(p.ys[2]), acc);
  }
}

// Channels-last with C a multiple of 16 bytes: each thread pools one
// 16-byte group of channels (4 floats or 8 halves) with vector loads.
__device__ __forceinline__ void load16(const float* p, float* f) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  f[0] = v.x;
  f[1] = v.y;
  f[2] = v.z;
  f[3] = v.w;
}
__device__ __forceinline__ void load16(const __half* p, float* f) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const float2 t = __half22float2(h[k]);
    f[2 * k] = t.x;
    f[2 * k + 1] = t.y;
  }
}
__device__ __forceinline__ void load16(const int8_t* p, float* f) {
  const int4 u = *reinterpret_cast<const int4*>(p);
  const int8_t* b = reinterpret_cast<const int8_t*>(&u);
#pragma unroll
  for (int k = 0; k < 16; ++k) f[k] = float(b[k]);
}
__device__ __forceinline__ void store16(int8_t* p, const float* f) {
  int4 u;
  int8_t* b = reinterpret_cast<int8_t*>(&u);
#pragma unroll
  for (int k = 0; k < 16; ++k) b[k] = int8_t(int(fminf(fmaxf(f[k], -128.f), 127.f)));
  *reinterpret_cast<int4*>(p) = u;
}
__device__ __forceinline__ void store16(float* p, const float* f) {
  *reinterpret_cast<float4*>(p) = make_float4(f[0], f[1], f[2], f[3]);
}
__device__ __forceinline__ void store16(__half* p, const float* f) {
  uint4 u;
  __half2* h = reinterpret_cast<__half2*>(&u);
#pragma unroll
  for (int k = 0; k < 4; ++k) h[k] = __floats2half2_rn(f[2 * k], f[2 * k + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}

template <typename T> __global__ void window_pool_vec(const T* __restrict__ x, T* __restrict__ y, WinParams p) {
  constexpr int V = 16 / sizeof(T);
  const int groups = int(p.C) / V, od0 = int(p.od[0]), od1 = int(p.od[1]), od2 = int(p.od[2]);
  const int d0 = int(p.d[0]), d1 = int(p.d[1]), d2 = int(p.d[2]);
  const int xs0 = int(p.xs[0]), xs1 = int(p.xs[1]), xs2 = int(p.xs[2]);
  const int64_t total = p.total / V;
  for (int64_t i = gthread(); i < total; i += gthreads()) {
    int r = int(i);
    const int g = r % groups;
    r /= groups;
    const int o2 = r % od2;
    r /= od2;
    const int o1 = r % od1;
    r /= od1;
    const int o0 = r % od0;
    const int n = r / od0;
    const AxisTap t0 = p.taps[o0], t1 = p.taps[od0 + o1], t2 = p.taps[od0 + od1 + o2];
    const T* xp = x + n * int(p.xn) + g * V;
    float acc[V], v[V];
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = p.kind == Kind::kMax ? -INFINITY : 0.f;
    for (int kz = t0.y; kz < t0.z; ++kz) {
      const T* pz = xp + (t0.x + kz * d0) * xs0;
      for (int kh = t1.y; kh < t1.z; ++kh) {
        const T* ph = pz + (t1.x + kh * d1) * xs1;
        for (int kw = t2.y; kw < t2.z; ++kw) {
          load16(ph + (t2.x + kw * d2) * xs2, v);
#pragma unroll
          for (int k = 0; k < V; ++k) {
            if (p.kind == Kind::kMax) acc[k] = v[k] > acc[k] ? v[k] : acc[k];
            else if (p.kind == Kind::kAvg) acc[k] += v[k];
            else acc[k] += lp_tap(v[k], p.p);
          }
        }
      }
    }
    const float cnt = p.include_pad ? float(t0.w) * float(t1.w) * float(t2.w)
                                    : float(t0.z - t0.y) * float(t1.z - t1.y) * float(t2.z - t2.y);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      if (p.kind == Kind::kAvg) acc[k] = cnt > 0.f ? acc[k] * (1.f / cnt) : 0.f;
      else if (p.kind == Kind::kLp) acc[k] = lp_root(acc[k], p.p);
    }
    store16(y + n * int(p.yn) + g * V + o0 * int(p.ys[0]) + o1 * int(p.ys[1]) + o2 * int(p.ys[2]), acc);
  }
}

class WindowKernel : public Kernel {
 public:
  // mode: 0 pixels fastest, 1 channels fastest, 2 channel groups of 16 bytes
  WindowKernel(const WinParams& p, const std::vector<AxisTap>& taps, DataType dt, int mode)
      : p_(p), dt_(dt), cf_(mode != 0), vec_(mode == 2) {
    taps_ = upload(taps.data(), taps.size() * sizeof(AxisTap));
    p_.taps = static_cast<const AxisTap*>(taps_.get());
  }
  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (p_.total == 0) return;
    if (dt_ == DataType::kFloat16) go(static_cast<const __half*>(in[0]), static_cast<__half*>(out[0]), l.stream);
    else if (dt_ == DataType::kInt8) go(static_cast<const int8_t*>(in[0]), static_cast<int8_t*>(out[0]), l.stream);
    else go(static_cast<const float*>(in[0]), static_cast<float*>(out[0]), l.stream);
  }

 private:
  template <typename T> void go(const T* x, T* y, cudaStream_t s) const {
    const unsigned g = grid_for(p_.total);
    // Vector loads need 16-byte aligned tensors; otherwise the scalar form.
    if (vec_ && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0) {
      window_pool_vec<T><<<grid_for(p_.total / (16 / sizeof(T))), 256, 0, s>>>(x, y, p_);
    } else if (p_.narrow) {
      if (cf_) window_pool<T, true, int32_t><<<g, 256, 0, s>>>(x, y, p_);
      else window_pool<T, false, int32_t><<<g, 256, 0, s>>>(x, y, p_);
    } else {
      if (cf_) window_pool<T, true, int64_t><<<g, 256, 0, s>>>(x, y, p_);
      else window_pool<T, false, int64_t><<<g, 256, 0, s>>>(x, y, p_);
    }
    KILN_CUDA_LAUNCHED("pooling kernel");
  }
  WinParams p_;
  DataType dt_;
  bool cf_, vec_;
  DevicePtr taps_;
};

bool float_dtype(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

// Input/output checks every pool shares; fills the descriptors.
bool pool_operands(const ir::Node& n, std::string* why, TensorDesc& xd, TensorDesc& yd, bool int8_ok = false) {
  const ir::Value* x = n.in(0);
  const ir::Value* y = n.outputs.empty() ? nullptr : n.outputs[0];
  if (!x || !y) {
    if (why) *why = "missing input or output";
    return false;
  }
  if (!(float_dtype(x->dtype) || (int8_ok && x->dtype == DataType::kInt8)) || y->dtype != x->dtype) {
    if (why)
      *why = std::string("input dtype ") + dtype_name(x->dtype) + " (CUDA pooling takes fp32/fp16" +
             (int8_ok ? ", MaxPool int8 too)" : ")");
    return false;
  }
  if (x->dims.size() < 3 || x->dims.size() > 5 || y->dims.size() != x->dims.size()) {
    if (why) *why = "input rank " + std::to_string(x->dims.size()) + " (CUDA pooling takes 1-3 spatial axes)";
    return false;
  }
  xd = desc_of(n, *x);
  yd = desc_of(n, *y);
  return true;
}

std::vector<Tactic> window_tactics(const ir::Node& n, std::string* why, Kind kind) {
  if (kind == Kind::kMax && n.outputs.size() > 1 && n.outputs[1]) {
    if (why) *why = "the Indices output of MaxPool has no CUDA kernel";
    return {};
  }
  TensorDesc xd, yd;
  if (!pool_operands(n, why, xd, yd, kind == Kind::kMax)) return {};
  const size_t r = size_t(xd.rank) - 2, off = 3 - r;
  const std::vector<int64_t> k = n.ints("kernel_shape"), s = n.ints("strides"), d = n.ints("dilations"),
                             pads = n.ints("pads");
  if (k.size() != r || s.size() != r || d.size() != r || pads.size() != 2 * r)
    throw_internal(n.label() + ": window attributes were not resolved by shape inference");
  WinParams p;
  p.N = xd.dims[0];
  p.C = xd.dims[1];
  p.xn = xd.strides[0];
  p.xc = xd.strides[1];
  p.yn = yd.strides[0];
  p.yc = yd.strides[1];
  int64_t id[3] = {1, 1, 1}, kk[3] = {1, 1, 1}, ss[3] = {1, 1, 1}, pb[3] = {0, 0, 0}, pe[3] = {0, 0, 0};
  for (size_t i = 0; i < r; ++i) {
    const size_t a = off + i;
    id[a] = xd.dims[2 + i];
    p.od[a] = yd.dims[2 + i];
    p.xs[a] = xd.strides[2 + i];
    p.ys[a] = yd.strides[2 + i];
    kk[a] = k[i];
    ss[a] = s[i];
    p.d[a] = d[i];
    pb[a] = pads[i];
    pe[a] = pads[i + r];
  }
  constexpr int64_t kNarrow = int64_t(1) << 31;
  std::vector<AxisTap> taps;
  for (int a = 0; a < 3; ++a) {
    // Tables hold 32-bit positions and counts.
    if (id[a] + pb[a] + pe[a] >= kNarrow || kk[a] * p.d[a] >= kNarrow) {
      if (why) *why = "window or spatial extent beyond 2^31";
      return {};
    }
    std::vector<AxisTap> t = axis_taps(id[a], p.od[a], kk[a], ss[a], p.d[a], pb[a], pe[a]);
    taps.insert(taps.end(), t.begin(), t.end());
  }
  p.total = p.N * p.C * p.od[0] * p.od[1] * p.od[2];
  p.narrow = p.total < kNarrow && ir::numel_of(n.in(0)->dims) < kNarrow;
  p.kind = kind;
  p.include_pad = n.i("count_include_pad", 0) != 0;
  p.p = int(n.i("p", 2));
  if (kind == Kind::kLp && (p.p < 1 || p.p > 64)) {
    if (why) *why = "LpPool p=" + std::to_string(p.p) + " (CUDA takes 1..64)";
    return {};
  }
  const DataType dt = n.in(0)->dtype;
  std::vector<Tactic> t;
  auto add = [&](const char* name, int mode) {
    t.push_back({name, [p, taps, dt, mode] { return std::make_unique<WindowKernel>(p, taps, dt, mode); }});
  };
  add("pool_nchw", 0);
  add("pool_nhwc", 1);
  // Channels contiguous in both tensors and a whole number of 16-byte groups.
  const int64_t v = int64_t(16 / dtype_size(dt));
  if (xd.rank == 4 && xd.strides[1] == 1 && yd.strides[1] == 1 && p.C % v == 0 && p.narrow) add("pool_nhwc_vec", 2);
  return t;
}

// ---- global pools ----

struct GlobalParams {
  int64_t N = 0, C = 0, S = 0;   // planes N*C of S elements
  int64_t xn = 0, xc = 0, xstep = 0;  // element i of a plane is at n*xn + c*xc + i*xstep
  int64_t yn = 0, yc = 0;
  Kind kind = Kind::kAvg;
  int p = 2;
};

__device__ __forceinline__ float g_init(Kind k) { return k == Kind::kMax ? -INFINITY : 0.f; }
__device__ __forceinline__ float g_tap(const GlobalParams& p, float v) {
  return p.kind == Kind::kLp ? lp_tap(v, p.p) : v;
}
__device__ __forceinline__ float g_comb(Kind k, float a, float b) { return k == Kind::kMax ? (b > a ? b : a) : a + b; }

// The CPU max starts from the first element, so a NaN there survives.
template <typename T> __device__ __forceinline__ float g_finish(const GlobalParams& p, const T* plane, float acc) {
  if (p.S == 0) return 0.f;
  if (p.kind == Kind::kAvg) return acc / float(p.S);
  if (p.kind == Kind::kLp) return lp_root(acc, p.p);
  const float first = ld(plane);
  return first != first ? first : acc;
}

template <typename T> __global__ void global_warp(const T* __restrict__ x, T* __restrict__ y, GlobalParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t planes = p.N * p.C;
  for (int64_t pl = int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5); pl < planes; pl += int64_t(gridDim.x) * 8) {
    const int64_t n = pl / p.C, c = pl % p.C;
    const T* xp = x + n * p.xn + c * p.xc;
    float acc = g_init(p.kind);
#pragma unroll 4
    for (int64_t i = lane; i < p.S; i += 32) acc = g_comb(p.kind, acc, g_tap(p, ld(xp + i * p.xstep)));
    for (int o = 16; o > 0; o >>= 1) acc = g_comb(p.kind, acc, __shfl_xor_sync(0xffffffffu, acc, o));
    if (lane == 0) st(y + n * p.yn + c * p.yc, g_finish(p, xp, acc));
  }
}

template <typename T> __global__ void global_block(const T* __restrict__ x, T* __restrict__ y, GlobalParams p) {
  __shared__ float sh[32];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int64_t planes = p.N * p.C;
  for (int64_t pl = blockIdx.x; pl < planes; pl += gridDim.x) {
    const int64_t n = pl / p.C, c = pl % p.C;
    const T* xp = x + n * p.xn + c * p.xc;
    float acc = g_init(p.kind);
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < p.S; i += blockDim.x) acc = g_comb(p.kind, acc, g_tap(p, ld(xp + i * p.xstep)));
    for (int o = 16; o > 0; o >>= 1) acc = g_comb(p.kind, acc, __shfl_xor_sync(0xffffffffu, acc, o));
    __syncthreads();  // sh of the previous plane is read
    if (lane == 0) sh[w] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int k = 1; k < nw; ++k) acc = g_comb(p.kind, acc, sh[k]);
      st(y + n * p.yn + c * p.yc, g_finish(p, xp, acc));
    }
  }
}

// Block (32, kSlices): x = channel of a 32-channel tile, y = spatial slice;
// the slices meet in shared memory. Reads are 32 consecutive channels wide.
constexpr int kSlices = 16;
template <typename T> __global__ void global_channels(const T* __restrict__ x, T* __restrict__ y, GlobalParams p) {
  __shared__ float sh[kSlices][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = int64_t(blockIdx.x) * 32 + tx;
  for (int64_t n = blockIdx.y; n < p.N; n += gridDim.y) {
    const T* xp = x + n * p.xn + c * p.xc;
    float acc = g_init(p.kind);
    if (c < p.C) {
#pragma unroll 4
      for (int64_t i = ty; i < p.S; i += kSlices) acc = g_comb(p.kind, acc, g_tap(p, ld(xp + i * p.xstep)));
    }
    __syncthreads();
    sh[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && c < p.C) {
      for (int k = 1; k < kSlices; ++k) acc = g_comb(p.kind, acc, sh[k][tx]);
      st(y + n * p.yn + c * p.yc, g_finish(p, xp, acc));
    }
  }
}

// One thread per 16-byte channel group of one image: each step over the
// plane is one vector load, and a warp reads 512 contiguous bytes.
template <typename T> __global__ void global_channels_vec(const T* __restrict__ x, T* __restrict__ y, GlobalParams p) {
  constexpr int V = 16 / sizeof(T);
  const int64_t groups = p.C / V, total = p.N * groups;
  for (int64_t i = gthread(); i < total; i += gthreads()) {
    const int64_t n = i / groups, c = (i - n * groups) * V;
    const T* xp = x + n * p.xn + c;
    float acc[V], f[V];
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = g_init(p.kind);
#pragma unroll 4
    for (int64_t s = 0; s < p.S; ++s) {
      load16(xp + s * p.xstep, f);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] = g_comb(p.kind, acc[k], g_tap(p, f[k]));
    }
#pragma unroll
    for (int k = 0; k < V; ++k) f[k] = g_finish(p, xp + k, acc[k]);
    store16(y + n * p.yn + c, f);
  }
}

class GlobalKernel : public Kernel {
 public:
  GlobalKernel(const GlobalParams& p, bool half, int shape) : p_(p), half_(half), shape_(shape) {}
  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (p_.N * p_.C == 0) return;
    if (half_) go(static_cast<const __half*>(in[0]), static_cast<__half*>(out[0]), l.stream);
    else go(static_cast<const float*>(in[0]), static_cast<float*>(out[0]), l.stream);
  }

 private:
  template <typename T> void go(const T* x, T* y, cudaStream_t s) const {
    const int64_t planes = p_.N * p_.C;
    if (shape_ == 0) {
      global_warp<T><<<grid_for(planes, 8), 256, 0, s>>>(x, y, p_);
    } else if (shape_ == 1) {
      global_block<T><<<grid_for(planes, 1), 256, 0, s>>>(x, y, p_);
    } else if (shape_ == 3) {
      global_channels_vec<T><<<grid_for(planes / (16 / int64_t(sizeof(T)))), 256, 0, s>>>(x, y, p_);
    } else {
      const dim3 grid(unsigned((p_.C + 31) / 32), unsigned(p_.N < 65535 ? p_.N : 65535));
      global_channels<T><<<grid, dim3(32, kSlices), 0, s>>>(x, y, p_);
    }
    KILN_CUDA_LAUNCHED("global pooling kernel");
  }
  GlobalParams p_;
  bool half_;
  int shape_;
};

std::vector<Tactic> global_tactics(const ir::Node& n, std::string* why, Kind kind) {
  TensorDesc xd, yd;
  if (!pool_operands(n, why, xd, yd)) return {};
  GlobalParams p;
  p.N = xd.dims[0];
  p.C = xd.dims[1];
  p.xn = xd.strides[0];
  p.xc = xd.strides[1];
  p.yn = yd.strides[0];
  p.yc = yd.strides[1];
  p.S = 1;
  for (int a = 2; a < xd.rank; ++a) p.S *= xd.dims[a];
  // The spatial axes of both layouts tile memory evenly (extent-1 axes
  // aside): element i of a plane lies i steps from its first.
  int inner = -1;
  for (int a = xd.rank - 1; a >= 2; --a) {
    if (xd.dims[a] == 1) continue;
    if (inner >= 0 && xd.strides[a] != xd.strides[inner] * xd.dims[inner]) {
      if (why) *why = "spatial axes are not evenly strided";
      return {};
    }
    inner = a;
    if (p.xstep == 0) p.xstep = xd.strides[a];
  }
  p.kind = kind;
  p.p = int(n.i("p", 2));
  if (kind == Kind::kLp && (p.p < 1 || p.p > 64)) {
    if (why) *why = "GlobalLpPool p=" + std::to_string(p.p) + " (CUDA takes 1..64)";
    return {};
  }
  if (p.C > int64_t(65535) * 32 * 32) {
    if (why) *why = "too many channels";
    return {};
  }
  const bool half = n.in(0)->dtype == DataType::kFloat16;
  std::vector<Tactic> t;
  auto add = [&](const char* name, int shape) {
    t.push_back({name, [p, half, shape] { return std::make_unique<GlobalKernel>(p, half, shape); }});
  };
  add("global_warp", 0);
  if (p.S >= 1024) add("global_block", 1);
  add("global_channels", 2);
  // Channels contiguous in both tensors, whole 16-byte groups, planes of
  // whole groups apart.
  const int64_t v = half ? 8 : 4;
  if (p.xc == 1 && p.yc == 1 && p.C % v == 0 && (p.S == 1 || p.xstep == p.C) && p.xn % v == 0 && p.yn % v == 0)
    add("global_channels_vec", 3);
  return t;
}

}  // namespace

void register_pool_kernels(Registry& r) {
  OpTraits traits;
  traits.fp16_inputs = {0};
  traits.any_layout = true;
  traits.out_layout = OpTraits::kLikeInput0;
  auto win = [](Kind k) {
    return [k](const ir::Node& n, std::string* why) { return window_tactics(n, why, k); };
  };
  auto glob = [](Kind k) {
    return [k](const ir::Node& n, std::string* why) { return global_tactics(n, why, k); };
  };
  r.add("MaxPool", win(Kind::kMax), traits);
  r.add("AveragePool", win(Kind::kAvg), traits);
  r.add("LpPool", win(Kind::kLp), traits);
  r.add("GlobalMaxPool", glob(Kind::kMax), traits);
  r.add("GlobalAveragePool", glob(Kind::kAvg), traits);
  r.add("GlobalLpPool", glob(Kind::kLp), traits);
}

}  // namespace kiln::cuda
