// Conv (+ folded bias) followed by an activation becomes one Conv whose
// kernel applies the activation in its epilogue while the output is still in
// registers (the CBR kernel): attributes `activation` and `activation_params`
// (see src/ir/ops/conv.cpp).
#include <cfloat>

#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {
// Parameters of `act` in the order the Conv epilogue wants; false if the
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

class FuseConvActivation : public RewriteRule {
 public:
  const char* name() const override { return "fuse_conv_activation"; }
  std::vector<std::string> targets() const override {
    return {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh"};
  }
  bool apply(ir::Graph& g, ir::Node& act, PassContext& ctx) override {
    ir::Value* x = act.in(0);
    if (!x || !x->producer || x->dtype != DataType::kFloat32) return false;
    ir::Node& conv = *x->producer;
    if (conv.op_type != "Conv" || !conv.domain.empty() || conv.has("activation")) return false;
    if (sole_consumer(g, x) != &act) return false;
    std::vector<float> params;
    if (!activation_params(act, params)) return false;
    conv.attrs["activation"] = string_attr(act.op_type);
    ir::Attribute p;
    p.kind = ir::Attribute::Kind::kFloats;
    p.floats = params;
    conv.attrs["activation_params"] = p;
    ir::Value* y = act.outputs[0];
    absorb(conv, act);
    ctx.note(fused_label(conv) + " -> CBR (Conv+bias+" + act.op_type + ")");
    g.remove_node(&act);
    conv.outputs[0] = y;
    y->producer = &conv;
    return true;
  }

 private:
  static ir::Attribute string_attr(const std::string& s) {
    ir::Attribute a;
    a.kind = ir::Attribute::Kind::kString;
    a.s = s;
    return a;
  }
};
}  // namespace

std::unique_ptr<Pass> make_fuse_conv_activation() { return std::make_unique<FuseConvActivation>(); }

}  // namespace kiln::passes
