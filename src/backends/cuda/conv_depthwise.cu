// Direct depthwise convolution with the epilogue fused (see conv_depthwise.h).
// One thread per output element (or channel pair): a depthwise layer is
// memory bound at batch 1, so the win is one pass over the input with
// neighbouring windows served from L1, and no separate epilogue launch.
// Channels-last tensors put channels on the fast thread axis so loads are
// coalesced, two channels per thread (half2 / float2) when C is even.
#include <cuda_fp16.h>

#include <vector>

#include "backends/cuda/common.h"
#include "backends/cuda/half_convert.cuh"
#include "backends/cuda/conv_depthwise.h"
#include "backends/cuda/epilogue.h"
#include "kiln/error.h"

namespace kiln::cuda {

namespace {


__device__ __forceinline__ float2 load2(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 load2(const __half* p) { return __half22float2(*reinterpret_cast<const __half2*>(p)); }
__device__ __forceinline__ void store2(float* p, float a, float b) { *reinterpret_cast<float2*>(p) = make_float2(a, b); }
__device__ __forceinline__ void store2(__half* p, float a, float b) {
  *reinterpret_cast<__half2*>(p) = __floats2half2_rn(a, b);
}

struct DwArgs {
  int64_t n, c, h, w, oh, ow;
  int kh, kw, sh, sw, dh, dw, ph, pw;
  int64_t xs[4], ys[4], zs[4];  // element strides of X, Y, Z per logical axis (N, C, H, W)
  int64_t wc, wk;               // weight strides: per channel, per tap
  bool chan_fastest;            // thread index order: channels innermost (channels-last output)
  Activation act;
};

// Any layouts, one output element per thread.
template <typename T>
__global__ void dw_generic(DwArgs p, const T* __restrict__ x, const float* __restrict__ w, const T* __restrict__ bias,
                           const T* __restrict__ z, T* __restrict__ y, int64_t total) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t n, c, oh, ow, rem = i;
    if (p.chan_fastest) {
      c = rem % p.c; rem /= p.c;
      ow = rem % p.ow; rem /= p.ow;
      oh = rem % p.oh; n = rem / p.oh;
    } else {
      ow = rem % p.ow; rem /= p.ow;
      oh = rem % p.oh; rem /= p.oh;
      c = rem % p.c; n = rem / p.c;
    }
    const T* xb = x + n * p.xs[0] + c * p.xs[1];
    const float* wb = w + c * p.wc;
    const int64_t ih0 = oh * p.sh - p.ph, iw0 = ow * p.sw - p.pw;
    float acc = 0.f;
    for (int a = 0; a < p.kh; ++a) {
      const int64_t ih = ih0 + int64_t(a) * p.dh;
      if (ih < 0 || ih >= p.h) continue;
      for (int b = 0; b < p.kw; ++b) {
        const int64_t iw = iw0 + int64_t(b) * p.dw;
        if (iw < 0 || iw >= p.w) continue;
        acc += to_f(xb[ih * p.xs[2] + iw * p.xs[3]]) * wb[(a * p.kw + b) * p.wk];
      }
    }
    if (bias) acc += to_f(bias[c]);
    if (z) acc += to_f(z[n * p.zs[0] + c * p.zs[1] + oh * p.zs[2] + ow * p.zs[3]]);
    y[n * p.ys[0] + c * p.ys[1] + oh * p.ys[2] + ow * p.ys[3]] = from_f<T>(apply_activation(p.act, acc));
  }
}

// X, Y (and Z) channels-last with C even: two channels per thread.
template <typename T>
__global__ void dw_nhwc2(DwArgs p, const T* __restrict__ x, const float* __restrict__ w, const T* __restrict__ bias,
                         const T* __restrict__ z, T* __restrict__ y, int64_t total) {
  const int64_t c2n = p.c / 2;
  const int kh = p.kh, kw = p.kw;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i;
    const int64_t c = (rem % c2n) * 2;
    rem /= c2n;
    const int64_t ow = rem % p.ow;
    rem /= p.ow;
    const int64_t oh = rem % p.oh, n = rem / p.oh;
    const T* xb = x + n * p.xs[0] + c;
    const int64_t ih0 = oh * p.sh - p.ph, iw0 = ow * p.sw - p.pw;
    float a0 = 0.f, a1 = 0.f;
    for (int a = 0; a < kh; ++a) {
      const int64_t ih = ih0 + int64_t(a) * p.dh;
      if (ih < 0 || ih >= p.h) continue;
      for (int b = 0; b < kw; ++b) {
        const int64_t iw = iw0 + int64_t(b) * p.dw;
        if (iw < 0 || iw >= p.w) continue;
        const float2 xv = load2(xb + ih * p.xs[2] + iw * p.xs[3]);
        const float2 wv = *reinterpret_cast<const float2*>(w + (a * kw + b) * p.c + c);
        a0 += xv.x * wv.x;
        a1 += xv.y * wv.y;
      }
    }
    if (bias) {
      a0 += to_f(bias[c]);
      a1 += to_f(bias[c + 1]);
    }
    if (z) {
      const float2 zv = load2(z + n * p.zs[0] + oh * p.zs[2] + ow * p.zs[3] + c);
      a0 += zv.x;
      a1 += zv.y;
    }
    store2(y + n * p.ys[0] + oh * p.ys[2] + ow * p.ys[3] + c, apply_activation(p.act, a0),
           apply_activation(p.act, a1));
  }
}

// 16 bytes of T as floats and back (4 floats or 8 halves).
__device__ __forceinline__ void to_floats(const uint4& u, float* f, float) {
  f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y), f[2] = __uint_as_float(u.z), f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ void to_floats(const uint4& u, float* f, __half) {
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __half22float2(h[i]);
    f[2 * i] = t.x, f[2 * i + 1] = t.y;
  }
}
__device__ __forceinline__ uint4 from_floats(const float* f, float) {
  return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
}
__device__ __forceinline__ uint4 from_floats(const float* f, __half) {
  uint4 u;
  __half2* h = reinterpret_cast<__half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
  return u;
}

// Packed channels-last X, Y (and Z), C a multiple of 16 bytes of channels,
// 32-bit indices: 16 bytes of channels per thread with predicated loads, so
// every tap's load is in flight at once. Weights in T, tap-major [tap][C].
template <typename T, int K>
__global__ void dw_nhwc_wide(DwArgs p, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                             const T* __restrict__ z, T* __restrict__ y, int total) {
  constexpr int V = 16 / sizeof(T);
  const int c_all = int(p.c), cv = c_all / V, kh = K ? K : p.kh, kw = K ? K : p.kw;
  const int h = int(p.h), wd = int(p.w), ow_n = int(p.ow), oh_n = int(p.oh);
  const int xs0 = int(p.xs[0]), xs2 = int(p.xs[2]), ys0 = int(p.ys[0]), ys2 = int(p.ys[2]);
  const int zs0 = int(p.zs[0]), zs2 = int(p.zs[2]);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    int rem = i;
    const int c = (rem % cv) * V;
    rem /= cv;
    const int ow = rem % ow_n;
    rem /= ow_n;
    const int oh = rem % oh_n, n = rem / oh_n;
    const T* xb = x + n * xs0 + c;
    const int ih0 = oh * p.sh - p.ph, iw0 = ow * p.sw - p.pw;
    float acc[V];
#pragma unroll
    for (int v = 0; v < V; ++v) acc[v] = 0.f;
    // One kernel row at a time: all of its input and weight loads are issued
    // before any is used, so a row costs one memory round trip, not kw.
    constexpr int KB = K ? K : 7;
#pragma unroll
    for (int a = 0; a < kh; ++a) {
      const int ih = ih0 + a * p.dh;
      const bool row_ok = unsigned(ih) < unsigned(h);
      uint4 xr[KB], wr[KB];
#pragma unroll
      for (int b = 0; b < KB; ++b) {
        if (b >= kw) break;
        const int iw = iw0 + b * p.dw;
        xr[b] = make_uint4(0, 0, 0, 0);
        if (row_ok && unsigned(iw) < unsigned(wd)) xr[b] = __ldg(reinterpret_cast<const uint4*>(xb + ih * xs2 + iw * c_all));
        wr[b] = __ldg(reinterpret_cast<const uint4*>(w + (a * kw + b) * c_all + c));
      }
#pragma unroll
      for (int b = 0; b < KB; ++b) {
        if (b >= kw) break;
        float xf[V], wf[V];
        to_floats(xr[b], xf, T());
        to_floats(wr[b], wf, T());
#pragma unroll
        for (int v = 0; v < V; ++v) acc[v] = fmaf(xf[v], wf[v], acc[v]);
      }
    }
    float e[V];
    if (bias) {
      to_floats(__ldg(reinterpret_cast<const uint4*>(bias + c)), e, T());
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] += e[v];
    }
    if (z) {
      to_floats(*reinterpret_cast<const uint4*>(z + n * zs0 + oh * zs2 + ow * c_all + c), e, T());
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] += e[v];
    }
#pragma unroll
    for (int v = 0; v < V; ++v) acc[v] = apply_activation(p.act, acc[v]);
    *reinterpret_cast<uint4*>(y + n * ys0 + oh * ys2 + ow * c_all + c) = from_floats(acc, T());
  }
}

// Strides of a rank-3 or rank-4 value as (N, C, H, W); rank 3 gets H = 1.
void nchw_strides(const ir::Value& v, int64_t s[4]) {
  std::vector<int64_t> st = strides_of(v);
  if (st.size() == 3) {
    s[0] = st[0]; s[1] = st[1]; s[2] = 0; s[3] = st[2];
  } else {
    for (int k = 0; k < 4; ++k) s[k] = st[size_t(k)];
  }
}

// Everything a kernel needs, read from the node while listing tactics so the
// tactic outlives the node.
struct DwPlan {
  DwArgs p{};
  bool half = false, has_bias = false, has_z = false, vec2 = false, wide = false;
  std::shared_ptr<const ir::Tensor> w, b;  // weights [C, 1, kh, kw]; bias [C] when constant
};

DwPlan plan_depthwise(const ir::Node& n) {
  DwPlan pl;
  DwArgs& p = pl.p;
  const ir::Value& x = *n.in(0);
  const ir::Value& y = *n.outputs[0];
  pl.half = x.dtype == DataType::kFloat16;
  const bool r1 = x.dims.size() == 3;
  const std::vector<int64_t> k = n.ints("kernel_shape"), s = n.ints("strides"), d = n.ints("dilations"),
                             pads = n.ints("pads");
  const size_t r = r1 ? 1 : 2;
  if (k.size() != r || s.size() != r || d.size() != r || pads.size() != 2 * r)
    throw_internal(n.label() + ": window attributes were not made explicit by shape inference");
  p.n = x.dims[0];
  p.c = x.dims[1];
  p.h = r1 ? 1 : x.dims[2];
  p.w = x.dims.back();
  p.oh = r1 ? 1 : y.dims[2];
  p.ow = y.dims.back();
  p.kh = r1 ? 1 : int(k[0]);
  p.kw = int(k.back());
  p.sh = r1 ? 1 : int(s[0]);
  p.sw = int(s.back());
  p.dh = r1 ? 1 : int(d[0]);
  p.dw = int(d.back());
  p.ph = r1 ? 0 : int(pads[0]);
  p.pw = int(pads[r - 1]);
  nchw_strides(x, p.xs);
  nchw_strides(y, p.ys);
  if (const ir::Value* zv = n.in(3)) nchw_strides(*zv, p.zs);
  p.act = Activation::from_node(n);
  pl.has_bias = n.in(2) != nullptr;
  pl.has_z = n.in(3) != nullptr;
  // Channels-last output: channels on the fast thread axis, weights tap-major.
  p.chan_fastest = p.ys[1] == 1 && p.c > 1;
  pl.vec2 = p.chan_fastest && p.c % 2 == 0 && p.xs[1] == 1 && (!pl.has_z || p.zs[1] == 1);
  const int64_t taps = int64_t(p.kh) * p.kw;
  p.wc = p.chan_fastest ? 1 : taps;
  p.wk = p.chan_fastest ? p.c : 1;
  pl.w = n.in(1)->constant;
  pl.b = pl.has_bias ? n.in(2)->constant : nullptr;
  // The 16-byte path: every tensor packed channels-last, whole vectors of channels, int32 offsets.
  const int64_t v = pl.half ? 8 : 4;
  auto nhwc = [](const ir::Value* q) { return !q || (q->layout == ir::Layout::kNHWC && q->dims.size() == 4); };
  pl.wide = nhwc(&x) && nhwc(&y) && nhwc(n.in(3)) && p.c % v == 0 && (!pl.has_bias || pl.b) &&
            ir::numel_of(x.dims) < INT32_MAX && ir::numel_of(y.dims) < INT32_MAX;
  return pl;
}

class DepthwiseKernel : public Kernel {
 public:
  explicit DepthwiseKernel(const DwPlan& pl)
      : p_(pl.p), half_(pl.half), has_bias_(pl.has_bias), has_z_(pl.has_z), vec2_(pl.vec2), wide_(pl.wide) {
    // Weights in float whatever the node's precision: the products are formed in float anyway.
    const ir::Tensor& wt = *pl.w;
    const int64_t taps = int64_t(p_.kh) * p_.kw;
    std::vector<float> wf(size_t(p_.c * taps));
    for (int64_t c = 0; c < p_.c; ++c)
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t src = c * taps + t;
        const float v =
            wt.dtype() == DataType::kFloat16 ? half_to_float(wt.data<uint16_t>()[src]) : wt.data<float>()[src];
        wf[size_t(c * p_.wc + t * p_.wk)] = v;
      }
    w_ = upload(wf.data(), wf.size() * sizeof(float));
    if (wide_) {
      // The 16-byte path reads weights and bias in the node's precision: fp16
      // weights were already fp16 in the plan, so nothing is lost.
      const DataType dt = half_ ? DataType::kFloat16 : DataType::kFloat32;
      ir::Tensor wt_t(DataType::kFloat32, {taps, p_.c});
      for (int64_t c = 0; c < p_.c; ++c)
        for (int64_t t = 0; t < taps; ++t) wt_t.data<float>()[t * p_.c + c] = wf[size_t(c * p_.wc + t * p_.wk)];
      w_wide_ = upload(wt_t, dt);
      if (pl.b) b_wide_ = upload(*pl.b, dt);
    }
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (half_) run<__half>(in, out, l.stream);
    else run<float>(in, out, l.stream);
  }

 private:
  template <typename T> void run(const std::vector<const void*>& in, const std::vector<void*>& out, cudaStream_t s) const {
    const T* x = static_cast<const T*>(in[0]);
    const T* b = has_bias_ ? static_cast<const T*>(in[2]) : nullptr;
    const T* z = has_z_ ? static_cast<const T*>(in[3]) : nullptr;
    T* y = static_cast<T*>(out[0]);
    const float* w = static_cast<const float*>(w_.get());
    const int64_t total = p_.n * p_.c * p_.oh * p_.ow;
    if (total == 0) return;
    auto aligned = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & (2 * sizeof(T) - 1)) == 0; };
    auto aligned16 = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15) == 0; };
    if (wide_ && aligned16(x) && aligned16(y) && (!z || aligned16(z))) {
      const int tv = int(total / (16 / sizeof(T)));
      const unsigned blocks = grid_for(tv, 128);
      const T* ww = static_cast<const T*>(w_wide_.get());
      const T* bw = static_cast<const T*>(b_wide_.get());
      if (p_.kh == 3 && p_.kw == 3) dw_nhwc_wide<T, 3><<<blocks, 128, 0, s>>>(p_, x, ww, bw, z, y, tv);
      else if (p_.kh == 5 && p_.kw == 5) dw_nhwc_wide<T, 5><<<blocks, 128, 0, s>>>(p_, x, ww, bw, z, y, tv);
      else dw_nhwc_wide<T, 0><<<blocks, 128, 0, s>>>(p_, x, ww, bw, z, y, tv);
    } else if (vec2_ && aligned(x) && aligned(y) && (!z || aligned(z))) {
      const int64_t t2 = total / 2;
      dw_nhwc2<T><<<grid_for(t2), 256, 0, s>>>(p_, x, w, b, z, y, t2);
    } else {
      dw_generic<T><<<grid_for(total), 256, 0, s>>>(p_, x, w, b, z, y, total);
    }
    KILN_CUDA_LAUNCHED("depthwise convolution kernel");
  }

  DwArgs p_{};
  bool half_ = false, has_bias_ = false, has_z_ = false, vec2_ = false, wide_ = false;
  DevicePtr w_, w_wide_, b_wide_;
};

}  // namespace

std::vector<Tactic> depthwise_tactics(const ir::Node& n, std::string* why) {
  auto no = [&](const std::string& m) {
    if (why) *why = m;
    return std::vector<Tactic>{};
  };
  const ir::Value* x = n.in(0);
  const ir::Value* w = n.in(1);
  const ir::Value* y = n.outputs.empty() ? nullptr : n.outputs[0];
  if (!x || !w || !y) return no("missing input or output");
  if (x->dims.size() != 4 && x->dims.size() != 3) return no("dw_direct takes 1-D and 2-D convolutions only");
  if (x->dtype != DataType::kFloat32 && x->dtype != DataType::kFloat16) return no("dw_direct takes fp32 / fp16 only");
  const int64_t c = x->dims[1], g = n.i("group", 1);
  if (g != c || w->dims[0] != c || w->dims[1] != 1) return no("not a depthwise convolution with one filter per channel");
  for (size_t a = 2; a < w->dims.size(); ++a)
    if (w->dims[a] > 7) return no("dw_direct takes kernels up to 7x7");
  for (int64_t s : n.ints("strides"))
    if (s != 1 && s != 2) return no("dw_direct takes strides 1 and 2");
  const ir::Tensor* wt = constant_input(n, 1);
  if (!wt) return no("dw_direct needs constant weights");
  if (wt->dtype() != DataType::kFloat32 && wt->dtype() != DataType::kFloat16) return no("weights are not float");
  for (const ir::Value* v : {n.in(2), n.in(3)})
    if (v && v->dtype != x->dtype) return no("bias / residual dtype differs from the input's");
  DwPlan pl = plan_depthwise(n);  // also rejects an unknown activation now rather than at load
  return {Tactic{"dw_direct", [pl] { return std::unique_ptr<Kernel>(new DepthwiseKernel(pl)); }}};
}

}  // namespace kiln::cuda
