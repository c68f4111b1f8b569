// Precision and layout assignment for CUDA plans.
//
// Walks the layers in order. A layer runs in FP16 when the build asks for it,
// its op has FP16 kernels (OpTraits::fp16_inputs) and it is not among the
// FP32 layers (named by the user or chosen by timing, precision_search.cpp);
// its listed float inputs are then converted to FP16 (constants once, in the
// plan) and its outputs follow. Layouts: ops that run natively channels-last
// (convolutions) write rank-4 outputs NHWC in FP16 builds; ops that index
// through strides keep their first input's layout; every other op reads
// row-major. Where a value's dtype or layout differs from what a consumer
// reads, one Reformat layer is inserted (shared by every consumer that wants
// the same form). Graph outputs leave in the dtype and layout the model
// declares.
#include <map>
#include <tuple>

#include "backends/cuda/kernel.h"
#include "builder/cuda/cuda_build.h"
#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::cuda_build {

namespace {

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

// Ops whose kernels index through strides and whose output has the shape
// structure of input 0, so keeping its layout costs nothing.
bool keeps_input_layout(const ir::Node& n) {
  static const std::set<std::string> ops = {
      "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Exp", "Log", "Neg", "Abs", "Sqrt",
      "Reciprocal", "Floor", "Ceil", "Erf", "Elu", "Softplus", "Clip", "Add", "Sub", "Mul", "Div", "Pow", "Max",
      "Min", "FusedElementwise", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Resize",
      "Concat", "Pad", "Cast"};
  return ops.count(n.op_type) != 0;
}

// NHWC and row-major are the same bytes when C or H*W is 1.
ir::Layout effective(const ir::Value& v, ir::Layout l) {
  if (l != ir::Layout::kNHWC || v.dims.size() != 4) return ir::Layout::kLinear;
  return v.dims[1] == 1 || v.dims[2] * v.dims[3] == 1 ? ir::Layout::kLinear : ir::Layout::kNHWC;
}

ir::Tensor convert_constant(const ir::Tensor& t, DataType to) {
  ir::Tensor out(to, t.dims());
  if (t.dtype() == DataType::kFloat32 && to == DataType::kFloat16) {
    for (int64_t i = 0; i < t.numel(); ++i) out.data<uint16_t>()[i] = float_to_half(t.data<float>()[i]);
  } else if (t.dtype() == DataType::kFloat16 && to == DataType::kFloat32) {
    for (int64_t i = 0; i < t.numel(); ++i) out.data<float>()[i] = half_to_float(t.data<uint16_t>()[i]);
  } else {
    throw_internal(std::string("convert_constant: ") + dtype_name(t.dtype()) + " -> " + dtype_name(to));
  }
  return out;
}

class FormatAssigner {
 public:
  FormatAssigner(ir::Graph& g, const Options& o) : g_(g), o_(o) {}

  int run() {
    std::vector<DataType> out_dtype;
    for (ir::Value* v : g_.outputs) out_dtype.push_back(v->dtype);
    std::vector<ir::Node*> order;
    for (auto& n : g_.nodes()) order.push_back(n.get());
    for (ir::Node* n : order) assign(*n);
    for (size_t i = 0; i < g_.outputs.size(); ++i) {
      ir::Value* v = g_.outputs[i];
      if (v->is_constant() || (v->dtype == out_dtype[i] && v->layout == ir::Layout::kLinear)) continue;
      const std::string name = v->name;
      g_.rename(v, g_.unique_name(name + "/internal"));
      ir::Value* y = convert(v, out_dtype[i], ir::Layout::kLinear, name);
      for (size_t j = 0; j < g_.outputs.size(); ++j)
        if (g_.outputs[j] == v) g_.outputs[j] = y;
    }
    g_.topo_sort();
    return inserted_;
  }

 private:
  void assign(ir::Node& n) {
    auto& reg = cuda::Registry::global();
    const cuda::OpTraits* t = reg.traits(n);
    if (!t) reg.tactics(n);  // throws kUnsupported naming the layer
    const bool half = o_.fp16 && runs_fp16(n) && !o_.fp32_layers.count(n.name);
    const bool strided = t->any_layout || t->prefers_nhwc;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      ir::Value* v = n.inputs[k];
      if (!v || !is_float(v->dtype)) continue;
      bool listed = false;
      for (int i : t->fp16_inputs) listed = listed || size_t(i) == k;
      const DataType want = half && listed ? DataType::kFloat16 : DataType::kFloat32;
      if (v->is_constant()) {
        if (v->dtype != want) n.inputs[k] = constant_as(v, want);
        continue;
      }
      ir::Layout l = strided ? v->layout : ir::Layout::kLinear;
      if (t->prefers_nhwc && half) l = ir::Layout::kNHWC;
      n.inputs[k] = convert(v, want, l);
    }
    n.precision = half ? DataType::kFloat16 : DataType::kFloat32;
    const ir::OpDef* def = ir::OpRegistry::global().find(n.domain, n.op_type);
    if (!def) throw_internal("assign_formats: " + n.label() + " has no op definition");
    def->infer(n);
    const ir::Value* x0 = n.in(0);
    for (ir::Value* y : n.outputs) {
      if (!y) continue;
      ir::Layout l = ir::Layout::kLinear;
      if (t->prefers_nhwc && half) l = ir::Layout::kNHWC;
      else if ((t->any_layout && t->out_layout == cuda::OpTraits::kLikeInput0) || (strided && keeps_input_layout(n)))
        l = x0 && x0->dims.size() == y->dims.size() ? x0->layout : ir::Layout::kLinear;
      y->layout = effective(*y, l);
    }
  }

  ir::Value* constant_as(ir::Value* v, DataType dt) {
    auto key = std::make_pair(v, dt);
    auto it = constants_.find(key);
    if (it != constants_.end()) return it->second;
    ir::Value* c = g_.add_constant(g_.unique_name(v->name + "/" + dtype_name(dt)), convert_constant(*v->constant, dt));
    c->batch_axis = v->batch_axis;
    return constants_[key] = c;
  }

  // v in dtype dt and layout l, through a shared Reformat layer if needed.
  ir::Value* convert(ir::Value* v, DataType dt, ir::Layout l, const std::string& name = "") {
    l = effective(*v, l);
    if (v->dtype == dt && v->layout == l) return v;
    auto key = std::make_tuple(v, dt, l);
    auto it = reformats_.find(key);
    if (it != reformats_.end()) return it->second;
    const std::string base = v->name + "/" + dtype_name(dt) + (l == ir::Layout::kNHWC ? "_nhwc" : "");
    ir::Value* y = g_.add_value(name.empty() ? g_.unique_name(base) : name);
    ir::Node* r = g_.add_node("Reformat", "reformat:" + y->name, {v}, {y});
    r->domain = "kiln";
    r->attrs["to"].kind = ir::Attribute::Kind::kInt;
    r->attrs["to"].i = int64_t(dt);
    r->precision = dt;
    ir::OpRegistry::global().find("kiln", "Reformat")->infer(*r);
    y->batch_axis = v->batch_axis;
    y->layout = l;
    ++inserted_;
    return reformats_[key] = y;
  }

  ir::Graph& g_;
  const Options& o_;
  int inserted_ = 0;
  std::map<std::tuple<ir::Value*, DataType, ir::Layout>, ir::Value*> reformats_;
  std::map<std::pair<ir::Value*, DataType>, ir::Value*> constants_;
};

}  // namespace

bool runs_fp16(const ir::Node& n) {
  const cuda::OpTraits* t = cuda::Registry::global().traits(n);
  if (!t || t->fp16_inputs.empty()) return false;
  bool float_out = false;
  for (const ir::Value* v : n.outputs) float_out = float_out || (v && is_float(v->dtype));
  return float_out;
}

int assign_formats(ir::Graph& g, const Options& o) { return FormatAssigner(g, o).run(); }

}  // namespace kiln::cuda_build
