// CUDA Resize (opset-18 form; Upsample is canonicalized to it on import).
// Shapes are static, so the factory turns every axis into a table of
// (source index, weight) taps per output coordinate (ir/ops/resize_table.h,
// the tables the CPU reference walks) and the kernel uploads
// the tables once. Each output element then sums the product of its
// per-axis taps in fp32; axes whose table is the identity are read straight
// through. tf_crop_and_resize coordinates outside the input take
// extrapolation_value. Nearest is a pure gather and takes any dtype; linear
// and cubic take fp32/fp16. Any rank, any axes; rank-4 resizes of H and W
// only (the common case) take a 2-D kernel with 32-bit offsets.
//
// Tactics, both correct for any layout:
//   resize_nchw  innermost axis fastest (linear layout)
//   resize_nhwc  rank 4 only: channels fastest (channels-last)
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "backends/cuda/common.h"
#include "backends/cuda/kernel.h"
#include "ir/ops/resize_params.h"
#include "ir/ops/resize_table.h"

namespace kiln::cuda {

namespace {

// ---- kernels ----

struct Params {
  int rank = 0;
  int64_t odim[kMaxRank] = {}, xs[kMaxRank] = {}, ys[kMaxRank] = {};
  int nact = 0;                   // axes that resample (others read straight through)
  int act[kMaxRank] = {};         // their indices
  int64_t taps[kMaxRank] = {};    // per axis; 0 for straight-through axes
  int64_t toff[kMaxRank] = {};    // per axis: first entry in idx/w
  int64_t ooff[kMaxRank] = {};    // per axis: first entry in outside
  int order[kMaxRank] = {};       // iteration order, outermost first
  int64_t total = 0;
  bool any_outside = false;
  float fill = 0.f;
  uint64_t fill_raw = 0;
  const int64_t* idx = nullptr;
  const float* w = nullptr;
  const uint8_t* outside = nullptr;
};

__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void st(float* p, float v) { *p = v; }
__device__ __forceinline__ void st(__half* p, float v) { *p = __float2half_rn(v); }

// Output coordinates of element i; returns false if it lies outside the crop.
// `base` collects the straight-through axes, `yoff` the output offset.
__device__ __forceinline__ bool locate(const Params& p, int64_t i, int64_t* o, int64_t& base, int64_t& yoff) {
  for (int k = p.rank - 1; k >= 0; --k) {
    const int a = p.order[k];
    o[a] = i % p.odim[a];
    i /= p.odim[a];
  }
  base = 0;
  yoff = 0;
  bool out = false;
  for (int a = 0; a < p.rank; ++a) {
    yoff += o[a] * p.ys[a];
    if (p.taps[a] == 0) base += o[a] * p.xs[a];
    else if (p.any_outside) out = out || p.outside[p.ooff[a] + o[a]];
  }
  return !out;
}

template <typename E> __global__ void resize_gather(const E* __restrict__ x, E* __restrict__ y, Params p) {
  int64_t o[kMaxRank];
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off, yoff;
    if (!locate(p, i, o, off, yoff)) {
      y[yoff] = E(p.fill_raw);
      continue;
    }
    for (int j = 0; j < p.nact; ++j) {
      const int a = p.act[j];
      off += p.idx[p.toff[a] + o[a]] * p.xs[a];
    }
    y[yoff] = x[off];
  }
}

template <typename T> __global__ void resize_interp(const T* __restrict__ x, T* __restrict__ y, Params p) {
  int64_t o[kMaxRank];
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t base, yoff;
    if (!locate(p, i, o, base, yoff)) {
      st(y + yoff, p.fill);
      continue;
    }
    float acc = 0.f;
    if (p.nact == 2) {  // the common spatial resize: two nested tap loops
      const int a0 = p.act[0], a1 = p.act[1];
      const int64_t e0 = p.toff[a0] + o[a0] * p.taps[a0], e1 = p.toff[a1] + o[a1] * p.taps[a1];
      for (int64_t j0 = 0; j0 < p.taps[a0]; ++j0) {
        const T* row = x + base + p.idx[e0 + j0] * p.xs[a0];
        float racc = 0.f;
        for (int64_t j1 = 0; j1 < p.taps[a1]; ++j1) racc += p.w[e1 + j1] * ld(row + p.idx[e1 + j1] * p.xs[a1]);
        acc += p.w[e0 + j0] * racc;
      }
    } else {
      // Odometer over the taps of every resampling axis.
      int64_t t[kMaxRank] = {};
      for (;;) {
        float w = 1.f;
        int64_t off = base;
        for (int j = 0; j < p.nact; ++j) {
          const int a = p.act[j];
          const int64_t e = p.toff[a] + o[a] * p.taps[a] + t[j];
          w *= p.w[e];
          off += p.idx[e] * p.xs[a];
        }
        acc += w * ld(x + off);
        int j = p.nact - 1;
        for (; j >= 0; --j) {
          if (++t[j] < p.taps[p.act[j]]) break;
          t[j] = 0;
        }
        if (j < 0) break;
      }
    }
    st(y + yoff, acc);
  }
}

class ResizeKernel : public Kernel {
 public:
  ResizeKernel(Params p, DataType dt, bool nearest, const std::vector<int64_t>& idx, const std::vector<float>& w,
               const std::vector<uint8_t>& outside)
      : p_(p), dt_(dt), nearest_(nearest) {
    idx_ = upload(idx.data(), idx.size() * sizeof(int64_t));
    w_ = upload(w.data(), w.size() * sizeof(float));
    outside_ = upload(outside.data(), outside.size());
    p_.idx = static_cast<const int64_t*>(idx_.get());
    p_.w = static_cast<const float*>(w_.get());
    p_.outside = static_cast<const uint8_t*>(outside_.get());
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (p_.total == 0) return;
    const unsigned grid = grid_for(p_.total);
    if (nearest_) {
      switch (dtype_size(dt_)) {
        case 1: resize_gather<uint8_t><<<grid, 256, 0, l.stream>>>(cast<uint8_t>(in[0]), cast<uint8_t>(out[0]), p_); break;
        case 2: resize_gather<uint16_t><<<grid, 256, 0, l.stream>>>(cast<uint16_t>(in[0]), cast<uint16_t>(out[0]), p_); break;
        case 4: resize_gather<uint32_t><<<grid, 256, 0, l.stream>>>(cast<uint32_t>(in[0]), cast<uint32_t>(out[0]), p_); break;
        default: resize_gather<uint64_t><<<grid, 256, 0, l.stream>>>(cast<uint64_t>(in[0]), cast<uint64_t>(out[0]), p_); break;
      }
    } else if (dt_ == DataType::kFloat16) {
      resize_interp<__half><<<grid, 256, 0, l.stream>>>(cast<__half>(in[0]), cast<__half>(out[0]), p_);
    } else {
      resize_interp<float><<<grid, 256, 0, l.stream>>>(cast<float>(in[0]), cast<float>(out[0]), p_);
    }
    KILN_CUDA_LAUNCHED("resize kernel");
  }

 private:
  template <typename E> static const E* cast(const void* v) { return static_cast<const E*>(v); }
  template <typename E> static E* cast(void* v) { return static_cast<E*>(v); }

  Params p_;
  DataType dt_;
  bool nearest_;
  DevicePtr idx_, w_, outside_;
};

// ---- host helpers ----

// The extrapolation value as the output dtype stores it (integers round half
// to even and saturate, as the CPU kernel stores them).
uint64_t fill_bits(float v, DataType t) {
  uint64_t bits = 0;
  auto to_int = [v](double lo, double hi) {
    const double r = std::nearbyint(double(v));
    return std::isnan(r) ? 0.0 : std::clamp(r, lo, hi);
  };
  switch (t) {
    case DataType::kFloat32: std::memcpy(&bits, &v, 4); break;
    case DataType::kFloat16: bits = float_to_half(v); break;
    case DataType::kInt8: { int8_t q = int8_t(to_int(-128, 127)); std::memcpy(&bits, &q, 1); break; }
    case DataType::kUInt8: bits = uint8_t(to_int(0, 255)); break;
    case DataType::kInt32: { int32_t q = int32_t(to_int(-2147483648.0, 2147483647.0)); std::memcpy(&bits, &q, 4); break; }
    case DataType::kInt64: {
      const double r = std::nearbyint(double(v));
      int64_t q = std::isnan(r) ? 0 : r >= 9.2233720368547758e18 ? INT64_MAX : r < -9.2233720368547758e18 ? INT64_MIN : int64_t(r);
      std::memcpy(&bits, &q, 8);
      break;
    }
    case DataType::kBool: bits = v != 0; break;
  }
  return bits;
}

// ---- the common case: rank 4, only H and W resample, 32-bit offsets ----

struct Params2d {
  int N = 0, C = 0, OH = 0, OW = 0;
  int xn = 0, xc = 0, xh = 0, xw = 0, yn = 0, yc = 0, yh = 0, yw = 0;
  int th = 1, tw = 1;  // taps per output row / column
  bool channels_fast = false, any_outside = false;
  float fill = 0.f;
  uint64_t fill_raw = 0;
  int64_t total = 0;
  const int* hidx = nullptr;  // OH * th, then widx: OW * tw
  const int* widx = nullptr;
  const float* hw = nullptr;
  const float* ww = nullptr;
  const uint8_t* hout = nullptr;  // OH, then wout: OW
  const uint8_t* wout = nullptr;
};

__device__ __forceinline__ void locate2d(const Params2d& p, int r, int& n, int& c, int& oh, int& ow) {
  if (p.channels_fast) {
    c = r % p.C;
    r /= p.C;
  }
  ow = r % p.OW;
  r /= p.OW;
  oh = r % p.OH;
  r /= p.OH;
  if (!p.channels_fast) {
    c = r % p.C;
    r /= p.C;
  }
  n = r;
}

template <typename E> __global__ void gather2d(const E* __restrict__ x, E* __restrict__ y, Params2d p) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.total; i += int64_t(gridDim.x) * blockDim.x) {
    int n, c, oh, ow;
    locate2d(p, int(i), n, c, oh, ow);
    E* d = y + n * p.yn + c * p.yc + oh * p.yh + ow * p.yw;
    if (p.any_outside && (p.hout[oh] || p.wout[ow])) *d = E(p.fill_raw);
    else *d = x[n * p.xn + c * p.xc + p.hidx[oh] * p.xh + p.widx[ow] * p.xw];
  }
}

template <typename T> __global__ void interp2d(const T* __restrict__ x, T* __restrict__ y, Params2d p) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.total; i += int64_t(gridDim.x) * blockDim.x) {
    int n, c, oh, ow;
    locate2d(p, int(i), n, c, oh, ow);
    T* d = y + n * p.yn + c * p.yc + oh * p.yh + ow * p.yw;
    if (p.any_outside && (p.hout[oh] || p.wout[ow])) {
      st(d, p.fill);
      continue;
    }
    const T* plane = x + n * p.xn + c * p.xc;
    const int* hi = p.hidx + oh * p.th;
    const int* wi = p.widx + ow * p.tw;
    const float* hw = p.hw + oh * p.th;
    const float* ww = p.ww + ow * p.tw;
    float acc = 0.f;
    for (int jh = 0; jh < p.th; ++jh) {
      const T* row = plane + hi[jh] * p.xh;
      float racc = 0.f;
      for (int jw = 0; jw < p.tw; ++jw) racc += ww[jw] * ld(row + wi[jw] * p.xw);
      acc += hw[jh] * racc;
    }
    st(d, acc);
  }
}

class Resize2dKernel : public Kernel {
 public:
  Resize2dKernel(Params2d p, DataType dt, bool nearest, const std::vector<int>& idx, const std::vector<float>& w,
                 const std::vector<uint8_t>& outside)
      : p_(p), dt_(dt), nearest_(nearest) {
    idx_ = upload(idx.data(), idx.size() * sizeof(int));
    w_ = upload(w.data(), w.size() * sizeof(float));
    outside_ = upload(outside.data(), outside.size());
    p_.hidx = static_cast<const int*>(idx_.get());
    p_.widx = p_.hidx + size_t(p.OH) * size_t(p.th);
    p_.hw = static_cast<const float*>(w_.get());
    p_.ww = p_.hw + size_t(p.OH) * size_t(p.th);
    p_.hout = static_cast<const uint8_t*>(outside_.get());
    p_.wout = p_.hout + p.OH;
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (p_.total == 0) return;
    const unsigned g = grid_for(p_.total);
    if (nearest_) {
      switch (dtype_size(dt_)) {
        case 1: gather2d<uint8_t><<<g, 256, 0, l.stream>>>(cast<uint8_t>(in[0]), cast<uint8_t>(out[0]), p_); break;
        case 2: gather2d<uint16_t><<<g, 256, 0, l.stream>>>(cast<uint16_t>(in[0]), cast<uint16_t>(out[0]), p_); break;
        case 4: gather2d<uint32_t><<<g, 256, 0, l.stream>>>(cast<uint32_t>(in[0]), cast<uint32_t>(out[0]), p_); break;
        default: gather2d<uint64_t><<<g, 256, 0, l.stream>>>(cast<uint64_t>(in[0]), cast<uint64_t>(out[0]), p_); break;
      }
    } else if (dt_ == DataType::kFloat16) {
      interp2d<__half><<<g, 256, 0, l.stream>>>(cast<__half>(in[0]), cast<__half>(out[0]), p_);
    } else {
      interp2d<float><<<g, 256, 0, l.stream>>>(cast<float>(in[0]), cast<float>(out[0]), p_);
    }
    KILN_CUDA_LAUNCHED("resize kernel");
  }

 private:
  template <typename E> static const E* cast(const void* v) { return static_cast<const E*>(v); }
  template <typename E> static E* cast(void* v) { return static_cast<E*>(v); }

  Params2d p_;
  DataType dt_;
  bool nearest_;
  DevicePtr idx_, w_, outside_;
};

// The 2-D form of a rank-4 resize whose N and C axes read straight through;
// false when it does not apply. Identity H or W axes become one-tap tables.
bool make_2d(const ir::ResizeSpec& spec, const TensorDesc& xd, const TensorDesc& yd, Params2d& p,
             std::vector<int>& idx, std::vector<float>& w, std::vector<uint8_t>& outside) {
  constexpr int64_t kNarrow = int64_t(1) << 31;
  if (xd.rank != 4) return false;
  int64_t xn = 1, yn = 1;
  for (int a = 0; a < 4; ++a) {
    xn *= xd.dims[a];
    yn *= yd.dims[a];
  }
  if (xn >= kNarrow || yn >= kNarrow) return false;
  ir::ResizeTable t[4];
  for (size_t a = 0; a < 4; ++a) t[a] = ir::resize_table(spec, a);
  if (!t[0].identity || !t[1].identity) return false;
  std::vector<int> wi;
  std::vector<float> ww;
  int taps[2];
  for (int k = 0; k < 2; ++k) {
    const ir::ResizeTable& a = t[2 + k];
    std::vector<int>& di = k ? wi : idx;
    std::vector<float>& dw = k ? ww : w;
    if (a.identity) {
      taps[k] = 1;
      for (int64_t o = 0; o < a.len; ++o) {
        di.push_back(int(o));
        dw.push_back(1.f);
      }
      outside.insert(outside.end(), size_t(a.len), 0);
      continue;
    }
    taps[k] = int(a.taps);
    for (int64_t v : a.idx) di.push_back(int(v));
    dw.insert(dw.end(), a.w.begin(), a.w.end());
    outside.insert(outside.end(), a.outside.begin(), a.outside.end());
    p.any_outside = p.any_outside || a.any_outside;
  }
  idx.insert(idx.end(), wi.begin(), wi.end());
  w.insert(w.end(), ww.begin(), ww.end());
  p.N = int(yd.dims[0]);
  p.C = int(yd.dims[1]);
  p.OH = int(yd.dims[2]);
  p.OW = int(yd.dims[3]);
  p.xn = int(xd.strides[0]);
  p.xc = int(xd.strides[1]);
  p.xh = int(xd.strides[2]);
  p.xw = int(xd.strides[3]);
  p.yn = int(yd.strides[0]);
  p.yc = int(yd.strides[1]);
  p.yh = int(yd.strides[2]);
  p.yw = int(yd.strides[3]);
  p.th = taps[0];
  p.tw = taps[1];
  p.total = yn;
  return true;
}

std::vector<Tactic> resize_tactics(const ir::Node& n, std::string* why) {
  const ir::Value* x = n.in(0);
  const ir::Value* yv = n.outputs.empty() ? nullptr : n.outputs[0];
  if (!x || !yv || yv->dtype != x->dtype) {
    if (why) *why = "missing input or output, or output dtype differs";
    return {};
  }
  const ir::ResizeSpec spec = ir::resize_spec(n);
  const bool nearest = spec.mode == "nearest";
  const DataType dt = x->dtype;
  if (!nearest && dt != DataType::kFloat32 && dt != DataType::kFloat16) {
    if (why) *why = spec.mode + " resize of " + dtype_name(dt) + " data (CUDA interpolates fp32/fp16)";
    return {};
  }
  const TensorDesc xd = desc_of(n, *x), yd = desc_of(n, *yv);
  if (xd.rank != yd.rank || size_t(xd.rank) != spec.in.size()) {
    if (why) *why = "input and output ranks differ";
    return {};
  }
  Params p;
  p.rank = xd.rank;
  p.total = 1;
  std::vector<int64_t> idx;
  std::vector<float> w;
  std::vector<uint8_t> outside;
  int64_t tap_product = 1;
  for (int a = 0; a < p.rank; ++a) {
    p.odim[a] = yd.dims[a];
    p.xs[a] = xd.strides[a];
    p.ys[a] = yd.strides[a];
    p.order[a] = a;
    p.total *= yd.dims[a];
    if (yd.dims[a] != spec.out[size_t(a)]) throw_internal(n.label() + ": Resize output shape disagrees with its spec");
    ir::ResizeTable t = ir::resize_table(spec, size_t(a));
    if (t.identity) continue;
    p.act[p.nact++] = a;
    p.taps[a] = t.taps;
    p.toff[a] = int64_t(idx.size());
    p.ooff[a] = int64_t(outside.size());
    p.any_outside = p.any_outside || t.any_outside;
    idx.insert(idx.end(), t.idx.begin(), t.idx.end());
    w.insert(w.end(), t.w.begin(), t.w.end());
    outside.insert(outside.end(), t.outside.begin(), t.outside.end());
    tap_product *= t.taps;
    if (tap_product > 4096) {
      if (why) *why = "more than 4096 taps per output (antialias with a very small scale)";
      return {};
    }
  }
  p.fill = spec.extrapolation;
  p.fill_raw = fill_bits(spec.extrapolation, dt);
  std::vector<Tactic> t;
  Params2d p2;
  std::vector<int> idx2;
  std::vector<float> w2;
  std::vector<uint8_t> out2;
  if (make_2d(spec, xd, yd, p2, idx2, w2, out2)) {
    p2.fill = p.fill;
    p2.fill_raw = p.fill_raw;
    for (bool cf : {false, true}) {
      p2.channels_fast = cf;
      t.push_back({cf ? "resize_nhwc" : "resize_nchw", [p2, dt, nearest, idx2, w2, out2] {
                     return std::make_unique<Resize2dKernel>(p2, dt, nearest, idx2, w2, out2);
                   }});
    }
    return t;
  }
  auto add = [&](const char* name, const Params& q) {
    t.push_back({name, [q, dt, nearest, idx, w, outside] {
                   return std::make_unique<ResizeKernel>(q, dt, nearest, idx, w, outside);
                 }});
  };
  add("resize_nchw", p);
  if (p.rank == 4) {
    Params q = p;
    const int order[4] = {0, 2, 3, 1};
    for (int a = 0; a < 4; ++a) q.order[a] = order[a];
    add("resize_nhwc", q);
  }
  return t;
}

}  // namespace

void register_resize_kernels(Registry& r) {
  OpTraits traits;
  traits.fp16_inputs = {0};
  traits.any_layout = true;
  traits.out_layout = OpTraits::kLikeInput0;
  r.add("Resize", resize_tactics, traits);
}

}  // namespace kiln::cuda
