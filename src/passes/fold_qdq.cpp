// Explicit quantization in: an activation's QuantizeLinear -> DequantizeLinear
// pair (what TensorRT's toolkits and kiln calibrate -o write) becomes a plain
// edge, and its scale is kept in the graph's metadata,
//   g.metadata["int8_scale/<x>"] = the float32 bit pattern of the scale as 8
//   lowercase hex digits (the calibration cache's encoding),
// for the INT8 builder to use as the scale of tensor x:
//
//   DequantizeLinear(QuantizeLinear(x, s, zp), s', zp')  =>  x
//
// Only the pairs kiln's INT8 layers can honour fold: s and s' scalar float32
// constants with the same bits; the quantized type int8 (QuantizeLinear
// without a zero point yields uint8, unless opset 21's output_dtype says
// int8); both zero points 0 (absent on the DequantizeLinear means 0); the
// QuantizeLinear output read by this DequantizeLinear only; x and the result
// of the same dtype and dims. Anything else stays as real ops, which compute
// exactly what ONNX says. The result differs from the pair's by the rounding
// the pair applied: that is the point (the INT8 layers round instead).
// DequantizeLinear of constant int8 weights is not this pass's business:
// fold_constants evaluates it into float weights.
#include <cstdio>
#include <cstring>

#include "passes/graph_utils.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// The value of a one-element float32 constant (rank 0, or rank 1 as
// onnxruntime also reads per tensor), as raw bits.
bool scalar_scale_bits(const ir::Value* v, uint32_t* bits) {
  const ir::Tensor* t = constant_of(v);
  if (!t || t->dtype() != DataType::kFloat32 || t->numel() != 1 || t->rank() > 1) return false;
  std::memcpy(bits, t->raw(), sizeof(uint32_t));
  float f;
  std::memcpy(&f, bits, sizeof f);
  return f > 0.f && f <= 3.4028235e38f;  // finite and positive: a usable INT8 scale
}

// Absent (when allowed), or a one-element int8 constant holding 0.
bool int8_zero(const ir::Value* v, bool absent_ok) {
  if (!v) return absent_ok;
  const ir::Tensor* t = constant_of(v);
  return t && t->dtype() == DataType::kInt8 && t->numel() == 1 && t->rank() <= 1 && t->data<int8_t>()[0] == 0;
}

std::string hex8(uint32_t bits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", unsigned(bits));
  return buf;
}

class FoldQdq : public RewriteRule {
 public:
  const char* name() const override { return "fold_qdq"; }
  std::vector<std::string> targets() const override { return {"DequantizeLinear"}; }

  bool apply(ir::Graph& g, ir::Node& dq, PassContext& ctx) override {
    if (dq.outputs.size() != 1 || !dq.outputs[0]) return false;
    ir::Value* q_out = dq.in(0);
    if (!q_out || !q_out->producer) return false;
    ir::Node& q = *q_out->producer;
    if (q.op_type != "QuantizeLinear" || !q.domain.empty() || q.outputs.size() != 1) return false;
    ir::Value* x = q.in(0);
    ir::Value* y = dq.outputs[0];
    if (!x || x->is_constant() || q_out->dtype != DataType::kInt8) return false;
    if (x->dtype != y->dtype || x->dims != y->dims || !x->has_shape) return false;
    uint32_t s = 0, s2 = 0;
    if (!scalar_scale_bits(q.in(1), &s) || !scalar_scale_bits(dq.in(1), &s2) || s != s2) return false;
    // QuantizeLinear: int8 output already checked, so an absent zero point
    // means opset 21's output_dtype=int8 with zero point 0.
    if (!int8_zero(q.in(2), true) || !int8_zero(dq.in(2), true)) return false;
    if (sole_consumer(g, q_out) != &dq || !can_reroute(g, y, x)) return false;

    const std::string q_label = q.label(), dq_label = dq.label(), x_old = x->name;
    reroute(g, y, x);  // x takes y's name if y is a graph output
    g.remove_node(&dq);
    g.remove_node(&q);
    // A scale recorded for x under its old name follows the rename.
    auto moved = g.metadata.find("int8_scale/" + x_old);
    if (x->name != x_old && moved != g.metadata.end()) {
      g.metadata.emplace("int8_scale/" + x->name, moved->second);
      g.metadata.erase(moved);
    }

    float f;
    std::memcpy(&f, &s, sizeof f);
    const std::string key = "int8_scale/" + x->name, value = hex8(s);
    char scale_text[32];
    std::snprintf(scale_text, sizeof scale_text, "%.9g", double(f));
    std::string note = q_label + " + " + dq_label + " on '" + x->name + "' removed (int8 scale " + scale_text +
                       " = 0x" + value + ")";
    auto it = g.metadata.find(key);
    if (it == g.metadata.end()) g.metadata[key] = value;
    else if (it->second != value)
      note += "; '" + x->name + "' already had scale 0x" + it->second + " from another pair, which is kept";
    ctx.note(note);
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> make_fold_qdq() { return std::make_unique<FoldQdq>(); }

}  // namespace kiln::passes
