// Data-movement ops that cancel or merge. kiln fixes every shape when it
// builds, so a reshaping chain is fully described by its output dims.
//
//   Transpose -> Transpose       one Transpose with the composed perm, or
//                                nothing when the composition is the identity.
//   Transpose that only moves    a Reshape: element order is unchanged, and a
//   size-1 axes                  Reshape is a free alias in the engine.
//   Reshape/Flatten/Squeeze/     one Reshape to the last op's output dims, or
//   Unsqueeze -> one of those    nothing when those are the chain's input dims.
//
// A pair is only merged when the first op's output has no other reader (else
// both tensors are still needed). Graph output names are kept. Transposes
// that really move data are never turned into reshapes, so a
// Transpose -> Reshape pair that merely restores the dims stays as it is.
#include <string>
#include <vector>

#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

bool is_reshape_like(const ir::Node& n) {
  const std::string& op = n.op_type;
  return n.domain.empty() && (op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze");
}

// Normalized perm of a Transpose over input rank `r` (absent = reversed axes).
std::vector<int64_t> perm_of(const ir::Node& t, size_t r) {
  std::vector<int64_t> perm = t.ints("perm");
  if (!t.has("perm")) {
    perm.resize(r);
    for (size_t i = 0; i < r; ++i) perm[i] = int64_t(r - 1 - i);
  }
  for (auto& p : perm)
    if (p < 0) p += int64_t(r);
  return perm;
}

bool is_identity(const std::vector<int64_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i)
    if (perm[i] != int64_t(i)) return false;
  return true;
}

// True when transposing `dims` by `perm` keeps the row-major element order:
// the axes larger than 1 stay in their relative order.
bool keeps_order(const ir::Dims& dims, const std::vector<int64_t>& perm) {
  int64_t last = -1;
  for (int64_t p : perm) {
    if (dims[size_t(p)] == 1) continue;
    if (p < last) return false;
    last = p;
  }
  return true;
}

ir::Attribute ints_attr(std::vector<int64_t> v) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::kInts;
  a.ints = std::move(v);
  return a;
}

bool usable(const ir::Value* v) { return v && v->has_shape; }

// Turns `n` into Reshape(x) to its current output dims.
void make_reshape(ir::Graph& g, ir::Node& n, ir::Value* x) {
  const ir::Dims& dims = n.outputs[0]->dims;
  ir::Value* shape = g.add_constant(g.unique_name(n.name + ".shape"),
                                    ir::Tensor::from_int64(dims, {int64_t(dims.size())}));
  n.op_type = "Reshape";
  n.attrs.clear();
  n.inputs = {x, shape};
}

class CancelTransposeReshape : public RewriteRule {
 public:
  const char* name() const override { return "cancel_transpose_reshape"; }
  std::vector<std::string> targets() const override {
    return {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"};
  }

  bool apply(ir::Graph& g, ir::Node& n, PassContext& ctx) override {
    if (n.outputs.size() != 1 || !usable(n.outputs[0]) || !usable(n.in(0))) return false;
    if (n.op_type == "Transpose") {
      if (merge_transposes(g, n, ctx)) return true;
      return transpose_to_reshape(g, n, ctx);
    }
    return merge_reshapes(g, n, ctx);
  }

 private:
  // The producer of `n`'s input when `n` is its only reader, else nullptr.
  static ir::Node* sole_producer(const ir::Graph& g, const ir::Node& n) {
    ir::Value* mid = n.in(0);
    ir::Node* a = mid->producer;
    if (!a || a->outputs.size() != 1 || sole_consumer(g, mid) != &n) return nullptr;
    for (size_t k = 1; k < n.inputs.size(); ++k)
      if (n.inputs[k] == mid) return nullptr;
    // A constant chain is fold_constants' job.
    return usable(a->in(0)) && !a->in(0)->is_constant() ? a : nullptr;
  }

  // Removes `a` and `b` (a feeds only b) when b's output equals a's input.
  static bool drop_pair(ir::Graph& g, ir::Node& a, ir::Node& b, PassContext& ctx, const std::string& why) {
    ir::Value* x = a.inputs[0];
    ir::Value* y = b.outputs[0];
    if (!can_reroute(g, y, x)) return false;
    std::string label = fused_label(a) + "+" + fused_label(b);
    g.remove_node(&b);
    g.remove_node(&a);
    reroute(g, y, x);
    ctx.note(label + " -> removed (" + why + ")");
    return true;
  }

  bool merge_transposes(ir::Graph& g, ir::Node& b, PassContext& ctx) {
    ir::Node* a = sole_producer(g, b);
    if (!a || a->op_type != "Transpose" || !a->domain.empty()) return false;
    const size_t r = a->in(0)->dims.size();
    std::vector<int64_t> pa = perm_of(*a, r), pb = perm_of(b, r);
    if (pa.size() != r || pb.size() != r) return false;
    // b's output axis i is a's output axis pb[i], which is input axis pa[pb[i]].
    std::vector<int64_t> perm(r);
    for (size_t i = 0; i < r; ++i) perm[i] = pa[size_t(pb[i])];
    if (is_identity(perm)) return drop_pair(g, *a, b, ctx, "transposes cancel");
    // b reads the original input with the composed perm; a becomes dead.
    b.inputs[0] = a->inputs[0];
    b.attrs["perm"] = ints_attr(perm);
    absorb_upstream(b, *a);
    g.remove_node(a);
    ctx.note(fused_label(b) + " -> Transpose (perm " + shape_str(perm) + ")");
    return true;
  }

  bool transpose_to_reshape(ir::Graph& g, ir::Node& t, PassContext& ctx) {
    ir::Value* x = t.inputs[0];
    const ir::Dims& dims = x->dims;
    std::vector<int64_t> perm = perm_of(t, dims.size());
    if (perm.size() != dims.size() || is_identity(perm) || !keeps_order(dims, perm)) return false;
    if (ir::numel_of(dims) == 0) return false;  // a 0 in a Reshape shape means "copy that dim"
    make_reshape(g, t, x);
    ctx.note(fused_label(t) + " -> Reshape " + shape_str(t.outputs[0]->dims) + " (moves only size-1 axes)");
    return true;
  }

  bool merge_reshapes(ir::Graph& g, ir::Node& b, PassContext& ctx) {
    if (!is_reshape_like(b)) return false;
    ir::Node* a = sole_producer(g, b);
    if (!a || !is_reshape_like(*a)) return false;
    ir::Value* x = a->inputs[0];
    const ir::Dims& out = b.outputs[0]->dims;
    if (x->dtype != b.outputs[0]->dtype) return false;
    // An empty shape tensor would need allowzero semantics; not worth it.
    if (ir::numel_of(out) == 0) return false;
    if (out == x->dims) return drop_pair(g, *a, b, ctx, "restores the input dims");
    make_reshape(g, b, x);
    absorb_upstream(b, *a);
    g.remove_node(a);
    ctx.note(fused_label(b) + " -> Reshape " + shape_str(out));
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> make_cancel_transpose_reshape() { return std::make_unique<CancelTransposeReshape>(); }

}  // namespace kiln::passes
