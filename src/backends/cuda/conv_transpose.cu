// CUDA ConvTranspose (1-D and 2-D, groups, strides, dilations, pads,
// output padding), FP32 or FP16 activations with FP32 weights and sums.
//
// Gather form: one thread per output element sums the input taps that land
// on it, so there are no atomics and the result is deterministic. Decoder
// upsamplers (2x2 / 4x4 kernels, stride 2) are light next to the convs
// around them; what matters is one pass, any layout, no scratch.
#include <cuda_fp16.h>

#include <vector>

#include "backends/cuda/common.h"
#include "backends/cuda/half_convert.cuh"
#include "backends/cuda/kernel.h"
#include "kiln/error.h"

namespace kiln::cuda {

namespace {

struct DeconvArgs {
  int64_t n, c, h, w, m, oh, ow;  // 1-D: h = oh = 1
  int kh, kw, sh, sw, dh, dw, ph, pw;
  int64_t cg, mg;                 // channels per group, in and out
  int64_t xs[4], ys[4];           // element strides per (N, C, H, W)
  bool chan_fastest;              // thread order: channels innermost (channels-last output)
};

template <typename T>
__global__ void deconv_gather(DeconvArgs p, const T* __restrict__ x, const float* __restrict__ wt,
                              const float* __restrict__ bias, T* __restrict__ y, int64_t total) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t n, m, oh, ow, rem = i;
    if (p.chan_fastest) {
      m = rem % p.m; rem /= p.m;
      ow = rem % p.ow; rem /= p.ow;
      oh = rem % p.oh; n = rem / p.oh;
    } else {
      ow = rem % p.ow; rem /= p.ow;
      oh = rem % p.oh; rem /= p.oh;
      m = rem % p.m; n = rem / p.m;
    }
    const int64_t g = m / p.mg, mm = m % p.mg;
    float acc = bias ? bias[m] : 0.f;
    for (int a = 0; a < p.kh; ++a) {
      // Output row oh = ih * sh + a * dh - ph: the input row, if any.
      const int64_t t = oh + p.ph - int64_t(a) * p.dh;
      if (t < 0 || t % p.sh) continue;
      const int64_t ih = t / p.sh;
      if (ih >= p.h) continue;
      for (int b = 0; b < p.kw; ++b) {
        const int64_t u = ow + p.pw - int64_t(b) * p.dw;
        if (u < 0 || u % p.sw) continue;
        const int64_t iw = u / p.sw;
        if (iw >= p.w) continue;
        const T* xp = x + n * p.xs[0] + ih * p.xs[2] + iw * p.xs[3];
        // W is [C, M/group, kH, kW].
        const float* wp = wt + ((g * p.cg * p.mg + mm) * p.kh + a) * p.kw + b;
        const int64_t wstep = p.mg * p.kh * p.kw;
        for (int64_t c = 0; c < p.cg; ++c) acc += to_f(xp[(g * p.cg + c) * p.xs[1]]) * wp[c * wstep];
      }
    }
    y[n * p.ys[0] + m * p.ys[1] + oh * p.ys[2] + ow * p.ys[3]] = from_f<T>(acc);
  }
}

class DeconvKernel : public Kernel {
 public:
  DeconvKernel(const DeconvArgs& p, DataType dt, DevicePtr w, DevicePtr b)
      : p_(p), dt_(dt), w_(std::move(w)), b_(std::move(b)) {}
  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    const int64_t total = p_.n * p_.m * p_.oh * p_.ow;
    if (!total) return;
    const float* w = static_cast<const float*>(w_.get());
    const float* b = static_cast<const float*>(b_.get());
    if (dt_ == DataType::kFloat16)
      deconv_gather<<<grid_for(total), 256, 0, l.stream>>>(p_, static_cast<const __half*>(in[0]), w, b,
                                                             static_cast<__half*>(out[0]), total);
    else
      deconv_gather<<<grid_for(total), 256, 0, l.stream>>>(p_, static_cast<const float*>(in[0]), w, b,
                                                             static_cast<float*>(out[0]), total);
    KILN_CUDA_LAUNCHED("ConvTranspose");
  }

 private:
  DeconvArgs p_;
  DataType dt_;
  DevicePtr w_, b_;
};

// A float constant on the device as FP32.
DevicePtr upload_f32(const ir::Tensor& t) {
  if (t.dtype() == DataType::kFloat32) return upload(t, DataType::kFloat32);
  const std::vector<double> v = t.to_double();
  const std::vector<float> f(v.begin(), v.end());
  return upload(f.data(), f.size() * sizeof(float));
}

// The four (N, C, H, W) strides of a rank-3 or rank-4 value (rank 3: H = 1).
void nchw_strides(const ir::Value& v, int64_t s[4]) {
  const std::vector<int64_t> st = strides_of(v);
  if (st.size() == 4) {
    for (int k = 0; k < 4; ++k) s[k] = st[size_t(k)];
  } else {
    s[0] = st[0];
    s[1] = st[1];
    s[2] = 0;
    s[3] = st[2];
  }
}

std::vector<Tactic> deconv_tactics(const ir::Node& n, std::string* why) {
  auto no = [&](const std::string& w) {
    if (why) *why = w;
    return std::vector<Tactic>{};
  };
  const ir::Value& x = *n.in(0);
  const ir::Value& y = *n.outputs[0];
  const size_t rank = x.dims.size();
  if (rank != 3 && rank != 4) return no("only 1-D and 2-D ConvTranspose run on the GPU");
  if (x.dtype != DataType::kFloat32 && x.dtype != DataType::kFloat16) return no("input is not fp32/fp16");
  if (y.dtype != x.dtype) return no("output dtype differs from the input's");
  // FP16 builds hand over FP16 weights; sums stay FP32 either way.
  const auto is_float = [](const ir::Tensor* t) {
    return t && (t->dtype() == DataType::kFloat32 || t->dtype() == DataType::kFloat16);
  };
  const ir::Tensor* w = constant_input(n, 1);
  if (!is_float(w)) return no("weights must be an fp32/fp16 constant");
  const ir::Tensor* b = n.inputs.size() > 2 && n.in(2) ? constant_input(n, 2) : nullptr;
  if (n.inputs.size() > 2 && n.in(2) && !is_float(b)) return no("bias must be an fp32/fp16 constant");
  const size_t r = rank - 2;
  const auto k = n.ints("kernel_shape"), s = n.ints("strides"), d = n.ints("dilations"), pads = n.ints("pads");
  if (k.size() != r || s.size() != r || d.size() != r || pads.size() != 2 * r)
    throw_internal(n.label() + ": window attributes were not resolved by shape inference");
  DeconvArgs p{};
  const int64_t group = n.i("group", 1);
  p.n = x.dims[0];
  p.c = x.dims[1];
  p.m = y.dims[1];
  p.h = r == 2 ? x.dims[2] : 1;
  p.w = x.dims[rank - 1];
  p.oh = r == 2 ? y.dims[2] : 1;
  p.ow = y.dims[rank - 1];
  p.kh = r == 2 ? int(k[0]) : 1;
  p.kw = int(k[r - 1]);
  p.sh = r == 2 ? int(s[0]) : 1;
  p.sw = int(s[r - 1]);
  p.dh = r == 2 ? int(d[0]) : 1;
  p.dw = int(d[r - 1]);
  p.ph = r == 2 ? int(pads[0]) : 0;
  p.pw = int(pads[r - 1]);
  p.cg = p.c / group;
  p.mg = p.m / group;
  nchw_strides(x, p.xs);
  nchw_strides(y, p.ys);
  const DataType dt = x.dtype;
  // Uploaded when a kernel is made (the builder makes one per timing, the
  // engine one at load); the tactics keep the constants alive till then.
  std::shared_ptr<const ir::Tensor> wc = n.in(1)->constant, bc = b ? n.in(2)->constant : nullptr;
  std::vector<Tactic> t;
  for (bool cf : {false, true}) {
    DeconvArgs q = p;
    q.chan_fastest = cf;
    t.push_back({cf ? "deconv_gather_nhwc" : "deconv_gather_nchw", [q, dt, wc, bc] {
                   return std::make_unique<DeconvKernel>(q, dt, upload_f32(*wc), bc ? upload_f32(*bc) : DevicePtr());
                 }});
  }
  return t;
}

}  // namespace

void register_conv_transpose_kernels(Registry& r) {
  OpTraits traits;
  traits.fp16_inputs = {0, 1, 2};
  traits.any_layout = true;
  traits.out_layout = OpTraits::kLikeInput0;
  r.add("ConvTranspose", deconv_tactics, traits);
}

}  // namespace kiln::cuda
