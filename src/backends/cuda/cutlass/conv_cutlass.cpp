// Conv tactics "cutlass_sm90:<tile>": CUTLASS implicit-GEMM convolutions on
// Hopper tensor cores (kernels in conv_sm90_<tile>.cu, see conv_cutlass.h).
//
// Offered for a dense (group 1) 2-D Conv in FP16 whose X, Y and residual Z
// are channels-last, with constant weights (repacked to KRSC at load), C and
// K multiples of 8 (TMA moves 16-byte rows), strides up to 8 (TMA im2col's
// limit), activation none, Relu or Clip, on a compute capability 9.0 GPU
// (the kernels are sm_90a code). Bias, residual and activation run in the
// kernel's epilogue: act(conv + B + Z), the order of the CPU reference. Each
// tile shape CUTLASS accepts for the exact problem (can_implement) is one
// tactic; the builder times them against cuDNN and cuBLASLt.
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "backends/cuda/common.h"
#include "backends/cuda/cutlass/conv_cutlass.h"
#include "backends/cuda/epilogue.h"
#include "backends/cuda/kernel.h"
#include "kiln/error.h"
#include "kiln/types.h"

namespace kiln::cuda {

namespace {

using cutlass_sm90::ConvOperands;
using cutlass_sm90::ConvShape;
using cutlass_sm90::ConvTile;

const std::vector<const ConvTile*>& tiles() {
  static const std::vector<const ConvTile*> t = {&cutlass_sm90::tile_128x128x64(), &cutlass_sm90::tile_128x64x64(),
                                                 &cutlass_sm90::tile_64x128x64()};
  return t;
}

// Channels-last bytes: NHWC, or a map whose H*W == 1 (same bytes either way).
bool channels_last(const ir::Value& v) {
  return v.dims.size() == 4 && (v.layout == ir::Layout::kNHWC || v.dims[2] * v.dims[3] == 1);
}

// The convolution as the kernels see it, or false with `why`.
bool plan_cutlass(const ir::Node& n, ConvShape& s, float& lo, float& hi, std::string& why) {
  const ir::Value* x = n.in(0);
  const ir::Value* w = n.in(1);
  const ir::Value* b = n.in(2);
  const ir::Value* z = n.in(3);
  const ir::Value* y = n.outputs.empty() ? nullptr : n.outputs[0];
  if (!x || !w || !y || x->dims.size() != 4 || w->dims.size() != 4 || y->dims.size() != 4)
    return why = "not a 2-D convolution", false;
  for (const ir::Value* v : {x, w, b, z, y})
    if (v && v->dtype != DataType::kFloat16) return why = "FP16 only", false;
  if (!constant_input(n, 1)) return why = "runtime weights", false;
  if (n.i("group", 1) != 1) return why = "grouped", false;
  if (!channels_last(*x) || !channels_last(*y) || (z && (!channels_last(*z) || z->dims != y->dims)))
    return why = "not channels-last", false;
  if (b && b->dims != ir::Dims{w->dims[0]}) return why = "bias is not one value per output channel", false;

  const Activation act = Activation::from_node(n);
  constexpr float inf = std::numeric_limits<float>::infinity();
  if (act.kind == Activation::kNone) {
    lo = -inf, hi = inf;
  } else if (act.kind == Activation::kRelu) {
    lo = 0.f, hi = inf;
  } else if (act.kind == Activation::kClip && !std::isnan(act.a) && !std::isnan(act.b)) {
    lo = act.a, hi = act.b;
  } else {
    return why = "fused activation " + act.name() + " (the epilogue clamps: none, Relu, Clip)", false;
  }

  const int64_t c = x->dims[1], k = w->dims[0];
  if (w->dims[1] != c || y->dims[1] != k || y->dims[0] != x->dims[0]) return why = "inconsistent shapes", false;
  if (c % 8 != 0 || k % 8 != 0) return why = "input and output channels must be multiples of 8", false;
  for (const ir::Value* v : {x, w, y})
    if (ir::numel_of(v->dims) == 0 || ir::numel_of(v->dims) >= INT_MAX)
      return why = "a tensor is empty or has 2^31 or more elements", false;

  const std::vector<int64_t> ks = n.ints("kernel_shape"), st = n.ints("strides"), dl = n.ints("dilations"),
                             pads = n.ints("pads");
  if (ks.size() != 2 || st.size() != 2 || dl.size() != 2 || pads.size() != 4)
    throw_internal(n.label() + ": window attributes were not made explicit by shape inference");
  if (ks[0] != w->dims[2] || ks[1] != w->dims[3]) return why = "kernel_shape differs from the weights", false;
  for (int i = 0; i < 2; ++i) {
    // TMA im2col traverses with element strides of at most 8.
    if (st[i] < 1 || st[i] > 8) return why = "strides above 8", false;
    // Beyond TMA im2col's offsets and corners anyway (CUTLASS's can_implement
    // refuses them); checked here so its int arithmetic cannot overflow.
    if (dl[i] < 1 || dl[i] > 255 || pads[i] < 0 || pads[i] > 256 || pads[2 + i] < 0 || pads[2 + i] > 256)
      return why = "dilations or pads beyond TMA im2col's range", false;
  }
  s.n = int(x->dims[0]);
  s.c = int(c);
  s.h = int(x->dims[2]);
  s.w = int(x->dims[3]);
  s.k = int(k);
  s.r = int(w->dims[2]);
  s.s = int(w->dims[3]);
  s.p = int(y->dims[2]);
  s.q = int(y->dims[3]);
  for (int i = 0; i < 2; ++i) {
    s.pad_lo[i] = int(pads[i]);
    s.pad_hi[i] = int(pads[2 + i]);
    s.stride[i] = int(st[i]);
    s.dil[i] = int(dl[i]);
  }
  s.has_bias = b != nullptr;
  s.has_z = z != nullptr;
  return true;
}

// Weights [K, C, R, S] (FP16, or FP32 converted) as FP16 KRSC.
DevicePtr upload_krsc(const ir::Tensor& t) {
  const ir::Dims& d = t.dims();
  const int64_t k = d[0], c = d[1], rs = d[2] * d[3];
  std::vector<uint16_t> out(size_t(k * c * rs));
  const bool half = t.dtype() == DataType::kFloat16;
  if (!half && t.dtype() != DataType::kFloat32)
    throw_internal(std::string("cutlass_sm90: weights of dtype ") + dtype_name(t.dtype()));
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t cc = 0; cc < c; ++cc)
      for (int64_t p = 0; p < rs; ++p) {
        const size_t from = size_t((kk * c + cc) * rs + p);
        out[size_t((kk * rs + p) * c + cc)] = half ? t.data<uint16_t>()[from] : float_to_half(t.data<float>()[from]);
      }
  return upload(out.data(), out.size() * sizeof(uint16_t));
}

class CutlassConvKernel : public Kernel {
 public:
  CutlassConvKernel(const ConvTile& tile, const ConvShape& s, const ir::Tensor& w, float lo, float hi)
      : tile_(tile), s_(s), lo_(lo), hi_(hi) {
    const std::string why = tile_.check(s_);
    if (!why.empty()) throw_internal(std::string("cutlass_sm90:") + tile_.name() + ": " + why);
    ws_ = tile_.workspace_bytes(s_);
    w_ = upload_krsc(w);
    tile_.prepare();
  }

  size_t workspace_bytes() const override { return ws_; }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    ConvOperands o;
    o.x = in[0];
    o.w = w_.get();
    o.bias = s_.has_bias ? in[2] : nullptr;
    o.z = s_.has_z ? in[3] : nullptr;
    o.y = out[0];
    o.lo = lo_;
    o.hi = hi_;
    tile_.launch(s_, o, ws_ ? l.workspace : nullptr, l.stream);
  }

 private:
  const ConvTile& tile_;
  ConvShape s_;
  float lo_, hi_;
  size_t ws_ = 0;
  DevicePtr w_;
};

std::vector<Tactic> cutlass_conv_tactics(const ir::Node& n, std::string* why) {
  ConvShape s;
  float lo = 0.f, hi = 0.f;
  std::string reason;
  if (!plan_cutlass(n, s, lo, hi, reason) || !current_device_is_sm90(reason)) {
    if (why) *why = "cutlass_sm90: " + reason;
    return {};
  }
  std::vector<Tactic> out;
  // The kernel outlives this call: it keeps the weight tensor, not the node.
  std::shared_ptr<const ir::Tensor> w = n.in(1)->constant;
  for (const ConvTile* t : tiles()) {
    const std::string refused = t->check(s);
    if (!refused.empty()) {
      reason = refused;
      continue;
    }
    out.push_back({std::string("cutlass_sm90:") + t->name(),
                   [t, s, w, lo, hi] { return std::unique_ptr<Kernel>(new CutlassConvKernel(*t, s, *w, lo, hi)); }});
  }
  if (out.empty() && why) *why = "cutlass_sm90: " + reason;
  return out;
}

}  // namespace

void register_conv_cutlass_kernels(Registry& r) { r.extend("Conv", cutlass_conv_tactics); }

void cutlass_sm90::reserve_shared_memory(const void* fn, int bytes, const std::string& who) {
  if (bytes < (48 << 10)) return;
  const cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw_internal(who + ": cannot reserve " + std::to_string(bytes) + " bytes of shared memory: " +
                   cudaGetErrorString(e));
  }
}

}  // namespace kiln::cuda
