// Shape inference for kiln-internal ops that fusion passes create (domain
// "kiln"). They never come from a model file, but a plan file can carry
// anything, so every attribute is checked before a kernel trusts it.
//
// FusedElementwise: inputs [x0, operands...]; a chain of element-wise ops
// applied to x0 in order. Per op (all lists have one entry per op):
//   ops     - op type ("Relu", "Mul", ...)
//   operand - -1 for a unary op, else the node-input index of the binary op's
//             other operand (0 = x0 itself: x * Sigmoid(x))
//   swap    - 1 when the chain value is the right-hand operand (Sub(c, v))
//   alpha/beta - op parameters (LeakyRelu/Elu alpha, HardSigmoid alpha/beta,
//             Clip min/max), 0 where unused
// The output has the numpy broadcast of all input dims; fp32, or fp16 when
// every input is fp16 (GPU plans).
#include <cmath>
#include <set>

#include "ir/fused_elementwise.h"
#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::ir {

namespace {

const Attribute& list_attr(const Node& n, const char* name, Attribute::Kind kind, const char* what) {
  auto it = n.attrs.find(name);
  if (it == n.attrs.end())
    throw_bad_input(n.label() + ": attribute '" + name + "' is missing (" + what + ")");
  if (it->second.kind != kind)
    throw_bad_input(n.label() + ": attribute '" + name + "' has the wrong type (" + what + ")");
  return it->second;
}

void check_size(const Node& n, const char* name, size_t got, size_t want) {
  if (got != want)
    throw_bad_input(n.label() + ": attribute '" + name + "' has " + std::to_string(got) + " entries, expected " +
                    std::to_string(want) + " (one per fused op)");
}

void infer_fused_elementwise(Node& n) {
  using K = Attribute::Kind;
  const auto& ops = list_attr(n, "ops", K::kStrings, "the fused op types in order").strings;
  const auto& operand = list_attr(n, "operand", K::kInts, "-1 or an input index per op").ints;
  const auto& swap = list_attr(n, "swap", K::kInts, "0 or 1 per op").ints;
  const auto& alpha = list_attr(n, "alpha", K::kFloats, "a parameter per op").floats;
  const auto& beta = list_attr(n, "beta", K::kFloats, "a parameter per op").floats;
  if (ops.empty()) throw_bad_input(n.label() + ": attribute 'ops' is empty; it needs at least one op");
  check_size(n, "operand", operand.size(), ops.size());
  check_size(n, "swap", swap.size(), ops.size());
  check_size(n, "alpha", alpha.size(), ops.size());
  check_size(n, "beta", beta.size(), ops.size());

  if (n.inputs.empty()) throw_bad_input(n.label() + ": needs at least one input (x0)");
  Dims dims;
  for (size_t k = 0; k < n.inputs.size(); ++k) {
    const Value& v = input_checked(n, k);
    // FP16 only where a GPU builder lowered the whole node (every input FP16).
    const DataType want = input_checked(n, 0).dtype == DataType::kFloat16 ? DataType::kFloat16 : DataType::kFloat32;
    if (v.dtype != want)
      throw_unsupported(n.label() + ": input '" + v.name + "' has dtype " + dtype_name(v.dtype) +
                        "; FusedElementwise computes fp32 (or fp16 throughout)");
    dims = k == 0 ? v.dims : broadcast_dims(n, dims, v.dims);
  }

  const int64_t num_inputs = int64_t(n.inputs.size());
  for (size_t j = 0; j < ops.size(); ++j) {
    const std::string at = " (op " + std::to_string(j) + " '" + ops[j] + "')";
    const bool unary = fusable_unary(ops[j]);
    if (!unary && !fusable_binary(ops[j]))
      throw_bad_input(n.label() + ": op " + std::to_string(j) + " '" + ops[j] +
                      "' cannot be fused; supported are Relu, LeakyRelu, Sigmoid, HardSigmoid, HardSwish, Tanh, "
                      "Exp, Neg, Abs, Sqrt, Clip, Erf, Elu, Softplus, Add, Sub, Mul, Div, Max, Min, Pow");
    if (unary && operand[j] != -1)
      throw_bad_input(n.label() + ": operand of a unary op must be -1, got " + std::to_string(operand[j]) + at);
    if (!unary && (operand[j] < 0 || operand[j] >= num_inputs))
      throw_bad_input(n.label() + ": operand " + std::to_string(operand[j]) + " is not an input index in [0, " +
                      std::to_string(num_inputs) + ")" + at);
    if (swap[j] != 0 && swap[j] != 1)
      throw_bad_input(n.label() + ": swap must be 0 or 1, got " + std::to_string(swap[j]) + at);
    if (unary && swap[j] != 0) throw_bad_input(n.label() + ": swap must be 0 for a unary op" + at);
  }
  if (n.outputs.size() != 1 || !n.outputs[0])
    throw_bad_input(n.label() + ": has exactly one output, got " + std::to_string(n.outputs.size()));
  set_output(n, 0, input_checked(n, 0).dtype, dims);
}

// Reformat: [x] -> y with x's dims, dtype `to` (a DataType code) and the
// layout the builder gave y. Inserted by builders where precisions or
// layouts change between layers; it copies, converting both. INT8 edges
// carry `scale` (finite > 0): float -> int8 is saturate(round_half_even(x /
// scale)), int8 -> float is q * scale; int8 -> int8 only changes the layout.
void infer_reformat(Node& n) {
  if (n.inputs.size() != 1 || n.outputs.size() != 1 || !n.outputs[0])
    throw_bad_input(n.label() + ": Reformat has one input and one output");
  const Value& x = input_checked(n, 0);
  const int64_t to = n.i("to", int64_t(x.dtype));
  auto convertible = [](int64_t t) {
    return t == int64_t(DataType::kFloat32) || t == int64_t(DataType::kFloat16) || t == int64_t(DataType::kInt8);
  };
  if (!convertible(to))
    throw_bad_input(n.label() + ": Reformat converts to fp32, fp16 or int8, got dtype code " + std::to_string(to));
  if (!convertible(int64_t(x.dtype)))
    throw_bad_input(n.label() + ": Reformat converts fp32/fp16/int8 inputs only, got " + dtype_name(x.dtype));
  const bool int8_in = x.dtype == DataType::kInt8, int8_out = to == int64_t(DataType::kInt8);
  if ((int8_in || int8_out) && int8_in != int8_out) {
    if (!n.has("scale"))
      throw_bad_input(n.label() + ": attribute 'scale' is missing; a Reformat between int8 and float needs the "
                      "int8 tensor's quantization scale");
    const float s = n.f("scale", 0.f);
    if (!std::isfinite(s) || !(s > 0.f))
      throw_bad_input(n.label() + ": attribute 'scale' is " + std::to_string(s) + "; it must be finite and > 0");
  }
  set_output(n, 0, DataType(to), x.dims);
}

}  // namespace

void register_qconv_ops(OpRegistry& r);  // qconv.cpp: the INT8 convolution, also kiln-internal

void register_fused_ops(OpRegistry& r) {
  r.add({"kiln", "FusedElementwise", infer_fused_elementwise});
  r.add({"kiln", "Reformat", infer_reformat});
  register_qconv_ops(r);
}

bool fusable_unary(const std::string& op) {
  static const std::set<std::string> s = {"Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish",
                                          "Tanh", "Exp",       "Neg",     "Abs",         "Sqrt",
                                          "Clip", "Erf",       "Elu",     "Softplus"};
  return s.count(op) != 0;
}

bool fusable_binary(const std::string& op) {
  static const std::set<std::string> s = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"};
  return s.count(op) != 0;
}

}  // namespace kiln::ir
