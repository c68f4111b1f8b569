// Conv or Gemm (+ folded bias, + residual) followed by an activation becomes
// one layer whose kernel applies the activation in its epilogue while the
// output is still in registers or cache (the CBR kernel): attributes
// `activation` and `activation_params` (see src/ir/ops/conv.cpp).
//
// Besides the single activation ops, the SiLU pattern is fused too:
//   y = Conv(x); Mul(y, Sigmoid(y)) (either operand order)  =>  Conv[SiLU]
// when y has exactly those two readers and the Sigmoid output only the Mul.
// The folding passes (fold_batchnorm, fold_scale_shift, fuse_gemm) leave a
// layer with a fused activation alone, so later rounds stay correct.
#include <cfloat>

#include "ir/attribute.h"
#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {
// Parameters of `act` in the order the epilogue wants; false if the
// activation cannot be fused (e.g. Clip bounds that are not constants).
bool activation_params(const ir::Node& act, std::vector<float>& params) {
  const std::string& op = act.op_type;
  if (op == "Relu" || op == "Sigmoid" || op == "Tanh" || op == "HardSwish") return true;
  if (op == "LeakyRelu") {
    params = {act.f("alpha", 0.01f)};
    return true;
  }
  if (op == "HardSigmoid") {
    params = {act.f("alpha", 0.2f), act.f("beta", 0.5f)};
    return true;
  }
  if (op == "Clip") {
    float lo = -FLT_MAX, hi = FLT_MAX;
    for (int k : {1, 2}) {
      const ir::Value* v = act.in(size_t(k));
      if (!v) continue;
      const ir::Tensor* t = constant_of(v);
      if (!t || t->numel() != 1 || t->dtype() != DataType::kFloat32) return false;
      (k == 1 ? lo : hi) = t->data<float>()[0];
    }
    params = {lo, hi};
    return true;
  }
  return false;
}

// The Conv / Gemm producing `x` if an activation may be attached to it.
ir::Node* fusable_layer(const ir::Value* x) {
  if (!x || !x->producer || x->dtype != DataType::kFloat32) return nullptr;
  ir::Node* layer = x->producer;
  if ((layer->op_type != "Conv" && layer->op_type != "Gemm") || !layer->domain.empty()) return nullptr;
  if (layer->outputs.size() != 1 || layer->has("activation")) return nullptr;
  return layer;
}

// Attaches the activation to `layer`, which then produces `y`.
void attach(ir::Node& layer, const std::string& act, std::vector<float> params, ir::Value* y) {
  layer.attrs["activation"] = ir::string_attr(act);
  ir::Attribute p;
  p.kind = ir::Attribute::Kind::kFloats;
  p.floats = std::move(params);
  layer.attrs["activation_params"] = p;
  layer.outputs[0] = y;
  y->producer = &layer;
}

std::string describe(const ir::Node& layer, const std::string& act) {
  std::string parts = layer.op_type == "Gemm" ? "Gemm+bias" : "Conv+bias";
  if (layer.in(3)) parts += "+residual";
  return fused_label(layer) + " -> CBR (" + parts + "+" + act + ")";
}

class FuseConvActivation : public RewriteRule {
 public:
  const char* name() const override { return "fuse_conv_activation"; }
  std::vector<std::string> targets() const override {
    return {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Mul"};
  }
  bool apply(ir::Graph& g, ir::Node& act, PassContext& ctx) override {
    if (act.op_type == "Mul") return apply_silu(g, act, ctx);
    ir::Value* x = act.in(0);
    ir::Node* layer = fusable_layer(x);
    if (!layer || sole_consumer(g, x) != &act || act.outputs.empty() || !act.outputs[0]) return false;
    std::vector<float> params;
    if (!activation_params(act, params)) return false;
    ir::Value* y = act.outputs[0];
    const std::string op = act.op_type;
    absorb(*layer, act);
    g.remove_node(&act);
    attach(*layer, op, std::move(params), y);
    ctx.note(describe(*layer, op));
    return true;
  }

 private:
  // Mul(x, Sigmoid(x)) or Mul(Sigmoid(x), x) with x = Conv/Gemm output.
  static bool apply_silu(ir::Graph& g, ir::Node& mul, PassContext& ctx) {
    if (mul.inputs.size() != 2 || mul.outputs.size() != 1 || !mul.outputs[0]) return false;
    for (size_t k : {0, 1}) {
      ir::Value* x = mul.inputs[k];
      ir::Value* s = mul.inputs[1 - k];
      if (!x || !s || x == s || !s->producer) continue;
      ir::Node& sig = *s->producer;
      if (sig.op_type != "Sigmoid" || !sig.domain.empty() || sig.in(0) != x || sig.outputs.size() != 1) continue;
      ir::Node* layer = fusable_layer(x);
      if (!layer || sole_consumer(g, s) != &mul || is_graph_output(g, x)) continue;
      // x is read by the Sigmoid and the Mul, and by nothing else.
      const auto readers = g.consumers(x);
      if (readers.size() != 2) continue;
      if (mul.outputs[0]->dims != x->dims || mul.outputs[0]->dtype != DataType::kFloat32) continue;
      ir::Value* y = mul.outputs[0];
      absorb(*layer, sig);
      absorb(*layer, mul);
      g.remove_node(&sig);
      g.remove_node(&mul);
      attach(*layer, "SiLU", {}, y);
      ctx.note(describe(*layer, "SiLU"));
      return true;
    }
    return false;
  }
};
}  // namespace

std::unique_ptr<Pass> make_fuse_conv_activation() { return std::make_unique<FuseConvActivation>(); }

}  // namespace kiln::passes
