// Shape/type inference for the one-input element-wise ops: the output has
// the input's dims; the dtype is the input's except for the predicates
// (IsNaN, IsInf -> bool). Dtype classes follow the ONNX type constraints.
#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::ir {

namespace {

enum class Kind { kFloat, kSigned, kNumeric, kInt, kBool, kPredicate };

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }
bool is_signed(DataType t) {
  return is_float(t) || t == DataType::kInt8 || t == DataType::kInt32 || t == DataType::kInt64;
}

void check_kind(const Node& n, const Value& x, Kind kind) {
  bool ok = false;
  const char* want = "";
  switch (kind) {
    case Kind::kFloat:
    case Kind::kPredicate: ok = is_float(x.dtype); want = "a floating-point (fp32/fp16)"; break;
    case Kind::kSigned: ok = is_signed(x.dtype); want = "a signed numeric"; break;
    case Kind::kNumeric: ok = x.dtype != DataType::kBool; want = "a numeric"; break;
    case Kind::kInt: ok = x.dtype != DataType::kBool && !is_float(x.dtype); want = "an integer"; break;
    case Kind::kBool: ok = x.dtype == DataType::kBool; want = "a bool"; break;
  }
  if (!ok)
    throw_bad_input(n.label() + ": input '" + x.name + "' has dtype " + dtype_name(x.dtype) + " but " + n.op_type +
                    " takes " + want + " tensor");
}

InferFn unary(Kind kind) {
  return [kind](Node& n) {
    const Value& x = input_checked(n, 0);
    check_kind(n, x, kind);
    set_output(n, 0, kind == Kind::kPredicate ? DataType::kBool : x.dtype, x.dims);
  };
}

void infer_gelu(Node& n) {
  std::string a = n.s("approximate", "none");
  if (a != "none" && a != "tanh")
    throw_bad_input(n.label() + ": attribute approximate='" + a + "' is not 'none' or 'tanh'");
  unary(Kind::kFloat)(n);
}

// min/max (inputs 1, 2) are optional one-element tensors of the input dtype.
void infer_clip(Node& n) {
  const Value& x = input_checked(n, 0);
  check_kind(n, x, Kind::kNumeric);
  for (size_t k = 1; k < 3; ++k) {
    const Value* b = n.in(k);
    if (!b) continue;
    if (b->dtype != x.dtype)
      throw_bad_input(n.label() + ": bound '" + b->name + "' has dtype " + dtype_name(b->dtype) +
                      ", the input has " + dtype_name(x.dtype));
    if (numel_of(b->dims) != 1)
      throw_bad_input(n.label() + ": bound '" + b->name + "' must hold one value, it has shape " +
                      shape_str(b->dims));
  }
  set_output(n, 0, x.dtype, x.dims);
}

}  // namespace

void register_unary_ops(OpRegistry& r) {
  auto add = [&](const char* op, InferFn f) { r.add({"", op, std::move(f)}); };
  for (const char* op : {"Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Exp", "Log", "Sqrt", "Reciprocal",
                         "Floor", "Ceil", "Round", "Erf", "Softplus", "Softsign", "Elu", "Selu", "Celu",
                         "ThresholdedRelu", "Mish", "LeakyRelu", "Swish", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan",
                         "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"})
    add(op, unary(Kind::kFloat));
  add("Gelu", infer_gelu);
  add("Relu", unary(Kind::kSigned));
  add("Neg", unary(Kind::kSigned));
  add("Abs", unary(Kind::kNumeric));
  add("Sign", unary(Kind::kNumeric));
  add("Shrink", unary(Kind::kNumeric));
  add("BitwiseNot", unary(Kind::kInt));
  add("Not", unary(Kind::kBool));
  add("IsNaN", unary(Kind::kPredicate));
  add("IsInf", unary(Kind::kPredicate));
  add("Clip", infer_clip);
}

}  // namespace kiln::ir
