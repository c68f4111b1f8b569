// Shape/type inference for Cast, CastLike, ConstantOfShape, Range and
// EyeLike. Dtype attributes (Cast.to, EyeLike.dtype) hold ONNX
// TensorProto.DataType numbers, as in the model file. ConstantOfShape and
// Range shape their output from input values, which must be constants.
#include <cmath>

#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::ir {

namespace {

// ONNX TensorProto.DataType -> kiln dtype; kUnsupported for the others.
DataType from_onnx_dtype(const Node& n, int64_t code, const char* attr) {
  switch (code) {
    case 1: return DataType::kFloat32;
    case 2: return DataType::kUInt8;
    case 3: return DataType::kInt8;
    case 6: return DataType::kInt32;
    case 7: return DataType::kInt64;
    case 9: return DataType::kBool;
    case 10: return DataType::kFloat16;
    default: break;
  }
  static const char* names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
                                "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
                                "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
                                "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0"};
  const int64_t known = int64_t(sizeof(names) / sizeof(names[0]));
  std::string name = code >= 0 && code < known ? names[code] : "type " + std::to_string(code);
  throw_unsupported(n.label() + ": " + attr + "=" + name +
                    " is not a kiln dtype (kiln supports fp32, fp16, int8, uint8, int32, int64, bool)");
}

const Tensor& constant_input(const Node& n, size_t k) {
  const Value& v = input_checked(n, k);
  if (!v.is_constant())
    throw_unsupported(n.label() + ": input '" + v.name + "' must be a constant (kiln needs static shapes)");
  return *v.constant;
}

void infer_cast(Node& n) {
  const Value& x = input_checked(n, 0);
  if (!n.has("to")) throw_bad_input(n.label() + ": required attribute 'to' is missing");
  set_output(n, 0, from_onnx_dtype(n, n.i("to", 0), "to"), x.dims);
}

void infer_cast_like(Node& n) {
  const Value& x = input_checked(n, 0);
  const Value& like = input_checked(n, 1);
  set_output(n, 0, like.dtype, x.dims);
}

void infer_constant_of_shape(Node& n) {
  const Tensor& shape = constant_input(n, 0);
  if (shape.dtype() != DataType::kInt64 || shape.rank() > 1)
    throw_bad_input(n.label() + ": shape input must be a 1-D int64 tensor, got " + dtype_name(shape.dtype()) +
                    shape_str(shape.dims()));
  Dims dims = shape.to_int64();
  for (int64_t d : dims)
    if (d < 0) throw_bad_input(n.label() + ": shape " + shape_str(dims) + " has a negative dimension");
  DataType dt = DataType::kFloat32;
  auto it = n.attrs.find("value");
  if (it != n.attrs.end()) {
    if (it->second.kind != Attribute::Kind::kTensor || it->second.t.numel() != 1)
      throw_bad_input(n.label() + ": attribute 'value' must be a one-element tensor");
    dt = it->second.t.dtype();
  }
  set_output(n, 0, dt, dims);
}

void infer_range(Node& n) {
  const Tensor& start = constant_input(n, 0);
  const Tensor& limit = constant_input(n, 1);
  const Tensor& delta = constant_input(n, 2);
  const DataType dt = start.dtype();
  for (const Tensor* t : {&start, &limit, &delta}) {
    if (t->dtype() != dt)
      throw_bad_input(n.label() + ": start, limit and delta must have the same dtype");
    if (t->numel() != 1) throw_bad_input(n.label() + ": start, limit and delta must be scalars");
  }
  if (dt != DataType::kFloat32 && dt != DataType::kInt32 && dt != DataType::kInt64)
    throw_bad_input(n.label() + ": dtype " + dtype_name(dt) + " is not one Range takes (fp32, int32, int64)");
  int64_t count = 0;
  if (dt == DataType::kFloat32) {
    double s = start.to_double()[0], l = limit.to_double()[0], d = delta.to_double()[0];
    if (d == 0 || !std::isfinite(s) || !std::isfinite(l) || !std::isfinite(d))
      throw_bad_input(n.label() + ": Range needs finite start/limit and a non-zero delta");
    double c = std::ceil((l - s) / d);
    if (c > 1e12) throw_bad_input(n.label() + ": Range would produce " + std::to_string(c) + " elements");
    count = c > 0 ? int64_t(c) : 0;
  } else {
    // Exact integer count (128-bit to avoid overflow of limit - start).
    __int128 s = start.to_int64()[0], l = limit.to_int64()[0], d = delta.to_int64()[0];
    if (d == 0) throw_bad_input(n.label() + ": Range delta must not be 0");
    __int128 span = l - s;
    __int128 c = span / d + ((span % d != 0 && ((span < 0) == (d < 0))) ? 1 : 0);
    if (c > (__int128(1) << 40)) throw_bad_input(n.label() + ": Range would produce too many elements");
    count = c > 0 ? int64_t(c) : 0;
  }
  set_output(n, 0, dt, {count});
}

void infer_eye_like(Node& n) {
  const Value& x = input_checked(n, 0);
  if (x.dims.size() != 2)
    throw_bad_input(n.label() + ": input must be 2-D, got shape " + shape_str(x.dims));
  DataType dt = n.has("dtype") ? from_onnx_dtype(n, n.i("dtype", 1), "dtype") : x.dtype;
  set_output(n, 0, dt, x.dims);
}

}  // namespace

void register_misc_ops(OpRegistry& r) {
  r.add({"", "Cast", infer_cast});
  r.add({"", "CastLike", infer_cast_like});
  r.add({"", "ConstantOfShape", infer_constant_of_shape});
  r.add({"", "Range", infer_range});
  r.add({"", "EyeLike", infer_eye_like});
}

}  // namespace kiln::ir
