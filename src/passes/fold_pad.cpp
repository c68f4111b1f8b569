// An explicit Pad in front of a Conv or pooling layer becomes that layer's
// own `pads`, so the padded copy of the activation is never materialized.
//
// When the two are equivalent:
//   Conv         zero padding (constant mode, value 0 or absent). Conv pads
//                are zeros too, whatever the group.
//   AveragePool  zero padding and count_include_pad=1: the zeros are counted
//                in the divisor exactly like the Pad's cells were.
//   MaxPool      padding with -inf only (MaxPool pads never win a max); a
//                zero pad would win over negative inputs, and -FLT_MAX differs
//                from pool padding when a window's inputs are all -inf. The
//                Indices output must be unused (it indexes the unpadded input).
// Only non-negative pads on spatial axes fold (a negative pad crops). Pools
// with ceil_mode=1 are left alone: their output size depends on where the
// data ends, which folding moves. Pool pads must stay smaller than the
// window, as the op requires.
#include <cmath>
#include <limits>

#include "ir/ops/tensor_params.h"
#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

enum class PadValue { kZero, kNegInf, kOther };

PadValue pad_value(const ir::Node& pad) {
  const ir::Value* cv = pad.in(2);
  if (!cv) return PadValue::kZero;
  const ir::Tensor* t = constant_of(cv);
  if (!t) return PadValue::kOther;  // decided at run time
  if (t->numel() == 0) return PadValue::kZero;
  if (t->numel() != 1) return PadValue::kOther;
  double v = t->to_double()[0];
  if (v == 0.0) return PadValue::kZero;
  if (std::isinf(v) && v < 0) return PadValue::kNegInf;
  return PadValue::kOther;
}

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

// Spatial pads (begins then ends) that `pad` adds to its rank-`r` input, or
// false when it is not a plain non-negative constant pad of spatial axes.
bool spatial_pads(const ir::Node& pad, ir::Dims& out) {
  const ir::Value* x = pad.in(0);
  if (!x || !x->has_shape || x->dims.size() < 3) return false;
  if (!pad.in(1) || !constant_of(pad.in(1))) return false;
  if (pad.in(3) && !constant_of(pad.in(3))) return false;
  ir::PadParams p = ir::pad_params(pad);  // validated by inference already
  if (p.mode != "constant") return false;
  const size_t r = x->dims.size(), s = r - 2;
  for (size_t a = 0; a < r; ++a)
    if (p.begin[a] < 0 || p.end[a] < 0) return false;  // cropping
  if (p.begin[0] || p.end[0] || p.begin[1] || p.end[1]) return false;
  out.assign(2 * s, 0);
  for (size_t i = 0; i < s; ++i) {
    out[i] = p.begin[i + 2];
    out[i + s] = p.end[i + 2];
  }
  return true;
}

// Whether `layer` can take `extra` pads on top of its own (already explicit,
// as inference leaves them) given what the Pad fills with.
bool layer_accepts(const ir::Graph& g, const ir::Node& layer, PadValue value, const ir::Dims& extra) {
  const std::string& op = layer.op_type;
  if (layer.s("auto_pad", "NOTSET") != "NOTSET") return false;
  const ir::Dims pads = layer.ints("pads");
  if (pads.size() != extra.size()) return false;
  if (op == "Conv") return value == PadValue::kZero;
  if (layer.i("ceil_mode", 0) != 0) return false;
  if (op == "AveragePool") {
    if (value != PadValue::kZero || layer.i("count_include_pad", 0) != 1) return false;
  } else if (op == "MaxPool") {
    if (value != PadValue::kNegInf) return false;
    if (layer.outputs.size() > 1 && layer.outputs[1] &&
        (!g.consumers(layer.outputs[1]).empty() || is_graph_output(g, layer.outputs[1])))
      return false;
  } else {
    return false;
  }
  // Pools require every pad to be smaller than the (dilated) window.
  const ir::Dims k = layer.ints("kernel_shape"), d = layer.ints("dilations", ir::Dims(k.size(), 1));
  const size_t s = extra.size() / 2;
  if (k.size() != s || d.size() != s) return false;
  for (size_t i = 0; i < s; ++i) {
    const int64_t window = (k[i] - 1) * d[i] + 1;
    if (pads[i] + extra[i] >= window || pads[i + s] + extra[i + s] >= window) return false;
  }
  return true;
}

class FoldPad : public RewriteRule {
 public:
  const char* name() const override { return "fold_pad"; }
  std::vector<std::string> targets() const override { return {"Pad"}; }

  bool apply(ir::Graph& g, ir::Node& pad, PassContext& ctx) override {
    if (pad.outputs.size() != 1 || !pad.outputs[0]) return false;
    ir::Value* x = pad.in(0);
    ir::Value* y = pad.outputs[0];
    if (!x || !is_float(x->dtype)) return false;
    ir::Node* layer = sole_consumer(g, y);
    if (!layer || !layer->domain.empty() || layer->inputs.empty() || layer->inputs[0] != y) return false;
    const std::string& op = layer->op_type;
    if (op != "Conv" && op != "AveragePool" && op != "MaxPool") return false;
    for (size_t k = 1; k < layer->inputs.size(); ++k)
      if (layer->inputs[k] == y) return false;  // also the weight: Pad must stay
    PadValue value = pad_value(pad);
    if (value == PadValue::kOther) return false;
    ir::Dims extra;
    if (!spatial_pads(pad, extra) || !layer_accepts(g, *layer, value, extra)) return false;

    ir::Dims pads = layer->ints("pads");
    for (size_t i = 0; i < pads.size(); ++i) pads[i] += extra[i];
    ir::Attribute a;
    a.kind = ir::Attribute::Kind::kInts;
    a.ints = pads;
    layer->attrs["pads"] = a;
    layer->inputs[0] = x;
    absorb_upstream(*layer, pad);
    g.remove_node(&pad);
    ctx.note(fused_label(*layer) + " -> " + op + " (pads " + shape_str(pads) + ")");
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> make_fold_pad() { return std::make_unique<FoldPad>(); }

}  // namespace kiln::passes
