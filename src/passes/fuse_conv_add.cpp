// A residual Add after a Conv moves into the Conv's epilogue: the Conv takes
// the other operand as its 4th input Z and computes act(conv + B + Z) in one
// pass over its output (see src/ir/ops/conv.cpp):
//
//   Add(Conv(x), z) or Add(z, Conv(x))  =>  Conv(x, W, B, z)
//
// This is ResNet's `relu(conv(x) + shortcut)` (the Relu then fuses as the
// Conv's activation, which is why this pass runs before
// fuse_conv_activation) and MobileNetV2's `conv(x) + x`.
//
// Conditions: the Conv output has no other reader and is no graph output,
// the Conv has no activation yet (the Add would have to come after it) and
// no residual, both operands have the output's exact dims (no broadcasting)
// and are float32, and z does not depend on the Conv (the rewrite would make
// a cycle; the sole-reader rule already implies it, the check is cheap).
// When both operands are such Conv outputs, the Conv that comes later in
// topological order takes the other as Z, so Z is computed before it.
// The folding passes (fold_batchnorm, fold_scale_shift) know about Z and
// leave a Conv with a residual alone where folding would have to change Z.
#include <algorithm>
#include <set>

#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// Whether node `target` is among the producers `v` depends on.
bool depends_on(const ir::Value* v, const ir::Node* target) {
  std::vector<const ir::Node*> stack;
  std::set<const ir::Node*> seen;
  if (v && v->producer) stack.push_back(v->producer);
  while (!stack.empty()) {
    const ir::Node* n = stack.back();
    stack.pop_back();
    if (n == target) return true;
    if (!seen.insert(n).second) continue;
    for (const ir::Value* in : n->inputs)
      if (in && in->producer) stack.push_back(in->producer);
  }
  return false;
}

class FuseConvAdd : public RewriteRule {
 public:
  const char* name() const override { return "fuse_conv_add"; }
  std::vector<std::string> targets() const override { return {"Add"}; }

  bool apply(ir::Graph& g, ir::Node& add, PassContext& ctx) override {
    if (add.inputs.size() != 2 || add.outputs.size() != 1 || !add.outputs[0]) return false;
    ir::Value* out = add.outputs[0];
    if (out->dtype != DataType::kFloat32 || !out->has_shape) return false;
    // Operand k as the Conv output, the other as z.
    ir::Node* convs[2] = {qualifying_conv(g, add, 0), qualifying_conv(g, add, 1)};
    int pick = -1;
    if (convs[0] && convs[1]) pick = position(g, convs[0]) > position(g, convs[1]) ? 0 : 1;
    else if (convs[0]) pick = 0;
    else if (convs[1]) pick = 1;
    if (pick < 0) return false;
    ir::Node& conv = *convs[pick];
    ir::Value* z = add.inputs[size_t(1 - pick)];

    conv.inputs.resize(4, nullptr);  // a Conv without bias keeps input 2 omitted
    conv.inputs[3] = z;
    const bool reorder = z->producer && position(g, z->producer) > position(g, &conv);
    absorb(conv, add);
    g.remove_node(&add);
    conv.outputs[0] = out;
    out->producer = &conv;
    // z may be computed after the Conv in the current order (a shortcut
    // branch listed last); the Conv must now wait for it.
    if (reorder) g.topo_sort();
    ctx.note(fused_label(conv) + " -> Conv (residual Add in the epilogue)");
    return true;
  }

 private:
  static ir::Node* qualifying_conv(const ir::Graph& g, const ir::Node& add, size_t k) {
    ir::Value* y = add.inputs[k];
    ir::Value* z = add.inputs[1 - k];
    if (!y || !z || y == z || !y->producer) return nullptr;
    ir::Node* conv = y->producer;
    if (conv->op_type != "Conv" || !conv->domain.empty() || conv->outputs.size() != 1) return nullptr;
    if (conv->has("activation") || conv->in(3) || conv->inputs.size() > 4) return nullptr;
    if (!conv->in(0) || conv->in(0)->dtype != DataType::kFloat32) return nullptr;
    if (y->dtype != DataType::kFloat32 || z->dtype != DataType::kFloat32) return nullptr;
    if (!y->has_shape || !z->has_shape || y->dims != z->dims || add.outputs[0]->dims != y->dims) return nullptr;
    if (sole_consumer(g, y) != &add) return nullptr;
    if (depends_on(z, conv)) return nullptr;
    return conv;
  }

  static size_t position(const ir::Graph& g, const ir::Node* n) {
    const auto& nodes = g.nodes();
    for (size_t k = 0; k < nodes.size(); ++k)
      if (nodes[k].get() == n) return k;
    return nodes.size();
  }
};

}  // namespace

std::unique_ptr<Pass> make_fuse_conv_add() { return std::make_unique<FuseConvAdd>(); }

}  // namespace kiln::passes
