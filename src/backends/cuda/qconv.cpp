// kiln::QConv tactics on the own kernels (qconv_direct.cu) and the plan every
// QConv tactic reads (see qconv.h). qconv_direct runs any QConv the shape
// inference accepts, so every node has a tactic; qconv_dp4a is offered when
// X is channels-last and C/group is a multiple of 4. Weights are repacked at
// load with K innermost; m[k] and the bias are uploaded as floats.
#include "backends/cuda/qconv.h"

#include <climits>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "backends/cuda/common.h"
#include "kiln/error.h"

namespace kiln::cuda {

namespace qconv {

namespace {

bool positive(float v) { return std::isfinite(v) && v > 0.f; }

bool float_out(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

// Product of the dims, or -1 when it would not fit in int64.
int64_t count(const ir::Dims& d) {
  int64_t n = 1;
  for (int64_t e : d) {
    if (e < 0 || (e > 0 && n > INT64_MAX / e)) return -1;
    n *= e;
  }
  return n;
}

}  // namespace

bool channels_last(const ir::Value& v) {
  return v.dims.size() == 4 && (v.layout == ir::Layout::kNHWC || v.dims[1] == 1 || v.dims[2] * v.dims[3] == 1);
}

bool read_plan(const ir::Node& n, Plan& p, std::string& why) {
  const ir::Value* x = n.in(0);
  const ir::Value* w = n.in(1);
  const ir::Value* b = n.in(2);
  const ir::Value* z = n.in(3);
  const ir::Value* y = n.outputs.empty() ? nullptr : n.outputs[0];
  if (!x || !w || !y || x->dims.size() != 4 || w->dims.size() != 4 || y->dims.size() != 4)
    return why = "not a 2-D convolution with X, W and Y", false;
  if (n.inputs.size() > 4 || n.outputs.size() != 1) return why = "expected at most 4 inputs and one output", false;
  if (x->dtype != DataType::kInt8) return why = std::string("X is ") + dtype_name(x->dtype) + ", not int8", false;
  if (!w->is_constant() || w->dtype != DataType::kInt8) return why = "W must be an int8 constant", false;
  if (y->dtype != DataType::kInt8 && !float_out(y->dtype))
    return why = std::string("output dtype ") + dtype_name(y->dtype) + " (int8, fp32 or fp16 only)", false;
  if (z && z->dtype != DataType::kInt8 && !float_out(z->dtype))
    return why = std::string("residual dtype ") + dtype_name(z->dtype) + " (int8, fp32 or fp16 only)", false;
  if (z && z->dims != y->dims) return why = "the residual's dims differ from the output's", false;

  p.n = x->dims[0], p.c = x->dims[1], p.h = x->dims[2], p.w = x->dims[3];
  p.k = w->dims[0], p.r = w->dims[2], p.s = w->dims[3];
  p.p = y->dims[2], p.q = y->dims[3];
  p.group = n.i("group", 1);
  if (p.group < 1 || p.c % p.group != 0 || p.k % p.group != 0 || w->dims[1] * p.group != p.c || y->dims[1] != p.k ||
      y->dims[0] != p.n)
    return why = "inconsistent channel counts or group", false;
  const std::vector<int64_t> ks = n.ints("kernel_shape"), st = n.ints("strides"), dl = n.ints("dilations"),
                             pads = n.ints("pads");
  if (ks.size() != 2 || st.size() != 2 || dl.size() != 2 || pads.size() != 4)
    return why = "window attributes were not made explicit by shape inference", false;
  if (ks[0] != p.r || ks[1] != p.s) return why = "kernel_shape differs from the weights", false;
  for (int i = 0; i < 2; ++i) {
    p.stride[i] = st[size_t(i)];
    p.dil[i] = dl[size_t(i)];
    p.pad[i] = pads[size_t(i)];
    p.pad_end[i] = pads[size_t(2 + i)];
    // Far beyond any real network; keeps every window coordinate in int.
    if (p.stride[i] < 1 || p.stride[i] > 65536 || p.dil[i] < 1 || p.dil[i] > 65536 || p.pad[i] < 0 ||
        p.pad[i] > 65536 || p.pad_end[i] < 0 || p.pad_end[i] > 65536)
      return why = "strides, dilations or pads out of range", false;
  }
  for (int64_t d : {p.n, p.c, p.h, p.w, p.k, p.r, p.s, p.p, p.q})
    if (d < 0 || d >= INT_MAX) return why = "a dimension of 2^31 or more", false;
  // int32 accumulation is exact while C/group * R * S * 127 * 128 < 2^31
  // (the shape inference's bound; weights are in [-127, 127]).
  if ((p.c / p.group) * p.r * p.s > 132104)
    return why = "more than 132104 products per output could overflow the int32 accumulator", false;
  for (const ir::Value* v : {x, y, z})
    if (v && count(v->dims) < 0) return why = "a tensor of 2^63 or more elements", false;

  const float x_scale = n.f("x_scale", 0.f);
  const std::vector<float> ws = n.floats("w_scales");
  if (!positive(x_scale)) return why = "x_scale must be a finite float > 0", false;
  if (ws.size() != size_t(p.k)) return why = "w_scales must hold one scale per output channel", false;
  p.m.resize(size_t(p.k));
  for (size_t k = 0; k < ws.size(); ++k) {
    if (!positive(ws[k])) return why = "w_scales must be finite floats > 0", false;
    p.m[k] = x_scale * ws[k];
  }
  p.has_z = z != nullptr;
  if (z) {
    p.z = z->dtype;
    if (z->dtype == DataType::kInt8) {
      p.z_scale = n.f("z_scale", 0.f);
      if (!positive(p.z_scale)) return why = "an int8 residual needs z_scale, a finite float > 0", false;
    }
  }
  p.y = y->dtype;
  if (p.y == DataType::kInt8) {
    p.y_scale = n.f("y_scale", 0.f);
    if (!positive(p.y_scale)) return why = "an int8 output needs y_scale, a finite float > 0", false;
  }
  p.bias.assign(size_t(p.k), 0.f);
  p.has_bias = b != nullptr;
  if (b) {
    const ir::Tensor* t = constant_input(n, 2);
    if (!t) return why = "runtime bias (B must be a constant)", false;
    if (t->dims() != ir::Dims{p.k}) return why = "B must hold one value per output channel", false;
    if (t->dtype() == DataType::kFloat32) std::memcpy(p.bias.data(), t->raw(), size_t(p.k) * sizeof(float));
    else if (t->dtype() == DataType::kFloat16)
      for (int64_t k = 0; k < p.k; ++k) p.bias[size_t(k)] = half_to_float(t->data<uint16_t>()[k]);
    else return why = std::string("B is ") + dtype_name(t->dtype()) + ", not float", false;
  }
  p.act = ir::FusedActivation::from_node(n);
  const std::vector<int64_t> xs = strides_of(*x), ys = strides_of(*y);
  const std::vector<int64_t> zs = z ? strides_of(*z) : std::vector<int64_t>(4, 0);
  for (int a = 0; a < 4; ++a) {
    p.xs[a] = xs[size_t(a)];
    p.ys[a] = ys[size_t(a)];
    p.zs[a] = zs[size_t(a)];
  }
  p.weights = w->constant;
  return true;
}

DirectArgs direct_args(const Plan& p) {
  DirectArgs a;
  a.n = p.n, a.c = p.c, a.h = p.h, a.w_ = p.w, a.k = p.k, a.p = p.p, a.q = p.q;
  a.r = int(p.r), a.s = int(p.s);
  a.cg = int(p.c / p.group), a.kg = int(p.k / p.group);
  a.stride_h = int(p.stride[0]), a.stride_w = int(p.stride[1]);
  a.dil_h = int(p.dil[0]), a.dil_w = int(p.dil[1]);
  a.pad_h = int(p.pad[0]), a.pad_w = int(p.pad[1]);
  for (int i = 0; i < 4; ++i) a.xs[i] = p.xs[i], a.zs[i] = p.zs[i], a.ys[i] = p.ys[i];
  a.wsk = 1, a.wsc = p.k;  // [R][S][C/group][K]
  a.z_kind = !p.has_z ? kZNone : p.z == DataType::kInt8 ? kZInt8 : p.z == DataType::kFloat16 ? kZHalf : kZFloat;
  a.y_kind = p.y == DataType::kInt8 ? kYInt8 : p.y == DataType::kFloat16 ? kYHalf : kYFloat;
  a.z_scale = p.z_scale, a.y_scale = p.y_scale;
  a.act = p.act;
  a.total = p.n * p.p * p.q * p.k;
  // Packed tensors: every offset is below the element count.
  const int64_t lim = int64_t(INT_MAX);
  const int64_t wn = p.k * (p.c / p.group) * p.r * p.s;
  a.small = a.total < lim && p.n * p.c * p.h * p.w < lim && wn < lim;
  return a;
}

namespace {

// Weights [K, C/g, R, S] with K innermost: int8 [R][S][C/g][K], or (words)
// int32 [R][S][C/g/4][K] whose bytes are 4 consecutive channels.
DevicePtr upload_weights(const Plan& p, bool words) {
  const int64_t cg = p.c / p.group, rs = p.r * p.s;
  const int8_t* src = p.weights->data<int8_t>();
  std::vector<int8_t> out(size_t(p.k * cg * rs));
  for (int64_t k = 0; k < p.k; ++k)
    for (int64_t c = 0; c < cg; ++c)
      for (int64_t t = 0; t < rs; ++t) {
        const int8_t v = src[(k * cg + c) * rs + t];
        const size_t to = words ? size_t(((t * (cg / 4) + c / 4) * p.k + k) * 4 + c % 4)
                                : size_t((t * cg + c) * p.k + k);
        out[to] = v;
      }
  return upload(out.data(), out.size());
}

class DirectKernel : public Kernel {
 public:
  DirectKernel(const Plan& p, bool dp4a) : dp4a_(dp4a), has_z_(p.has_z) {
    a_ = direct_args(p);
    w_ = upload_weights(p, dp4a);
    m_ = upload(p.m.data(), p.m.size() * sizeof(float));
    b_ = upload(p.bias.data(), p.bias.size() * sizeof(float));
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    DirectArgs a = a_;
    a.x = static_cast<const int8_t*>(in.at(0));
    a.w = w_.get();
    a.m = static_cast<const float*>(m_.get());
    a.bias = static_cast<const float*>(b_.get());
    a.z = has_z_ ? in.at(3) : nullptr;
    a.y = out.at(0);
    if (dp4a_) launch_dp4a(a, l.stream);
    else launch_direct(a, l.stream);
  }

 private:
  bool dp4a_, has_z_;
  DirectArgs a_;
  DevicePtr w_, m_, b_;
};

std::vector<Tactic> own_tactics(const ir::Node& n, std::string* why) {
  auto p = std::make_shared<Plan>();
  std::string reason;
  if (!read_plan(n, *p, reason)) {
    if (why) *why = reason;
    return {};
  }
  std::vector<Tactic> t;
  // The kernel outlives this call: it keeps the plan (and the weight tensor), not the node.
  t.push_back({"qconv_direct", [p] { return std::unique_ptr<Kernel>(new DirectKernel(*p, false)); }});
  if (p->xs[1] == 1 && (p->c / p->group) % 4 == 0)
    t.push_back({"qconv_dp4a", [p] { return std::unique_ptr<Kernel>(new DirectKernel(*p, true)); }});
  // wgmma: the same tiles on Hopper's warpgroup mma (sm_90a machine code).
  std::string not_sm90;
  const bool sm90 = current_device_is_sm90(not_sm90);
  for (bool wgmma : {false, true}) {
    if (wgmma && !sm90) continue;
    // Streamed weights pay an L2 read per tile: offered where resident ones
    // take enough shared memory to cost warps.
    for (bool stream : {false, true}) {
      if (stream && p->r * p->s * p->c < 512) continue;
      // Tiles of 128 or 256 pixels x 64 output channels; on wgmma also 128 x 128.
      for (const auto& [wm, tn] : {std::pair{1, 64}, std::pair{2, 64}, std::pair{1, 128}}) {
        const MmaShape shape{wm, stream, wgmma, tn};
        if (!mma_refusal(*p, shape).empty()) continue;
        t.push_back({std::string(wgmma ? "qconv_wgmma" : "qconv_mma") + ":m" + std::to_string(128 * shape.wm) +
                         (shape.tn == 128 ? "n128" : "") + (stream ? "s" : ""),
                     [p, shape] { return make_mma_kernel(*p, shape); }});
      }
    }
  }
  return t;
}

}  // namespace
}  // namespace qconv

void register_qconv_kernels(Registry& r) {
  // Not an FP16 op (no fp16_inputs): the output dtype is the node's `to`.
  // The own kernels index through strides; the library tactics want
  // channels-last X, Z and Y, which the builder gives QConv.
  OpTraits t;
  t.any_layout = true;
  t.prefers_nhwc = true;
  r.add("QConv", qconv::own_tactics, t, "kiln");
}

}  // namespace kiln::cuda
