// A BatchNormalization that fold_batchnorm could not fold (it follows an
// Add, a Concat, a graph input...) is lowered to the per-channel affine it
// computes in inference, with constants in float64 then cast:
//   s = gamma / sqrt(var + eps);  t = beta - mean * s
//   BN(x) -> Add(Mul(x, s), t),  s and t shaped [C, 1, ...] (channel axis 1)
// The elementwise fusion then merges the two with their neighbours (a bias
// Add before, a Relu after) into one kernel, and backends need no
// BatchNormalization kernel of their own.
#include <cmath>

#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

class LowerBatchNorm : public RewriteRule {
 public:
  const char* name() const override { return "lower_batchnorm"; }
  std::vector<std::string> targets() const override { return {"BatchNormalization"}; }

  bool apply(ir::Graph& g, ir::Node& bn, PassContext& ctx) override {
    ir::Value* x = bn.in(0);
    if (!x || !x->has_shape || x->dtype != DataType::kFloat32 || x->dims.size() < 2) return false;
    if (bn.i("training_mode", 0) != 0) return false;
    for (size_t k = 1; k < bn.outputs.size(); ++k)
      if (bn.outputs[k]) return false;  // running statistics are training outputs
    const ir::Tensor *gamma = constant_of(bn.in(1)), *beta = constant_of(bn.in(2)),
                     *mean = constant_of(bn.in(3)), *var = constant_of(bn.in(4));
    if (!gamma || !beta || !mean || !var) return false;
    const int64_t channels = x->dims[1];
    const auto vg = gamma->to_double(), vb = beta->to_double(), vm = mean->to_double(), vv = var->to_double();
    for (const auto* v : {&vg, &vb, &vm, &vv})
      if (int64_t(v->size()) != channels) return false;
    const double eps = bn.f("epsilon", 1e-5f);
    std::vector<float> s(static_cast<size_t>(channels)), t(static_cast<size_t>(channels));
    for (int64_t c = 0; c < channels; ++c) {
      const double sc = vg[size_t(c)] / std::sqrt(vv[size_t(c)] + eps);
      s[size_t(c)] = float(sc);
      t[size_t(c)] = float(vb[size_t(c)] - vm[size_t(c)] * sc);
      if (!std::isfinite(s[size_t(c)]) || !std::isfinite(t[size_t(c)])) return false;
    }
    ir::Dims shape{channels};  // [C, 1, ...]: broadcasts on axis 1 of x
    shape.resize(x->dims.size() - 1, 1);

    ir::Value* y = bn.outputs[0];
    const std::string label = bn.name;
    const int opset = bn.opset;
    ir::Value* sv = g.add_constant(g.unique_name(label + ".scale"), ir::Tensor::from_float(s, shape));
    ir::Value* tv = g.add_constant(g.unique_name(label + ".shift"), ir::Tensor::from_float(t, shape));
    ir::Value* scaled = g.add_value(g.unique_name(label + ".scaled"));
    g.remove_node(&bn);  // `bn` is gone from here on
    // The Mul keeps the BN's name, so fused groups and inspect still show it.
    g.add_node("Mul", label, {x, sv}, {scaled})->opset = opset;
    g.add_node("Add", g.unique_name(label + ".add"), {scaled, tv}, {y})->opset = opset;
    g.topo_sort();
    ctx.note(label + " -> Mul + Add (per-channel affine)");
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> make_lower_batchnorm() { return std::make_unique<LowerBatchNorm>(); }

}  // namespace kiln::passes
