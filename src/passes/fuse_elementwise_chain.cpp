// A chain of element-wise ops (Add -> Relu, HardSigmoid -> Mul, x*Sigmoid(x),
// Mul -> Add scale/shift) becomes one kiln::FusedElementwise node whose
// kernel makes one pass over memory instead of one per op (see
// src/ir/ops/fused.cpp for the attributes).
//
// A chain links node a to node b when a's output is read by b alone (and is
// no graph output), in exactly one of b's inputs; the other input of a binary
// op becomes an operand of the fused node. The chain's first input x0 may be
// read again by a later op of the chain (the SiLU shape x * Sigmoid(x)).
// Runs after the Conv fusions, so a Conv's activation stays in its epilogue.
#include <algorithm>
#include <limits>
#include <set>

#include "ir/fused_elementwise.h"
#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

bool is_f32(const ir::Value* v) { return v && v->has_shape && v->dtype == DataType::kFloat32; }

// One fp32 value, for Clip bounds and Pow exponents.
bool constant_scalar(const ir::Value* v, float* out) {
  const ir::Tensor* t = constant_of(v);
  if (!t || t->dtype() != DataType::kFloat32 || t->numel() != 1) return false;
  *out = t->data<float>()[0];
  return true;
}

// What one node contributes to the chain.
struct Link {
  std::string op;
  ir::Value* other = nullptr;  // binary: the operand that is not the chain value
  bool swap = false;
  float alpha = 0.f, beta = 0.f;
};

// Checks `n` can join a chain whose value arrives in input `slot`, and
// fills `link`. Unary ops take the chain in slot 0; binary in 0 or 1. Only a
// chain's head may read one value twice (x*x: the operand is x0 itself).
bool link_of(const ir::Node& n, size_t slot, bool head, Link* link) {
  if (!n.domain.empty() || n.outputs.size() != 1 || !is_f32(n.outputs[0])) return false;
  const std::string& op = n.op_type;
  Link l;
  l.op = op;
  if (ir::fusable_unary(op)) {
    if (slot != 0 || !is_f32(n.in(0))) return false;
    if (op == "LeakyRelu") l.alpha = n.f("alpha", 0.01f);
    if (op == "HardSigmoid") l.alpha = n.f("alpha", 0.2f), l.beta = n.f("beta", 0.5f);
    if (op == "Elu") l.alpha = n.f("alpha", 1.0f);
    if (op == "Clip") {
      if (n.has("min") || n.has("max") || n.inputs.size() > 3) return false;  // pre-opset-11 form
      l.alpha = -std::numeric_limits<float>::infinity();
      l.beta = std::numeric_limits<float>::infinity();
      if (n.in(1) && !constant_scalar(n.in(1), &l.alpha)) return false;  // bounds must be constants
      if (n.in(2) && !constant_scalar(n.in(2), &l.beta)) return false;
    } else if (n.inputs.size() != 1) {
      return false;
    }
    *link = l;
    return true;
  }
  if (!ir::fusable_binary(op) || n.inputs.size() != 2 || slot > 1) return false;
  ir::Value* chain = n.inputs[slot];
  ir::Value* other = n.inputs[1 - slot];
  if (!is_f32(chain) || !is_f32(other) || (chain == other && !head)) return false;  // no operand to name
  if (op == "Pow" && (slot != 0 || !constant_of(other))) return false;  // constant exponents only
  l.other = other;
  l.swap = slot == 1;
  *link = l;
  return true;
}

// Where a chain starts at binary node n: x0 is a runtime input, preferably
// one already of the output's shape.
size_t start_slot(const ir::Node& n) {
  if (n.op_type == "Pow" || n.inputs.size() != 2) return 0;
  auto score = [&](size_t k) {
    const ir::Value* v = n.inputs[k];
    return (v && !v->is_constant() ? 2 : 0) + (v && v->dims == n.outputs[0]->dims ? 1 : 0);
  };
  return score(1) > score(0) ? 1 : 0;
}

struct Chain {
  std::vector<ir::Node*> nodes;
  std::vector<ir::Value*> inputs;  // [x0, operands...]
  std::vector<std::string> ops;
  std::vector<int64_t> operand, swap;
  std::vector<float> alpha, beta;

  void add(ir::Node* n, const Link& l) {
    nodes.push_back(n);
    ops.push_back(l.op);
    swap.push_back(l.swap ? 1 : 0);
    alpha.push_back(l.alpha);
    beta.push_back(l.beta);
    if (!l.other) {
      operand.push_back(-1);
      return;
    }
    auto it = std::find(inputs.begin(), inputs.end(), l.other);
    operand.push_back(int64_t(it - inputs.begin()));
    if (it == inputs.end()) inputs.push_back(l.other);
  }
};

ir::Attribute ints_attr(std::vector<int64_t> v) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::kInts;
  a.ints = std::move(v);
  return a;
}
ir::Attribute floats_attr(std::vector<float> v) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::kFloats;
  a.floats = std::move(v);
  return a;
}

class FuseElementwiseChain : public Pass {
 public:
  const char* name() const override { return "fuse_elementwise_chain"; }

  bool run(ir::Graph& g, PassContext& ctx) override {
    // Nodes are in topological order, so the first node met of a chain is its
    // head: a linkable producer would have started the chain itself.
    std::vector<ir::Node*> order;
    for (auto& n : g.nodes()) order.push_back(n.get());
    std::set<const ir::Node*> gone;
    bool changed = false;
    for (ir::Node* n : order) {
      if (gone.count(n)) continue;
      Chain c;
      if (!grow(g, n, c) || c.nodes.size() < 2) continue;
      for (size_t k = 0; k + 1 < c.nodes.size(); ++k) gone.insert(c.nodes[k]);
      ir::Node* fused = rewrite(g, c);
      ctx.note(fused_label(*fused) + " -> FusedElementwise");
      changed = true;
    }
    return changed;
  }

 private:
  static bool grow(const ir::Graph& g, ir::Node* head, Chain& c) {
    const size_t slot = start_slot(*head);
    Link l;
    if (!link_of(*head, slot, true, &l)) return false;
    c.inputs.push_back(head->inputs[slot]);
    c.add(head, l);
    ir::Value* cur = head->outputs[0];
    for (;;) {
      ir::Node* next = sole_consumer(g, cur);
      if (!next) break;
      size_t uses = 0, at = 0;
      for (size_t k = 0; k < next->inputs.size(); ++k)
        if (next->inputs[k] == cur) ++uses, at = k;
      if (uses != 1 || !link_of(*next, at, false, &l)) break;
      c.add(next, l);
      cur = next->outputs[0];
    }
    return true;
  }

  // The last node of the chain becomes the fused node: its position already
  // follows every input's producer and its output keeps its name and readers.
  static ir::Node* rewrite(ir::Graph& g, const Chain& c) {
    ir::Node* first = c.nodes.front();
    ir::Node* last = c.nodes.back();
    ir::Node record;  // collects the merged names in chain order
    record.name = first->name;
    record.fused = first->fused;
    for (size_t k = 1; k < c.nodes.size(); ++k) absorb(record, *c.nodes[k]);
    last->fused = record.fused;
    last->name = first->name;
    last->op_type = "FusedElementwise";
    last->domain = "kiln";
    last->opset = 1;
    last->path = "kernel";
    last->inputs = c.inputs;
    last->attrs.clear();
    ir::Attribute ops;
    ops.kind = ir::Attribute::Kind::kStrings;
    ops.strings = c.ops;
    last->attrs["ops"] = ops;
    last->attrs["operand"] = ints_attr(c.operand);
    last->attrs["swap"] = ints_attr(c.swap);
    last->attrs["alpha"] = floats_attr(c.alpha);
    last->attrs["beta"] = floats_attr(c.beta);
    for (size_t k = 0; k + 1 < c.nodes.size(); ++k) g.remove_node(c.nodes[k]);
    return last;
  }
};

}  // namespace

std::unique_ptr<Pass> make_fuse_elementwise_chain() { return std::make_unique<FuseElementwiseChain>(); }

}  // namespace kiln::passes
