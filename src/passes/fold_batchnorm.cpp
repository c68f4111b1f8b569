// BatchNormalization after Conv / ConvTranspose / Gemm is folded into that
// layer's weights and bias. The arithmetic is done in float64, then cast:
//   s = gamma / sqrt(var + eps);  W' = W * s (per output channel);
//   b' = (b - mean) * s + beta.
#include <cmath>

#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {
std::vector<double> as_f64(const ir::Tensor& t) { return t.to_double(); }

ir::Tensor to_f32(const std::vector<double>& v, const ir::Dims& dims) {
  std::vector<float> f(v.begin(), v.end());
  return ir::Tensor::from_float(f, dims);
}

class FoldBatchNorm : public RewriteRule {
 public:
  const char* name() const override { return "fold_batchnorm"; }
  std::vector<std::string> targets() const override { return {"BatchNormalization"}; }

  bool apply(ir::Graph& g, ir::Node& bn, PassContext& ctx) override {
    // Cheap structural checks first.
    ir::Value* x = bn.in(0);
    if (!x || !x->producer || bn.i("training_mode", 0) != 0) return false;
    for (size_t k = 1; k < bn.outputs.size(); ++k)
      if (bn.outputs[k]) return false;
    ir::Node& layer = *x->producer;
    const std::string& op = layer.op_type;
    if (!layer.domain.empty() || (op != "Conv" && op != "ConvTranspose" && op != "Gemm")) return false;
    // BN must act on the plain layer output: not after a fused activation or residual add.
    if (layer.has("activation") || layer.in(3)) return false;
    if (sole_consumer(g, x) != &bn || x->dtype != DataType::kFloat32) return false;
    const ir::Tensor* w = constant_of(layer.in(1));
    const ir::Tensor* bias = constant_of(layer.in(2));
    if (!w || (layer.in(2) && !bias)) return false;
    const ir::Tensor *gamma = constant_of(bn.in(1)), *beta = constant_of(bn.in(2)),
                     *mean = constant_of(bn.in(3)), *var = constant_of(bn.in(4));
    if (!gamma || !beta || !mean || !var || w->dtype() != DataType::kFloat32) return false;
    if (op == "Gemm" && (x->dims.size() != 2 || layer.i("transA", 0) != 0)) return false;

    const int64_t channels = gamma->numel();
    const double eps = bn.f("epsilon", 1e-5f);
    std::vector<double> s(channels), shift(channels);
    auto vg = as_f64(*gamma), vb = as_f64(*beta), vm = as_f64(*mean), vv = as_f64(*var);
    if (int64_t(vb.size()) != channels || int64_t(vm.size()) != channels || int64_t(vv.size()) != channels) return false;
    for (int64_t c = 0; c < channels; ++c) {
      s[c] = vg[c] / std::sqrt(vv[c] + eps);
      shift[c] = vb[c] - vm[c] * s[c];
    }

    // Output channel of each weight element.
    std::vector<double> wv = as_f64(*w);
    const ir::Dims& wd = w->dims();
    int64_t inner = 1;
    for (size_t k = 2; k < wd.size(); ++k) inner *= wd[k];
    auto out_channel = [&](int64_t idx) -> int64_t {
      if (op == "Conv") return idx / (wd[1] * inner);
      if (op == "ConvTranspose") {  // W: [C_in, C_out/group, k...]
        int64_t group = layer.i("group", 1), per_group_in = wd[0] / group;
        int64_t ci = idx / (wd[1] * inner), co = (idx / inner) % wd[1];
        return (ci / per_group_in) * wd[1] + co;
      }
      return layer.i("transB", 0) ? idx / wd[1] : idx % wd[1];  // Gemm
    };
    if (op == "Gemm" && (layer.i("transB", 0) ? wd[0] : wd[1]) != channels) return false;
    for (int64_t i = 0; i < int64_t(wv.size()); ++i) {
      int64_t c = out_channel(i);
      if (c >= channels) return false;
      wv[size_t(i)] *= s[c];
    }

    // New bias: (b - mean) * s + beta, with Gemm's beta * C broadcast to [channels].
    std::vector<double> nb(shift);
    if (bias) {
      auto bv = as_f64(*bias);
      double scale = op == "Gemm" ? layer.f("beta", 1.f) : 1.0;
      if (bv.size() == 1) bv.assign(size_t(channels), bv[0]);
      if (int64_t(bv.size()) != channels) return false;  // Gemm C of shape [M, N]: leave it
      for (int64_t c = 0; c < channels; ++c) nb[c] += bv[c] * scale * s[c];
    }
    ir::Value* nw = g.add_constant(g.unique_name(layer.name + ".weight_bnfold"), to_f32(wv, wd));
    ir::Value* nbv = g.add_constant(g.unique_name(layer.name + ".bias_bnfold"), to_f32(nb, {channels}));
    layer.inputs.resize(3);
    layer.inputs[1] = nw;
    layer.inputs[2] = nbv;
    if (op == "Gemm") {
      layer.attrs.erase("beta");  // beta folded into the new C
    }
    // The layer now produces the BN's output value (its name may be a graph output).
    ir::Value* y = bn.outputs[0];
    std::string note = layer.label() + " + " + bn.label() + " -> " + layer.op_type;
    absorb(layer, bn);
    g.remove_node(&bn);
    layer.outputs[0] = y;
    y->producer = &layer;
    ctx.note(note);
    return true;
  }
};
}  // namespace

std::unique_ptr<Pass> make_fold_batchnorm() { return std::make_unique<FoldBatchNorm>(); }

}  // namespace kiln::passes
