// Linear layers written as MatMul + Add become one Gemm, whose kernel writes
// the bias while initializing the output instead of making a second pass:
//
//   MatMul(A [M,K], B [K,N] constant) -> Add(c)   =>  Gemm(A, B, c)
//   Gemm(A, B[, C constant]) -> Add(c)            =>  Gemm(A, B, beta*C + c)
//
// c must be a constant that broadcasts onto [N] ([], [1], [N], [1,N]), the
// MatMul/Gemm output must have no other reader, and everything is float32.
//
// What this pass does not do, and why:
//   - MatMul with a rank other than 2 on A, or a B computed at run time:
//     Gemm is 2-D only, and its B should be a weight the builder can pack.
//   - MatMul without an Add: a Gemm without C does the same work.
//   - Flatten / Reshape in front of a Gemm (e.g. GlobalAveragePool [N,C,1,1]
//     -> Flatten -> Gemm): ONNX Gemm only reads a 2-D A, so the Flatten must
//     stay, and the engine already runs Flatten/Reshape as free aliases of
//     their input, so removing it would save nothing anyway.
#include <cmath>

#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// `c` as a [N] bias (length 1 broadcasts), or false if it does not broadcast
// onto [N] along the last axis only.
bool row_bias(const ir::Tensor& c, int64_t n, std::vector<double>& out) {
  if (c.dtype() != DataType::kFloat32 || c.rank() > 2) return false;
  if (c.rank() == 2 && c.dims()[0] != 1) return false;
  const int64_t len = c.rank() == 0 ? 1 : c.dims().back();
  if (len != 1 && len != n) return false;
  std::vector<double> v = c.to_double();
  out.assign(size_t(n), v[0]);
  if (len == n) out = v;
  return true;
}

class FuseGemm : public RewriteRule {
 public:
  const char* name() const override { return "fuse_gemm"; }
  std::vector<std::string> targets() const override { return {"Add"}; }

  bool apply(ir::Graph& g, ir::Node& add, PassContext& ctx) override {
    if (add.inputs.size() != 2 || add.outputs.size() != 1 || !add.outputs[0]) return false;
    ir::Value* a = add.inputs[0];
    ir::Value* b = add.inputs[1];
    if (!a || !b) return false;
    ir::Value* y = a->is_constant() ? b : a;
    const ir::Tensor* c = constant_of(a->is_constant() ? a : b);
    if (!c || y->is_constant() || !y->producer || y->dtype != DataType::kFloat32) return false;
    ir::Node& mm = *y->producer;
    if (!mm.domain.empty() || (mm.op_type != "MatMul" && mm.op_type != "Gemm")) return false;
    if (mm.outputs.size() != 1 || sole_consumer(g, y) != &add) return false;
    if (mm.has("activation")) return false;  // the bias would land after the activation
    if (y->dims.size() != 2 || add.outputs[0]->dims != y->dims) return false;
    const int64_t n = y->dims[1];
    std::vector<double> bias;
    if (!row_bias(*c, n, bias)) return false;

    const char* from;
    if (mm.op_type == "MatMul") {
      const ir::Value* in_a = mm.in(0);
      const ir::Tensor* w = constant_of(mm.in(1));
      if (!in_a || in_a->dims.size() != 2 || !w || w->rank() != 2 || w->dtype() != DataType::kFloat32) return false;
      from = "MatMul+Add";
    } else {
      // An existing C joins the new bias; it must itself be a row bias.
      if (mm.in(2)) {
        const ir::Tensor* old = constant_of(mm.in(2));
        std::vector<double> prev;
        if (!old || !row_bias(*old, n, prev)) return false;
        const double beta = mm.f("beta", 1.f);
        for (int64_t k = 0; k < n; ++k) bias[size_t(k)] += beta * prev[size_t(k)];
      }
      from = "Gemm+Add";
    }
    std::vector<float> f(bias.begin(), bias.end());
    for (float v : f)
      if (!std::isfinite(v)) return false;
    ir::Value* cv = g.add_constant(g.unique_name(mm.name + ".bias"), ir::Tensor::from_float(f, {n}));
    mm.op_type = "Gemm";
    mm.attrs.erase("beta");  // the folded C already carries it
    mm.inputs.resize(3);
    mm.inputs[2] = cv;
    ir::Value* out = add.outputs[0];
    absorb(mm, add);
    g.remove_node(&add);
    mm.outputs[0] = out;
    out->producer = &mm;
    ctx.note(fused_label(mm) + " -> Gemm (" + from + ")");
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> make_fuse_gemm() { return std::make_unique<FuseGemm>(); }

}  // namespace kiln::passes
