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
//
// INT8 (after quant::assign_int8, which rewrites Convs to kiln::QConv and
// inserts the float <-> int8 Reformats with their scales): an int8 value
// never changes dtype here, only layout (int8 -> int8 Reformats). QConv reads
// X and an int8 Z channels-last and writes Y channels-last; a float Z keeps
// its dtype (FP16 when Y is FP16, which the tensor-core kernels pair).
// QConv's float output and a dequantizing Reformat's output run FP16 when
// the build allows it and every reader takes FP16. A quantizing Reformat
// takes its float input as it comes and writes channels-last when a QConv
// reads the result (through int8 MaxPools, which keep their input layout).
#include <map>
#include <tuple>

#include "backends/cuda/kernel.h"
#include "builder/cuda/cuda_build.h"
#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::cuda_build {

namespace {

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

bool is_qconv(const ir::Node& n) { return n.domain == "kiln" && n.op_type == "QConv"; }
bool is_reformat(const ir::Node& n) { return n.domain == "kiln" && n.op_type == "Reformat"; }

// A Reformat the quantization pass inserted: float -> int8 or int8 -> float.
bool quantizes(const ir::Node& n) {
  return is_reformat(n) && n.in(0) && is_float(n.in(0)->dtype) && n.i("to", -1) == int64_t(DataType::kInt8);
}
bool dequantizes(const ir::Node& n) {
  return is_reformat(n) && n.in(0) && n.in(0)->dtype == DataType::kInt8 && n.i("to", -1) != int64_t(DataType::kInt8);
}

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
    const bool qconv = is_qconv(n), quant = quantizes(n), dequant = dequantizes(n);
    // QConv's output dtype: int8, or the float its readers want.
    DataType qconv_out = DataType::kFloat32;
    if (qconv && !n.outputs.empty() && n.outputs[0]) {
      const int64_t to = n.i("to", int64_t(n.outputs[0]->dtype));
      qconv_out = to == int64_t(DataType::kInt8) ? DataType::kInt8 : float_for_readers(n.outputs[0], DataType(to));
    }
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      ir::Value* v = n.inputs[k];
      if (!v) continue;
      if (v->dtype == DataType::kInt8 && !v->is_constant()) {
        // Layout only: dtype changes were placed, with scales, by the quantization pass.
        ir::Layout l = strided ? v->layout : ir::Layout::kLinear;
        if (qconv && (k == 0 || k == 3)) l = ir::Layout::kNHWC;
        n.inputs[k] = convert(v, DataType::kInt8, l);
        continue;
      }
      if (!is_float(v->dtype)) continue;
      if (qconv) {
        // B stays an FP32 constant; a float residual is read channels-last.
        if (v->is_constant()) continue;
        n.inputs[k] = convert(v, qconv_out == DataType::kFloat16 ? DataType::kFloat16 : v->dtype, ir::Layout::kNHWC);
        continue;
      }
      if (quant) continue;  // any float dtype and layout
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
    if (qconv) set_to(n, qconv_out);
    if (dequant && n.outputs.size() == 1 && n.outputs[0]) {
      const DataType declared = DataType(n.i("to", int64_t(DataType::kFloat32)));
      set_to(n, o_.fp32_layers.count(n.name) ? declared : float_for_readers(n.outputs[0], declared));
    }
    n.precision = half ? DataType::kFloat16 : DataType::kFloat32;
    const ir::OpDef* def = ir::OpRegistry::global().find(n.domain, n.op_type);
    if (!def) throw_internal("assign_formats: " + n.label() + " has no op definition");
    def->infer(n);
    const ir::Value* x0 = n.in(0);
    if (qconv || (n.domain.empty() && n.op_type == "MaxPool" && x0 && x0->dtype == DataType::kInt8))
      n.precision = DataType::kInt8;
    if (quant || dequant) n.precision = n.outputs[0]->dtype;
    for (ir::Value* y : n.outputs) {
      if (!y) continue;
      ir::Layout l = ir::Layout::kLinear;
      if (qconv) l = ir::Layout::kNHWC;
      else if (quant) l = int8_wants_nhwc(y, 0) ? ir::Layout::kNHWC : x0->layout;
      else if (dequant) l = strided_readers(y) ? x0->layout : ir::Layout::kLinear;
      else if (t->prefers_nhwc && half) l = ir::Layout::kNHWC;
      else if ((t->any_layout && t->out_layout == cuda::OpTraits::kLikeInput0) || (strided && keeps_input_layout(n)))
        l = x0 && x0->dims.size() == y->dims.size() ? x0->layout : ir::Layout::kLinear;
      y->layout = effective(*y, l);
    }
  }

  static void set_to(ir::Node& n, DataType dt) {
    ir::Attribute& a = n.attrs["to"];
    a.kind = ir::Attribute::Kind::kInt;
    a.i = int64_t(dt);
  }

  // Whether reader `c` would run in FP16 (the rule assign applies to it).
  bool runs_half(const ir::Node& c) const { return o_.fp16 && runs_fp16(c) && !o_.fp32_layers.count(c.name); }

  // The float dtype for `v` (written by QConv or a dequantizing Reformat),
  // declared `declared`: FP16 when the build allows it and every reader
  // takes FP16 (QConv and quantizing Reformats take either), else `declared`.
  DataType float_for_readers(const ir::Value* v, DataType declared) const {
    if (!o_.fp16) return declared;
    bool any_half = false, any_fp32 = false;
    for (const ir::Node* c : g_.consumers(v)) {
      if (is_qconv(*c) || quantizes(*c)) continue;
      const cuda::OpTraits* ct = cuda::Registry::global().traits(*c);
      const bool half_c = ct && runs_half(*c);
      for (size_t k = 0; k < c->inputs.size(); ++k) {
        if (c->inputs[k] != v) continue;
        bool listed = false;
        if (ct)
          for (int i : ct->fp16_inputs) listed = listed || size_t(i) == k;
        (half_c && listed ? any_half : any_fp32) = true;
      }
    }
    for (const ir::Value* o : g_.outputs)
      if (o == v) (o->dtype == DataType::kFloat16 ? any_half : any_fp32) = true;
    return any_fp32 ? declared : DataType::kFloat16;
  }

  // An int8 value a QConv reads as X or Z, directly or through int8 MaxPools.
  bool int8_wants_nhwc(const ir::Value* v, int depth) const {
    if (v->dims.size() != 4 || depth > 32) return false;
    for (const ir::Node* c : g_.consumers(v)) {
      if (is_qconv(*c) && (c->in(0) == v || c->in(3) == v)) return true;
      if (c->domain.empty() && c->op_type == "MaxPool" && c->in(0) == v && !c->outputs.empty() && c->outputs[0] &&
          int8_wants_nhwc(c->outputs[0], depth + 1))
        return true;
    }
    return false;
  }

  // Every reader of `v` takes any layout (and `v` is not a graph output).
  bool strided_readers(const ir::Value* v) const {
    for (const ir::Value* o : g_.outputs)
      if (o == v) return false;
    const std::vector<ir::Node*> readers = g_.consumers(v);
    for (const ir::Node* c : readers) {
      const cuda::OpTraits* ct = cuda::Registry::global().traits(*c);
      if (!ct || !(ct->any_layout || ct->prefers_nhwc)) return false;
    }
    return !readers.empty();
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
