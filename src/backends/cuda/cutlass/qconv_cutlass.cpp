// QConv tactics "cutlass_sm90_i8:<config>": CUTLASS INT8 implicit-GEMM
// convolutions on Hopper tensor cores (kernels in qconv_sm90_<config>.cu,
// see qconv_cutlass.h); and "cutlass_sm90_i8gemm:<config>": persistent GEMMs
// (qconv_gemm_<config>.cu) offered only for 1x1 convolutions with stride 1
// and no padding, the same conditions and epilogue otherwise. The builder
// times both kinds, so a GEMM tactic wins only where it is faster.
//
// Offered for a dense (group 1) QConv whose X, Y and residual Z are
// channels-last, C a multiple of 16 (TMA moves 16-byte rows of int8),
// strides up to 8 (TMA im2col's limit), activation none, Relu, LeakyRelu or
// Clip, on a compute capability 9.0 GPU, when a compiled configuration
// matches the output dtype (int8, fp16 or fp32) and the residual's (int8 Y:
// int8 Z; fp16 Y: int8 or fp16 Z; fp32 Y: fp32 Z; or none, then one tile per
// output dtype and tile shape). Weights are repacked to KRSC at load. K not a multiple
// of 16 (detection heads: 84, 126 channels) without a residual: weights, m
// and bias are padded with zero channels, the kernel writes the padded rows
// into the workspace and one copy crops them into Y. A launch whose pointers
// are not 16-byte aligned (a view into the activation arena) runs the own
// direct kernel on the same weights instead, with the same result up to the
// rounding of v / y_scale.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/cuda/common.h"
#include "backends/cuda/cutlass/qconv_cutlass.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/qconv.h"
#include "kiln/error.h"

namespace kiln::cuda {

namespace {

using cutlass_sm90::ConvShape;
using cutlass_sm90::QConvOperands;
using cutlass_sm90::QConvTile;

const std::vector<const QConvTile*>& tiles() {
  static const std::vector<const QConvTile*> t = {
      &cutlass_sm90::qtile_i8_128x128x64(), &cutlass_sm90::qtile_i8_128x64x64(),
      &cutlass_sm90::qtile_f16_128x128x64(), &cutlass_sm90::qtile_f16zf16_128x128x64(),
      &cutlass_sm90::qtile_f32_128x128x64(), &cutlass_sm90::qgemm_i8_128x128x128_pingpong(),
      &cutlass_sm90::qgemm_i8_128x64x64_pingpong(),
      &cutlass_sm90::qgemm_i8_256x128x128_coop(), &cutlass_sm90::qgemm_f16_128x128x128_pingpong()};
  return t;
}

// What the kernels need beyond the plan.
struct CutlassPlan {
  qconv::Plan q;
  ConvShape s;   // s.k: the padded output channels
  int64_t kp = 0;  // output channels the kernel computes (K rounded up to 16)
  int act = cutlass_sm90::kQActNone;
  float act_a = 0.f, act_b = 0.f;
};

bool plan_cutlass(const ir::Node& n, CutlassPlan& c, std::string& why) {
  qconv::Plan& p = c.q;
  if (!qconv::read_plan(n, p, why)) return false;
  if (p.group != 1) return why = "grouped", false;
  const ir::Value* z = n.in(3);
  if (!qconv::channels_last(*n.in(0)) || !qconv::channels_last(*n.outputs[0]) || (z && !qconv::channels_last(*z)))
    return why = "X, Y and Z must be channels-last", false;
  if (p.c % 16 != 0) return why = "input channels must be a multiple of 16", false;
  c.kp = (p.k + 15) / 16 * 16;
  if (c.kp != p.k && p.has_z) return why = "output channels not a multiple of 16 with a residual", false;
  for (const ir::Value* v : {n.in(0), n.in(1), n.outputs[0]})
    if (ir::numel_of(v->dims) == 0 || ir::numel_of(v->dims) >= INT_MAX)
      return why = "a tensor is empty or has 2^31 or more elements", false;
  if (p.n * p.p * p.q * c.kp >= INT_MAX) return why = "the padded output has 2^31 or more elements", false;
  for (int i = 0; i < 2; ++i) {
    if (p.stride[i] > 8) return why = "strides above 8", false;  // TMA im2col's traversal limit
    // Beyond TMA im2col's offsets and corners anyway; keeps CUTLASS's int math in range.
    if (p.dil[i] > 255 || p.pad[i] > 256 || p.pad_end[i] > 256)
      return why = "dilations or pads beyond TMA im2col's range", false;
  }
  switch (p.act.kind) {
    case ir::FusedActivation::kNone: c.act = cutlass_sm90::kQActNone; break;
    case ir::FusedActivation::kRelu: c.act = cutlass_sm90::kQActRelu; break;
    case ir::FusedActivation::kLeakyRelu: c.act = cutlass_sm90::kQActLeaky; break;
    case ir::FusedActivation::kClip: c.act = cutlass_sm90::kQActClip; break;
    default: return why = "fused activation " + p.act.name() + " (the epilogue takes none, Relu, LeakyRelu, Clip)", false;
  }
  c.act_a = p.act.a;
  c.act_b = p.act.b;
  ConvShape& s = c.s;
  s.n = int(p.n), s.h = int(p.h), s.w = int(p.w), s.c = int(p.c);
  s.k = int(c.kp), s.r = int(p.r), s.s = int(p.s), s.p = int(p.p), s.q = int(p.q);
  for (int i = 0; i < 2; ++i) {
    s.pad_lo[i] = int(p.pad[i]);
    s.pad_hi[i] = int(p.pad_end[i]);
    s.stride[i] = int(p.stride[i]);
    s.dil[i] = int(p.dil[i]);
  }
  s.has_bias = true;  // always a vector (zeros without B)
  s.has_z = p.has_z;
  return true;
}

// Weights [K, C, R, S] as int8 KRSC, zero rows up to kp output channels.
DevicePtr upload_krsc(const qconv::Plan& p, int64_t kp) {
  const int64_t rs = p.r * p.s;
  const int8_t* src = p.weights->data<int8_t>();
  std::vector<int8_t> out(size_t(kp * p.c * rs), 0);
  for (int64_t k = 0; k < p.k; ++k)
    for (int64_t c = 0; c < p.c; ++c)
      for (int64_t t = 0; t < rs; ++t) out[size_t((k * rs + t) * p.c + c)] = src[(k * p.c + c) * rs + t];
  return upload(out.data(), out.size());
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

DevicePtr upload_padded(std::vector<float> v, int64_t kp) {
  v.resize(size_t(kp), 0.f);
  return upload(v.data(), v.size() * sizeof(float));
}

class CutlassQConvKernel : public Kernel {
 public:
  CutlassQConvKernel(const QConvTile& tile, std::shared_ptr<const CutlassPlan> c) : tile_(tile), c_(std::move(c)) {
    const std::string why = tile_.check(c_->s);
    if (!why.empty()) throw_internal(std::string(tile_.family()) + ":" + tile_.name() + ": " + why);
    const qconv::Plan& p = c_->q;
    tile_ws_ = align256(tile_.workspace_bytes(c_->s));
    ws_ = tile_ws_;
    if (c_->kp != p.k) ws_ += size_t(p.n * p.p * p.q * c_->kp) * dtype_size(p.y);  // the padded rows
    w_ = upload_krsc(p, c_->kp);
    m_ = upload_padded(p.m, c_->kp);
    b_ = upload_padded(p.bias, c_->kp);
    direct_ = qconv::direct_args(p);
    direct_.wsk = p.r * p.s * p.c;  // KRSC
    direct_.wsc = 1;
    tile_.prepare();
  }

  size_t workspace_bytes() const override { return ws_; }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    const qconv::Plan& p = c_->q;
    const void* x = in.at(0);
    const void* z = p.has_z ? in.at(3) : nullptr;
    void* y = out.at(0);
    const bool padded = c_->kp != p.k;
    if (!aligned16(x) || (!padded && !aligned16(y)) || (z && !aligned16(z))) {
      qconv::DirectArgs a = direct_;
      a.x = static_cast<const int8_t*>(x);
      a.w = w_.get();
      a.m = static_cast<const float*>(m_.get());
      a.bias = static_cast<const float*>(b_.get());
      a.z = z;
      a.y = y;
      qconv::launch_direct(a, l.stream);
      return;
    }
    QConvOperands o;
    o.x = x;
    o.w = w_.get();
    o.m = static_cast<const float*>(m_.get());
    o.bias = static_cast<const float*>(b_.get());
    o.z = z;
    o.y = padded ? static_cast<uint8_t*>(l.workspace) + tile_ws_ : y;
    o.z_scale = !p.has_z ? 0.f : p.z == DataType::kInt8 ? p.z_scale : 1.f;
    o.inv_y_scale = 1.f / p.y_scale;
    o.act = c_->act;
    o.act_a = c_->act_a;
    o.act_b = c_->act_b;
    tile_.launch(c_->s, o, tile_ws_ ? l.workspace : nullptr, l.stream);
    if (padded) {
      qconv::CropArgs a;
      a.src = o.y;
      a.dst = y;
      a.n = p.n, a.k = p.k, a.kp = c_->kp, a.p = p.p, a.q = p.q;
      for (int i = 0; i < 4; ++i) a.ys[i] = p.ys[i];
      a.esize = int(dtype_size(p.y));
      qconv::launch_crop(a, l.stream);
    }
  }

 private:
  const QConvTile& tile_;
  std::shared_ptr<const CutlassPlan> c_;
  size_t tile_ws_ = 0, ws_ = 0;
  DevicePtr w_, m_, b_;
  qconv::DirectArgs direct_;
};

std::vector<Tactic> cutlass_qconv_tactics(const ir::Node& n, std::string* why) {
  auto c = std::make_shared<CutlassPlan>();
  std::string reason;
  if (!plan_cutlass(n, *c, reason) || !current_device_is_sm90(reason)) {
    if (why) *why = "cutlass_sm90_i8: " + reason;
    return {};
  }
  std::vector<Tactic> out;
  reason = std::string("no compiled kernel writes ") + dtype_name(c->q.y) +
           (c->q.has_z ? std::string(" with a ") + dtype_name(c->q.z) + " residual" : std::string());
  bool any_refused = false;
  std::vector<std::string> shapes;  // without Z, tiles differing only in their residual dtype are one tactic
  for (const QConvTile* t : tiles()) {
    if (t->out_dtype() != c->q.y || (c->q.has_z && t->z_dtype() != c->q.z)) continue;
    const std::string name = t->name();
    const std::string shape = std::string(t->family()) + name.substr(name.find('_'));
    if (!c->q.has_z) {
      if (std::find(shapes.begin(), shapes.end(), shape) != shapes.end()) continue;
      shapes.push_back(shape);
    }
    const std::string refused = t->check(c->s);
    if (!refused.empty()) {
      // The first refusal: a conv tile's says more than a GEMM's "not 1x1".
      if (!any_refused) reason = std::string(t->family()) + ":" + name + ": " + refused;
      any_refused = true;
      continue;
    }
    out.push_back({std::string(t->family()) + ":" + t->name(),
                   [t, c] { return std::unique_ptr<Kernel>(new CutlassQConvKernel(*t, c)); }});
  }
  if (out.empty() && why) *why = any_refused ? reason : "cutlass_sm90_i8: " + reason;
  return out;
}

}  // namespace

void register_qconv_cutlass_kernels(Registry& r) { r.extend("QConv", cutlass_qconv_tactics, "kiln"); }

}  // namespace kiln::cuda
