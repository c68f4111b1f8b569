#include "ir/op_registry.h"

#include <algorithm>

#include "kiln/error.h"

namespace kiln::ir {

OpRegistry& OpRegistry::global() {
  static OpRegistry* reg = [] {
    auto* r = new OpRegistry;
    register_conv_ops(*r);
    register_gemm_ops(*r);
    register_pool_ops(*r);
    register_norm_ops(*r);
    register_unary_ops(*r);
    register_binary_ops(*r);
    register_reduce_ops(*r);
    register_softmax_ops(*r);
    register_shape_ops(*r);
    register_tensor_ops(*r);
    register_resize_ops(*r);
    register_misc_ops(*r);
    register_fused_ops(*r);
    register_quantize_ops(*r);
    return r;
  }();
  return *reg;
}

void OpRegistry::add(OpDef def) {
  for (auto& d : defs_)
    if (d.domain == def.domain && d.op_type == def.op_type) {
      d = std::move(def);
      return;
    }
  defs_.push_back(std::move(def));
}

const OpDef* OpRegistry::find(const std::string& domain, const std::string& op_type) const {
  const std::string dom = domain == "ai.onnx" ? "" : domain;
  for (auto& d : defs_)
    if (d.domain == dom && d.op_type == op_type) return &d;
  return nullptr;
}

std::vector<std::string> OpRegistry::list() const {
  std::vector<std::string> out;
  for (auto& d : defs_) out.push_back((d.domain.empty() ? "" : d.domain + "::") + d.op_type);
  std::sort(out.begin(), out.end());
  return out;
}

void set_output(Node& n, size_t k, DataType dtype, Dims dims) {
  if (k >= n.outputs.size() || !n.outputs[k]) return;  // optional output not requested
  for (int64_t d : dims)
    if (d < 0) throw_bad_input(n.label() + ": inferred a negative dimension for output " + std::to_string(k) +
                               " " + shape_str(dims));
  Value* v = n.outputs[k];
  v->dtype = dtype;
  v->dims = std::move(dims);
  v->has_shape = true;
}

const Value& input_checked(const Node& n, size_t k) {
  const Value* v = n.in(k);
  if (!v) throw_bad_input(n.label() + ": required input " + std::to_string(k) + " is missing");
  if (!v->has_shape) throw_internal(n.label() + ": input '" + v->name + "' has no inferred shape");
  return *v;
}

int64_t normalize_axis(const Node& n, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1))
    throw_bad_input(n.label() + ": axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + rank : axis;
}

Dims broadcast_dims(const Node& n, const Dims& a, const Dims& b) {
  size_t r = std::max(a.size(), b.size());
  Dims out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1)
      throw_bad_input(n.label() + ": shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {
constexpr size_t kMaxFoldBytes = size_t(64) << 20;  // larger results stay as runtime nodes

// The batch axis follows the data: an output keeps axis 0 as batch when a
// non-constant input had it and the leading dimension is unchanged.
void propagate_batch_axis(Node& n) {
  const Value* src = nullptr;
  for (Value* in : n.inputs)
    if (in && !in->is_constant() && in->batch_axis == 0 && !in->dims.empty()) { src = in; break; }
  for (Value* o : n.outputs)
    if (o) o->batch_axis = (src && !o->dims.empty() && o->dims[0] == src->dims[0]) ? 0 : -1;
}
}  // namespace

void infer_shapes(Graph& g, Evaluator* eval) {
  g.topo_sort();
  auto& reg = OpRegistry::global();
  std::vector<Node*> order;
  for (auto& n : g.nodes()) order.push_back(n.get());
  for (Node* n : order) {
    const OpDef* def = reg.find(n->domain, n->op_type);
    if (!def) throw_unsupported(n->label() + ": op '" + n->op_type + "' (domain '" + n->domain + "') is not known to kiln");
    for (Value* in : n->inputs)
      if (in && !in->has_shape) throw_internal(n->label() + ": input '" + in->name + "' has no shape");
    def->infer(*n);
    for (Value* o : n->outputs)
      if (o && !o->has_shape) throw_internal(n->label() + ": inference left output '" + o->name + "' without a shape");
    propagate_batch_axis(*n);

    if (!eval || !def->foldable) continue;
    bool all_const = true;
    size_t out_bytes = 0;
    for (Value* in : n->inputs) all_const = all_const && (!in || in->is_constant());
    for (Value* o : n->outputs)
      if (o) out_bytes += size_t(numel_of(o->dims)) * dtype_size(o->dtype);
    if (!all_const || out_bytes > kMaxFoldBytes) continue;
    std::vector<const Tensor*> ins;
    for (Value* in : n->inputs) ins.push_back(in ? in->constant.get() : nullptr);
    std::vector<Tensor> outs;
    for (Value* o : n->outputs) outs.push_back(o ? Tensor(o->dtype, o->dims) : Tensor());
    eval->evaluate(*n, ins, outs);
    for (size_t k = 0; k < n->outputs.size(); ++k) {
      Value* o = n->outputs[k];
      if (!o) continue;
      o->constant = std::make_shared<const Tensor>(std::move(outs[k]));
      o->producer = nullptr;
      o->batch_axis = -1;
    }
    g.remove_node(n);
  }
  g.remove_unused_values();
}

}  // namespace kiln::ir
