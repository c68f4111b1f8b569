// Shape/type inference for the broadcasting multi-input ops: arithmetic,
// comparisons, logic, variadic Sum/Mean/Max/Min, Where and PRelu.
#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::ir {

namespace {

enum class In { kNumeric, kFloat, kBool, kAny, kUnsigned, kInt };
enum class Out { kSame, kBool };

bool accepts(In c, DataType t) {
  switch (c) {
    case In::kNumeric: return t != DataType::kBool;
    case In::kFloat: return t == DataType::kFloat32 || t == DataType::kFloat16;
    case In::kBool: return t == DataType::kBool;
    case In::kUnsigned: return t == DataType::kUInt8;
    case In::kInt: return t != DataType::kBool && t != DataType::kFloat32 && t != DataType::kFloat16;
    case In::kAny: return true;
  }
  return false;
}
const char* class_name(In c) {
  switch (c) {
    case In::kNumeric: return "numeric";
    case In::kFloat: return "floating-point (fp32/fp16)";
    case In::kBool: return "bool";
    case In::kUnsigned: return "unsigned integer";
    case In::kInt: return "integer";
    case In::kAny: return "any";
  }
  return "?";
}

void check_class(const Node& n, const Value& v, In c) {
  if (!accepts(c, v.dtype))
    throw_bad_input(n.label() + ": input '" + v.name + "' has dtype " + dtype_name(v.dtype) + " but " + n.op_type +
                    " takes " + class_name(c) + " tensors");
}

// All present inputs share one dtype and broadcast together (numpy rules).
InferFn broadcasting(In in_class, Out out, size_t min_inputs, size_t max_inputs) {
  return [=](Node& n) {
    size_t count = 0;
    for (Value* v : n.inputs) count += v != nullptr;
    if (count < min_inputs || n.inputs.size() > max_inputs || count != n.inputs.size())
      throw_bad_input(n.label() + ": expects " +
                      (min_inputs == max_inputs ? std::to_string(min_inputs)
                                                : "at least " + std::to_string(min_inputs)) +
                      " inputs, got " + std::to_string(count));
    const Value& a = input_checked(n, 0);
    check_class(n, a, in_class);
    Dims dims = a.dims;
    for (size_t k = 1; k < n.inputs.size(); ++k) {
      const Value& b = input_checked(n, k);
      if (b.dtype != a.dtype)
        throw_bad_input(n.label() + ": inputs '" + a.name + "' (" + dtype_name(a.dtype) + ") and '" + b.name +
                        "' (" + dtype_name(b.dtype) + ") must have the same dtype");
      dims = broadcast_dims(n, dims, b.dims);
    }
    set_output(n, 0, out == Out::kBool ? DataType::kBool : a.dtype, dims);
  };
}

// Pow: base and exponent may differ in dtype; the output takes the base's.
void infer_pow(Node& n) {
  const Value& a = input_checked(n, 0);
  const Value& b = input_checked(n, 1);
  check_class(n, a, In::kNumeric);
  check_class(n, b, In::kNumeric);
  set_output(n, 0, a.dtype, broadcast_dims(n, a.dims, b.dims));
}

void infer_bitshift(Node& n) {
  std::string dir = n.s("direction", "");
  if (dir != "LEFT" && dir != "RIGHT")
    throw_bad_input(n.label() + ": attribute direction must be 'LEFT' or 'RIGHT', got '" + dir + "'");
  broadcasting(In::kUnsigned, Out::kSame, 2, 2)(n);
}

void infer_mod(Node& n) {
  int64_t fmod = n.i("fmod", 0);
  if (fmod != 0 && fmod != 1) throw_bad_input(n.label() + ": attribute fmod must be 0 or 1");
  broadcasting(In::kNumeric, Out::kSame, 2, 2)(n);
}

void infer_where(Node& n) {
  const Value& c = input_checked(n, 0);
  const Value& x = input_checked(n, 1);
  const Value& y = input_checked(n, 2);
  if (c.dtype != DataType::kBool)
    throw_bad_input(n.label() + ": condition '" + c.name + "' must be bool, got " + dtype_name(c.dtype));
  if (x.dtype != y.dtype)
    throw_bad_input(n.label() + ": inputs '" + x.name + "' (" + dtype_name(x.dtype) + ") and '" + y.name + "' (" +
                    dtype_name(y.dtype) + ") must have the same dtype");
  set_output(n, 0, x.dtype, broadcast_dims(n, broadcast_dims(n, c.dims, x.dims), y.dims));
}

// PRelu broadcasts slope onto X only (unidirectional): the output is X's shape.
void infer_prelu(Node& n) {
  const Value& x = input_checked(n, 0);
  const Value& s = input_checked(n, 1);
  check_class(n, x, In::kNumeric);
  if (s.dtype != x.dtype)
    throw_bad_input(n.label() + ": slope '" + s.name + "' has dtype " + dtype_name(s.dtype) + ", X has " +
                    dtype_name(x.dtype));
  if (broadcast_dims(n, x.dims, s.dims) != x.dims)
    throw_bad_input(n.label() + ": slope shape " + shape_str(s.dims) + " does not broadcast to X shape " +
                    shape_str(x.dims));
  set_output(n, 0, x.dtype, x.dims);
}

}  // namespace

void register_binary_ops(OpRegistry& r) {
  auto add = [&](const char* op, InferFn f) { r.add({"", op, std::move(f)}); };
  for (const char* op : {"Add", "Sub", "Mul", "Div"}) add(op, broadcasting(In::kNumeric, Out::kSame, 2, 2));
  for (const char* op : {"Max", "Min", "Sum"}) add(op, broadcasting(In::kNumeric, Out::kSame, 1, 1 << 20));
  add("Mean", broadcasting(In::kFloat, Out::kSame, 1, 1 << 20));
  add("Equal", broadcasting(In::kAny, Out::kBool, 2, 2));
  for (const char* op : {"Less", "Greater", "LessOrEqual", "GreaterOrEqual"})
    add(op, broadcasting(In::kNumeric, Out::kBool, 2, 2));
  for (const char* op : {"And", "Or", "Xor"}) add(op, broadcasting(In::kBool, Out::kBool, 2, 2));
  for (const char* op : {"BitwiseAnd", "BitwiseOr", "BitwiseXor"}) add(op, broadcasting(In::kInt, Out::kSame, 2, 2));
  add("Pow", infer_pow);
  add("Mod", infer_mod);
  add("BitShift", infer_bitshift);
  add("Where", infer_where);
  add("PRelu", infer_prelu);
}

}  // namespace kiln::ir
