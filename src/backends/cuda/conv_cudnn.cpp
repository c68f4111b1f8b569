// Conv through cuDNN's legacy API, plus the own tactics of
// conv_depthwise.cu and conv_small_channel.cu. Node semantics: src/ir/ops/conv.cpp.
//
// Tactics, one per algorithm cuDNN's heuristics accept for the node's exact
// descriptors (workspace at most kWorkspaceCap; the builder times them):
//   cudnn_cba:<algo>  cudnnConvolutionBiasActivationForward: bias, residual Z
//                     and ReLU in cuDNN's own epilogue (activation none or
//                     Relu; none only with implicit_precomp_gemm, a cuDNN rule)
//   cudnn:<algo>      cudnnConvolutionForward, then one launch of the shared
//                     epilogue (epilogue.h) for bias, Z and any activation
//   dw_direct         conv_depthwise.cu
//   small_c_mma       conv_small_channel.cu (C <= 4 stems)
// Descriptors carry each value's real strides, so any mix of NCHW / NHWC
// works; weights use the filter format that matches X (KCRS for NCHW, KRSC
// for channels-last, repacked at load). FP32 runs with FMA math unless the
// node has allow_tf32=1; FP16 stores halves and accumulates in float on
// tensor cores. Pads cuDNN cannot express (begin != end) become symmetric
// ones: a longer end is a zero-extended copy of X, a shorter one a cropped
// copy of Y, both in the workspace.
#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>

#include "backends/cuda/common.h"
#include "backends/cuda/conv_depthwise.h"
#include "backends/cuda/conv_small_channel.h"
#include "backends/cuda/epilogue.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/libraries.h"
#include "kiln/error.h"

namespace kiln::cuda {

namespace {

constexpr size_t kWorkspaceCap = size_t(256) << 20;

const char* algo_name(cudnnConvolutionFwdAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "implicit_gemm";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "implicit_precomp_gemm";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "gemm";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "direct";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return "fft";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return "fft_tiling";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return "winograd";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return "winograd_nonfused";
    default: return "unknown";
  }
}

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

// A value as cuDNN sees it: rank >= 4 (1-D convolutions get H = 1).
struct NdView {
  std::vector<int64_t> dims, strides;
};

NdView nd_view(const ir::Value& v) {
  NdView r{v.dims, strides_of(v)};
  if (r.dims.size() == 3) {
    r.dims.insert(r.dims.begin() + 2, 1);
    r.strides.insert(r.strides.begin() + 2, r.strides[2] * r.dims[3]);
  }
  return r;
}

// Packed strides of `dims` (rank 4 or 5), channels-last when `nhwc`.
std::vector<int64_t> packed(const std::vector<int64_t>& dims, bool nhwc) {
  std::vector<int64_t> s(dims.size(), 1);
  if (nhwc && dims.size() == 4) return {dims[1] * dims[2] * dims[3], 1, dims[3] * dims[1], dims[1]};
  for (size_t k = dims.size(); k-- > 1;) s[k - 1] = s[k] * dims[k];
  return s;
}

// The 4-D view the epilogue takes; false if it cannot (a 3-D conv in a layout
// whose last two axes do not merge).
bool view4(const std::vector<int64_t>& d, const std::vector<int64_t>& s, int64_t dims[4], int64_t strides[4]) {
  std::vector<int64_t> dd = d, ss = s;
  if (dd.size() == 5) {
    if (ss[3] != ss[4] * dd[4]) return false;
    dd[3] *= dd[4];
    ss[3] = ss[4];
    dd.pop_back();
    ss.pop_back();
  }
  for (int k = 0; k < 4; ++k) {
    dims[k] = dd[size_t(k)];
    strides[k] = ss[size_t(k)];
  }
  return true;
}

std::vector<int> to_int(const std::vector<int64_t>& v) { return std::vector<int>(v.begin(), v.end()); }

// Everything the cuDNN kernels need, read from the node while listing tactics.
struct ConvPlan {
  bool half = false;
  std::vector<int64_t> xdims, xstr, ydims, ystr, zdims, zstr, wdims;  // as cuDNN sees them
  std::vector<int> pads, strides, dils;
  int groups = 1;
  cudnnTensorFormat_t wfmt = CUDNN_TENSOR_NCHW;
  std::shared_ptr<const ir::Tensor> wconst;  // repacked to KRSC at load when wfmt is NHWC
  bool has_bias = false, has_z = false;
  int64_t k = 0;
  Activation act;
  cudnnMathType_t math = CUDNN_FMA_MATH;
  bool fp32_tensor_ok = false;  // allow_tf32
  // Pads cuDNN cannot express: X copied zero-extended, Y written bigger then cropped.
  bool xpad = false, crop = false;
  Epilogue xpad_epi;  // X -> padded copy
  size_t xpad_bytes = 0, ytmp_bytes = 0;
  Epilogue epi;       // the unfused epilogue (conv result -> Y)
  bool need_epi = false;
  Epilogue epi_cba;   // after cuDNN's fused call into the temporary: crop, plus Z when cuDNN could not add it
  std::shared_ptr<const ir::Tensor> bconst;  // constant bias (padded at load when kpad)
  bool z_like_y = false;  // Z has Y's strides (cuDNN's fused residual wants that)
  int64_t max_kernel = 1;
  int64_t kpad = 0;  // >0: output channels padded to this many (weights zero-filled), Y cropped from a temporary
};

cudnnDataType_t dt(const ConvPlan& p) { return p.half ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT; }

// Descriptors for one plan; the conv descriptor's math type is per tactic.
struct Descs {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, z = nullptr, b = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnActivationDescriptor_t act = nullptr;

  Descs(const ConvPlan& p, cudnnMathType_t math) {
    try {
      auto tensor = [&](cudnnTensorDescriptor_t* d, const std::vector<int64_t>& dims, const std::vector<int64_t>& st) {
        KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(d));
        std::vector<int> di = to_int(dims), si = to_int(st);
        KILN_CUDNN_CHECK(cudnnSetTensorNdDescriptor(*d, dt(p), int(di.size()), di.data(), si.data()));
      };
      tensor(&x, p.xdims, p.xstr);
      tensor(&y, p.ydims, p.ystr);
      if (p.has_z) tensor(&z, p.zdims, p.zstr);
      std::vector<int64_t> bd(p.ydims.size(), 1);
      bd[1] = p.kpad ? p.kpad : p.k;
      tensor(&b, bd, packed(bd, false));
      KILN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
      std::vector<int> wd = to_int(p.wdims);
      KILN_CUDNN_CHECK(cudnnSetFilterNdDescriptor(w, dt(p), p.wfmt, int(wd.size()), wd.data()));
      KILN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
      KILN_CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(conv, int(p.pads.size()), p.pads.data(), p.strides.data(),
                                                       p.dils.data(), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      KILN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, p.groups));
      KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, math));
      KILN_CUDNN_CHECK(cudnnCreateActivationDescriptor(&act));
      KILN_CUDNN_CHECK(cudnnSetActivationDescriptor(
          act, p.act.kind == Activation::kRelu ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY,
          CUDNN_PROPAGATE_NAN, 0.0));
    } catch (...) {
      release();
      throw;
    }
  }
  ~Descs() { release(); }
  Descs(const Descs&) = delete;
  Descs& operator=(const Descs&) = delete;

 private:
  void release() {
    if (act) cudnnDestroyActivationDescriptor(act);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    for (cudnnTensorDescriptor_t t : {x, y, z, b})
      if (t) cudnnDestroyTensorDescriptor(t);
    act = nullptr, conv = nullptr, w = nullptr, x = y = z = b = nullptr;
  }
};

// Fills `p` from the node; returns false with `why` when cuDNN cannot run it.
bool plan_conv(const ir::Node& n, ConvPlan& p, std::string& why, int64_t kpad = 0) {
  const ir::Value& x = *n.in(0);
  const ir::Value& w = *n.in(1);
  const ir::Value& y = *n.outputs[0];
  if (x.dtype != DataType::kFloat32 && x.dtype != DataType::kFloat16) return why = "input is not fp32 / fp16", false;
  for (const ir::Value* v : {n.in(1), n.in(2), n.in(3)})
    if (v && v->dtype != x.dtype) return why = "inputs differ in dtype", false;
  const size_t r = x.dims.size() - 2;
  if (r < 1 || r > 3) return why = "cuDNN takes 1-D, 2-D and 3-D convolutions", false;
  for (const ir::Value* v : {&x, &y, static_cast<const ir::Value*>(n.in(3))})
    if (v && ir::numel_of(v->dims) >= INT_MAX) return why = "a tensor has 2^31 or more elements", false;
  p.half = x.dtype == DataType::kFloat16;
  p.groups = int(n.i("group", 1));
  p.k = w.dims[0];
  p.act = Activation::from_node(n);
  p.has_bias = n.in(2) != nullptr;
  p.has_z = n.in(3) != nullptr;
  p.fp32_tensor_ok = n.i("allow_tf32", 0) != 0;
  p.math = p.half ? CUDNN_TENSOR_OP_MATH : p.fp32_tensor_ok ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;

  const std::vector<int64_t> ks = n.ints("kernel_shape"), st = n.ints("strides"), dl = n.ints("dilations"),
                             pads = n.ints("pads");
  if (ks.size() != r || st.size() != r || dl.size() != r || pads.size() != 2 * r)
    throw_internal(n.label() + ": window attributes were not made explicit by shape inference");
  // 1-D convolutions run as 2-D with H = 1.
  const size_t sr = std::max<size_t>(r, 2), off = sr - r;
  for (int64_t e : ks) p.max_kernel = std::max(p.max_kernel, e);
  p.pads.assign(sr, 0);
  p.strides.assign(sr, 1);
  p.dils.assign(sr, 1);
  std::vector<int64_t> ext(sr, 0);  // X zero-extension per spatial axis
  for (size_t i = 0; i < r; ++i) {
    if (st[i] > INT_MAX || dl[i] > INT_MAX || pads[i] > INT_MAX || pads[r + i] > INT_MAX)
      return why = "window attributes exceed cuDNN's int range", false;
    p.pads[off + i] = int(pads[i]);
    p.strides[off + i] = int(st[i]);
    p.dils[off + i] = int(dl[i]);
    ext[off + i] = std::max<int64_t>(0, pads[r + i] - pads[i]);
  }
  const NdView xv = nd_view(x), yv = nd_view(y);
  const bool x_nhwc = x.layout == ir::Layout::kNHWC && x.dims.size() == 4;
  const bool y_nhwc = y.layout == ir::Layout::kNHWC && y.dims.size() == 4;
  p.xdims = xv.dims;
  p.xstr = xv.strides;
  for (size_t i = 0; i < sr; ++i) p.xdims[2 + i] += ext[i];
  p.xpad = p.xdims != xv.dims;
  if (p.xpad) p.xstr = packed(p.xdims, x_nhwc);
  // cuDNN's output extents with symmetric pads; larger than Y when an end pad was shorter.
  p.ydims = yv.dims;
  for (size_t i = 0; i < sr; ++i) {
    const int64_t dk = ((i < off ? 1 : ks[i - off]) - 1) * p.dils[i] + 1;
    p.ydims[2 + i] = (p.xdims[2 + i] + 2 * int64_t(p.pads[i]) - dk) / p.strides[i] + 1;
  }
  if (kpad) p.ydims[1] = p.kpad = kpad;
  p.crop = p.ydims != yv.dims;
  p.ystr = p.crop ? packed(p.ydims, y_nhwc) : yv.strides;
  if ((p.xpad || p.crop) && x.dims.size() == 5) return why = "asymmetric pads on a 3-D convolution", false;
  if (ir::numel_of(p.xdims) >= INT_MAX || ir::numel_of(p.ydims) >= INT_MAX)
    return why = "a padded tensor has 2^31 or more elements", false;
  const size_t es = p.half ? 2 : 4;
  if (p.xpad) {
    p.xpad_bytes = align256(size_t(ir::numel_of(p.xdims)) * es);
    p.xpad_epi.dtype = x.dtype;
    view4(xv.dims, xv.strides, p.xpad_epi.src_dims, p.xpad_epi.src_strides);
    view4(p.xdims, p.xstr, p.xpad_epi.dims, p.xpad_epi.dst_strides);
  }
  if (p.crop) p.ytmp_bytes = align256(size_t(ir::numel_of(p.ydims)) * es);

  // Weights: KCRS, or KRSC when X is channels-last (a runtime W keeps its own layout).
  p.wdims = w.dims;
  if (kpad) p.wdims[0] = kpad;
  if (r == 1) p.wdims.insert(p.wdims.begin() + 2, 1);
  p.wconst = w.constant;
  const bool w_nhwc = p.wconst ? x_nhwc : (w.layout == ir::Layout::kNHWC && w.dims.size() == 4);
  p.wfmt = w_nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;

  if (const ir::Value* z = n.in(3)) {
    NdView zv = nd_view(*z);
    p.zdims = zv.dims;
    p.zstr = zv.strides;
    p.z_like_y = !p.crop && zv.strides == yv.strides;
  }
  // The unfused epilogue: conv result (Y, or the bigger temporary) -> Y.
  p.epi.dtype = x.dtype;
  if (!view4(yv.dims, yv.strides, p.epi.dims, p.epi.dst_strides)) return why = "output layout", false;
  int64_t sd[4];
  if (!view4(p.ydims, p.ystr, sd, p.epi.src_strides)) return why = "output layout", false;
  for (int a = 0; a < 4; ++a) p.epi.src_dims[a] = p.epi.dims[a];
  if (p.has_z) {
    int64_t zd[4];
    if (!view4(p.zdims, p.zstr, zd, p.epi.z_strides)) return why = "residual layout", false;
    p.epi.has_z = true;
  }
  p.epi_cba = p.epi;  // bias and ReLU already applied by cuDNN
  p.epi.bias_axis = p.has_bias ? 1 : -1;
  p.epi.act = p.act;
  p.need_epi = !p.epi.is_identity();
  p.bconst = p.has_bias ? n.in(2)->constant : nullptr;
  return true;
}

// Weights as KRSC (the NHWC filter format) or KCRS, with `kout` >= K output
// channels (the extra ones zero). Element bytes move as they are.
DevicePtr upload_weights(const ir::Tensor& t, bool krsc, int64_t kout) {
  const ir::Dims& d = t.dims();
  const int64_t k = d[0], c = d[1];
  int64_t sp = 1;
  for (size_t a = 2; a < d.size(); ++a) sp *= d[a];
  const size_t es = dtype_size(t.dtype());
  std::vector<uint8_t> out(size_t(kout * c * sp) * es, 0);
  const auto* src = static_cast<const uint8_t*>(t.raw());
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t cc = 0; cc < c; ++cc)
      for (int64_t s = 0; s < sp; ++s) {
        const int64_t to = krsc ? (kk * sp + s) * c + cc : (kk * c + cc) * sp + s;
        std::memcpy(&out[size_t(to) * es], src + size_t((kk * c + cc) * sp + s) * es, es);
      }
  return upload(out.data(), out.size());
}

// Guards the query handle below (tactic listing and kernel creation may run on several threads).
std::mutex& query_mutex() {
  static std::mutex m;
  return m;
}

class CudnnConvKernel : public Kernel {
 public:
  CudnnConvKernel(const ConvPlan& p, cudnnConvolutionFwdAlgo_t algo, cudnnMathType_t math, bool fused)
      : p_(p), d_(p, math), algo_(algo), fused_(fused) {
    {
      std::lock_guard<std::mutex> lock(query_mutex());
      KILN_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle(), d_.x, d_.w, d_.conv, d_.y, algo_, &algo_ws_));
    }
    if (p_.wconst && (p_.wfmt == CUDNN_TENSOR_NHWC || p_.kpad))
      w_ = upload_weights(*p_.wconst, p_.wfmt == CUDNN_TENSOR_NHWC, p_.kpad ? p_.kpad : p_.k);
    // cuDNN's fused call takes a bias even when the node has none, and one
    // per padded channel.
    if (fused_ && (!p_.has_bias || p_.kpad)) {
      const size_t es = p_.half ? 2 : 4;
      std::vector<uint8_t> b(size_t(p_.kpad ? p_.kpad : p_.k) * es, 0);
      if (p_.has_bias) std::memcpy(b.data(), p_.bconst->raw(), p_.bconst->nbytes());
      own_bias_ = upload(b.data(), b.size());
    }
  }

  size_t workspace_bytes() const override { return align256(algo_ws_) + p_.xpad_bytes + p_.ytmp_bytes; }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    auto* ws = static_cast<uint8_t*>(l.workspace);
    void* xpad = p_.xpad ? ws + align256(algo_ws_) : nullptr;
    void* ytmp = p_.crop ? ws + align256(algo_ws_) + p_.xpad_bytes : nullptr;
    const void* x = in[0];
    const void* w = w_ ? w_.get() : in[1];
    const void* bias = own_bias_ ? own_bias_.get() : p_.has_bias ? in[2] : nullptr;
    const void* z = p_.has_z ? in[3] : nullptr;
    void* y = out[0];
    if (xpad) {
      p_.xpad_epi.launch(x, xpad, nullptr, nullptr, l.stream);
      x = xpad;
    }
    const float one = 1.f, zero = 0.f;
    void* dst = ytmp ? ytmp : y;
    if (fused_) {
      // Z goes to cuDNN unless the result is cropped afterwards (then the crop adds it).
      const bool z_in_cudnn = p_.has_z && !ytmp;
      const float alpha2 = z_in_cudnn ? 1.f : 0.f;
      KILN_CUDNN_CHECK(cudnnConvolutionBiasActivationForward(
          l.libs->cudnn, &one, d_.x, x, d_.w, w, d_.conv, algo_, ws, algo_ws_, &alpha2, z_in_cudnn ? d_.z : d_.y,
          z_in_cudnn ? z : dst, d_.b, bias, d_.act, d_.y, dst));
      if (ytmp) p_.epi_cba.launch(ytmp, y, nullptr, z, l.stream);
      return;
    }
    KILN_CUDNN_CHECK(cudnnConvolutionForward(l.libs->cudnn, &one, d_.x, x, d_.w, w, d_.conv, algo_, ws, algo_ws_,
                                             &zero, d_.y, dst));
    if (p_.need_epi) p_.epi.launch(dst, y, bias, z, l.stream);
  }

  // The handle that serves queries made outside any execution context.
  static cudnnHandle_t handle() {
    static cudnnHandle_t h = [] {
      cudnnHandle_t c = nullptr;
      KILN_CUDNN_CHECK(cudnnCreate(&c));
      return c;
    }();
    return h;
  }

 private:
  ConvPlan p_;
  Descs d_;
  cudnnConvolutionFwdAlgo_t algo_;
  bool fused_;
  size_t algo_ws_ = 0;
  DevicePtr w_, own_bias_;
};

// Does nothing: the output is empty.
class EmptyKernel : public Kernel {
 public:
  void enqueue(const std::vector<const void*>&, const std::vector<void*>&, const Launch&) const override {}
};

// Adds the cuDNN tactics for plan `p` ("cudnn<tag>:<algo>", and
// "cudnn_cba<tag>:<algo>" where cuDNN's fused call applies).
void add_cudnn_tactics(const ConvPlan& p, const std::string& tag, std::vector<Tactic>& out, std::string& why) {
  std::lock_guard<std::mutex> lock(query_mutex());
  std::unique_ptr<Descs> dp;
  try {
    dp.reset(new Descs(p, p.math));
  } catch (const Error& e) {
    // cuDNN refuses the descriptors (e.g. a layout mix it has no kernel for): no cuDNN tactic.
    why = std::string("cuDNN rejects the descriptors: ") + e.what();
    return;
  }
  Descs& d = *dp;
  cudnnHandle_t h = CudnnConvKernel::handle();
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int count = 0;
  if (cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count,
                                             perf) != CUDNN_STATUS_SUCCESS)
    count = 0;
  std::vector<bool> seen(CUDNN_CONVOLUTION_FWD_ALGO_COUNT, false);
  const bool fusable_act = p.act.kind == Activation::kNone || p.act.kind == Activation::kRelu;
  const bool something_to_fuse = p.has_bias || p.has_z || p.act.kind == Activation::kRelu;
  const size_t before = out.size();
  for (int i = 0; i < count; ++i) {
    const cudnnConvolutionFwdAlgoPerf_t& pf = perf[i];
    if (pf.status != CUDNN_STATUS_SUCCESS || pf.algo < 0 || pf.algo >= CUDNN_CONVOLUTION_FWD_ALGO_COUNT ||
        seen[size_t(pf.algo)])
      continue;
    // FP32 without allow_tf32 must not take a tensor-core (TF32) variant.
    cudnnMathType_t math = pf.mathType;
    if (!p.half && !p.fp32_tensor_ok && math != CUDNN_DEFAULT_MATH && math != CUDNN_FMA_MATH) continue;
    if (!p.half && !p.fp32_tensor_ok) math = CUDNN_FMA_MATH;
    size_t ws = 0;
    KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, math));
    if (cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y, pf.algo, &ws) != CUDNN_STATUS_SUCCESS ||
        ws > kWorkspaceCap)
      continue;
    seen[size_t(pf.algo)] = true;
    // Non-fused Winograd on kernels above 3x3 misses fp32 parity (1e-3 measured on 5x5).
    if (!p.half && pf.algo == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED && p.max_kernel > 3) continue;
    const std::string name = algo_name(pf.algo);
    const cudnnConvolutionFwdAlgo_t algo = pf.algo;
    // cuDNN's fused call: ReLU or none (none only with implicit_precomp_gemm).
    // A cropped result gets Z from the crop, after cuDNN's ReLU: so Z and ReLU
    // together only without a crop; a padded bias must be known at load.
    const bool z_ok = !p.has_z || (p.crop ? p.act.kind == Activation::kNone : p.z_like_y);
    const bool cba = fusable_act && something_to_fuse && z_ok && (!p.kpad || !p.has_bias || p.bconst) &&
                     (p.act.kind == Activation::kRelu || algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM);
    if (cba)
      out.push_back({"cudnn_cba" + tag + ":" + name,
                     [p, algo, math] { return std::unique_ptr<Kernel>(new CudnnConvKernel(p, algo, math, true)); }});
    out.push_back({"cudnn" + tag + ":" + name,
                   [p, algo, math] { return std::unique_ptr<Kernel>(new CudnnConvKernel(p, algo, math, false)); }});
  }
  if (out.size() == before) why = "cuDNN offers no algorithm for these shapes";
}

std::vector<Tactic> conv_tactics(const ir::Node& n, std::string* why) {
  std::string reason;
  const ir::Value* x = n.in(0);
  const ir::Value* w = n.in(1);
  if (!x || !w || n.outputs.empty() || !n.outputs[0]) {
    if (why) *why = "missing input or output";
    return {};
  }
  if (ir::numel_of(n.outputs[0]->dims) == 0)
    return {Tactic{"empty", [] { return std::unique_ptr<Kernel>(new EmptyKernel()); }}};
  std::vector<Tactic> out = depthwise_tactics(n, &reason);
  std::string dw_why = reason;
  for (Tactic& t : small_channel_tactics(n, nullptr)) out.push_back(std::move(t));
  ConvPlan p;
  if (ir::numel_of(x->dims) == 0) {
    reason = "empty input";
  } else if (plan_conv(n, p, reason)) {
    add_cudnn_tactics(p, "", out, reason);
    // FP16 tensor-core kernels want output channels in multiples of 8; odd
    // counts (detection heads: 819, 546, 36) can run twice as fast padded,
    // even with the crop.
    ConvPlan padded;
    std::string unused;
    if (p.half && p.groups == 1 && p.k % 8 != 0 && w->constant && x->dims.size() == 4 &&
        plan_conv(n, padded, unused, (p.k + 7) / 8 * 8))
      add_cudnn_tactics(padded, "_padk", out, unused);
  }
  if (out.empty() && why) *why = reason + (dw_why.empty() ? "" : "; " + dw_why);
  return out;
}

}  // namespace

void register_conv_kernels(Registry& r) {
  OpTraits t;
  t.fp16_inputs = {0, 1, 2, 3};
  t.any_layout = true;
  t.prefers_nhwc = true;
  t.out_layout = OpTraits::kLikeInput0;
  r.add("Conv", conv_tactics, t);
}

}  // namespace kiln::cuda
