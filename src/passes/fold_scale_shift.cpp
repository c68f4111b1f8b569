// Per-channel affine ops by constants next to a Conv are folded into its
// weights and bias (arithmetic in float64, then cast to float32):
//
//   after:  Conv -> Mul/Div by s      W'[m] = W[m] * s[m],  b' = b * s
//           Conv -> Add/Sub c         b' = b + c  (bias created if absent)
//   before: Mul/Div by s -> Conv      W'[m, ci] = W[m, ci] * s[ci]
//           Add/Sub c -> Conv         b'[m] += sum over ci, k of W[m, ci, k] * c[ci]
//
// "Per channel" means a constant that broadcasts along the channel axis only:
// a scalar, [C,1,1], [1,C,1,1] (for NCHW) and so on, and that leaves the
// tensor's shape unchanged. A [C] constant aligns with the last (spatial)
// axis, so it is not per channel and is left alone.
//
// Not folded:
//   - into a Conv that already carries a fused `activation` (the activation
//     sits between the bias and anything after the Conv);
//   - Add/Sub before a Conv that pads: the zero padding of (x + c) is not
//     the padding of x shifted by c;
//   - c - y, c / y (not affine in y), and constants that are 0 (for Div) or
//     not finite (inf * 0 weights would give NaN where the original did not);
//   - when the intermediate tensor has another reader or is a graph output.
#include <cmath>

#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// Per-channel values of constant `c` broadcast against a tensor of dims `y`
// (channel axis 1), or false when `c` is not a per-channel constant of `y`.
bool per_channel(const ir::Tensor& c, const ir::Dims& y, std::vector<double>& vals) {
  if (c.dtype() != DataType::kFloat32 || y.size() < 3 || size_t(c.rank()) > y.size()) return false;
  const int64_t channels = y[1];
  const size_t lead = y.size() - size_t(c.rank());
  int64_t along = 1;  // c's extent on the channel axis
  for (size_t i = 0; i < size_t(c.rank()); ++i) {
    const int64_t d = c.dims()[i];
    if (lead + i == 1) {
      if (d != 1 && d != channels) return false;
      along = d;
    } else if (d != 1) {
      return false;
    }
  }
  std::vector<double> raw = c.to_double();
  for (double v : raw)
    if (!std::isfinite(v)) return false;
  vals.assign(size_t(channels), raw.empty() ? 0.0 : raw[0]);
  if (along == channels)
    for (int64_t k = 0; k < channels; ++k) vals[size_t(k)] = raw[size_t(k)];
  return true;
}

ir::Tensor to_f32(const std::vector<double>& v, const ir::Dims& dims) {
  return ir::Tensor::from_float(std::vector<float>(v.begin(), v.end()), dims);
}

// A Conv whose weight (and bias, if any) are float32 constants.
bool foldable_conv(const ir::Node& conv) {
  if (conv.op_type != "Conv" || !conv.domain.empty()) return false;
  const ir::Tensor* w = constant_of(conv.in(1));
  if (!w || w->dtype() != DataType::kFloat32 || w->rank() < 3) return false;
  if (conv.in(2) && !constant_of(conv.in(2))) return false;
  return conv.in(0) && conv.in(0)->dtype == DataType::kFloat32;
}

bool all_pads_zero(const ir::Node& conv) {
  if (conv.s("auto_pad", "NOTSET") != "NOTSET") return false;
  for (int64_t p : conv.ints("pads"))
    if (p != 0) return false;
  return true;
}

class FoldScaleShift : public RewriteRule {
 public:
  const char* name() const override { return "fold_scale_shift"; }
  std::vector<std::string> targets() const override { return {"Mul", "Add", "Sub", "Div"}; }

  bool apply(ir::Graph& g, ir::Node& op, PassContext& ctx) override {
    if (op.inputs.size() != 2 || op.outputs.size() != 1 || !op.outputs[0]) return false;
    ir::Value* a = op.inputs[0];
    ir::Value* b = op.inputs[1];
    if (!a || !b || op.outputs[0]->dtype != DataType::kFloat32) return false;
    // The data operand and the constant; Sub and Div only as y - c, y / c.
    ir::Value* y = nullptr;
    const ir::Tensor* c = nullptr;
    if (!a->is_constant() && b->is_constant()) {
      y = a;
      c = b->constant.get();
    } else if (a->is_constant() && !b->is_constant() && (op.op_type == "Mul" || op.op_type == "Add")) {
      y = b;
      c = a->constant.get();
    } else {
      return false;
    }
    if (!y->has_shape || op.outputs[0]->dims != y->dims) return false;
    std::vector<double> vals;
    if (!per_channel(*c, y->dims, vals)) return false;
    if (op.op_type == "Div") {
      for (double& v : vals) {
        if (v == 0.0) return false;
        v = 1.0 / v;
      }
    } else if (op.op_type == "Sub") {
      for (double& v : vals) v = -v;
    }
    const bool scale = op.op_type == "Mul" || op.op_type == "Div";
    if (fold_after(g, op, y, vals, scale, ctx)) return true;
    return fold_before(g, op, y, vals, scale, ctx);
  }

 private:
  // Conv -> op: the op's output becomes the Conv's.
  static bool fold_after(ir::Graph& g, ir::Node& op, ir::Value* y, const std::vector<double>& vals, bool scale,
                         PassContext& ctx) {
    ir::Node* conv = y->producer;
    if (!conv || !foldable_conv(*conv) || conv->has("activation") || conv->outputs.size() != 1) return false;
    if (sole_consumer(g, y) != &op) return false;
    if (scale && conv->in(3)) return false;  // a residual input would need scaling too
    const ir::Tensor& w = *constant_of(conv->in(1));
    const int64_t m = w.dims()[0];
    if (int64_t(vals.size()) != m) return false;
    std::vector<double> bias(size_t(m), 0.0);
    if (const ir::Tensor* bt = constant_of(conv->in(2))) {
      bias = bt->to_double();
      if (int64_t(bias.size()) != m) return false;
    }
    const char* what;
    if (scale) {
      std::vector<double> wv = w.to_double();
      const int64_t per = w.numel() / m;
      for (int64_t i = 0; i < w.numel(); ++i) wv[size_t(i)] *= vals[size_t(i / per)];
      for (int64_t k = 0; k < m; ++k) bias[size_t(k)] *= vals[size_t(k)];
      conv->inputs[1] = g.add_constant(g.unique_name(conv->name + ".weight_scaled"), to_f32(wv, w.dims()));
      if (conv->in(2)) conv->inputs[2] = g.add_constant(g.unique_name(conv->name + ".bias_scaled"), to_f32(bias, {m}));
      what = "scale folded into weights";
    } else {
      for (int64_t k = 0; k < m; ++k) bias[size_t(k)] += vals[size_t(k)];
      if (conv->inputs.size() < 3) conv->inputs.resize(3);  // keep a residual input 3
      conv->inputs[2] = g.add_constant(g.unique_name(conv->name + ".bias_shifted"), to_f32(bias, {m}));
      what = "shift folded into bias";
    }
    ir::Value* out = op.outputs[0];
    absorb(*conv, op);
    g.remove_node(&op);
    conv->outputs[0] = out;
    out->producer = conv;
    ctx.note(fused_label(*conv) + " -> Conv (" + what + ")");
    return true;
  }

  // op -> Conv: the Conv reads the op's data input directly.
  static bool fold_before(ir::Graph& g, ir::Node& op, ir::Value* x, const std::vector<double>& vals, bool scale,
                          PassContext& ctx) {
    ir::Value* z = op.outputs[0];
    ir::Node* conv = sole_consumer(g, z);
    if (!conv || !foldable_conv(*conv) || conv->inputs[0] != z) return false;
    for (size_t k = 1; k < conv->inputs.size(); ++k)
      if (conv->inputs[k] == z) return false;
    if (!scale && !all_pads_zero(*conv)) return false;
    const ir::Tensor& w = *constant_of(conv->in(1));
    const int64_t m = w.dims()[0], cg = w.dims()[1], group = conv->i("group", 1);
    if (group < 1 || m % group != 0 || cg * group != int64_t(vals.size())) return false;
    const int64_t inner = w.numel() / (m * cg), m_per_group = m / group;
    // Input channel (of the Conv's input) that weight element i multiplies.
    auto in_channel = [&](int64_t i) {
      const int64_t oc = i / (cg * inner), ci = (i / inner) % cg;
      return size_t((oc / m_per_group) * cg + ci);
    };
    std::vector<double> wv = w.to_double();
    const char* what;
    if (scale) {
      for (int64_t i = 0; i < w.numel(); ++i) wv[size_t(i)] *= vals[in_channel(i)];
      conv->inputs[1] = g.add_constant(g.unique_name(conv->name + ".weight_scaled"), to_f32(wv, w.dims()));
      what = "input scale folded into weights";
    } else {
      std::vector<double> bias(size_t(m), 0.0);
      if (const ir::Tensor* bt = constant_of(conv->in(2))) {
        bias = bt->to_double();
        if (int64_t(bias.size()) != m) return false;
      }
      for (int64_t i = 0; i < w.numel(); ++i) bias[size_t(i / (cg * inner))] += wv[size_t(i)] * vals[in_channel(i)];
      if (conv->inputs.size() < 3) conv->inputs.resize(3);  // keep a residual input 3
      conv->inputs[2] = g.add_constant(g.unique_name(conv->name + ".bias_shifted"), to_f32(bias, {m}));
      what = "input shift folded into bias";
    }
    conv->inputs[0] = x;
    absorb_upstream(*conv, op);
    g.remove_node(&op);
    ctx.note(fused_label(*conv) + " -> Conv (" + what + ")");
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> make_fold_scale_shift() { return std::make_unique<FoldScaleShift>(); }

}  // namespace kiln::passes
