// Shape/type inference for QuantizeLinear and DequantizeLinear (opsets
// 10-24) in the forms kiln has dtypes for: float32/float16 data and scales,
// int8/uint8 quantized values (int32 too for DequantizeLinear). The other
// ONNX quantized types (int4, int16, float8) and blocked scales are refused
// as unsupported, naming the node.
//
// QuantizeLinear's output type is the zero point's type; without a zero
// point it is opset 21's output_dtype, else uint8 (the ONNX default).
// DequantizeLinear's output type is opset 23's output_dtype, else the scale's.
#include "ir/ops/quantize_params.h"

namespace kiln::ir {

namespace {

DataType quant_dtype(const Node& n, int64_t onnx_code) {
  if (onnx_code == 2) return DataType::kUInt8;
  if (onnx_code == 3) return DataType::kInt8;
  throw_unsupported(n.label() + ": output_dtype=" + std::to_string(onnx_code) +
                    " is not supported by kiln (int8 = 3 and uint8 = 2 are)");
}

void require_float(const Node& n, const Value& v, const char* what) {
  if (v.dtype != DataType::kFloat32 && v.dtype != DataType::kFloat16)
    throw_unsupported(n.label() + ": " + what + " '" + v.name + "' has dtype " + dtype_name(v.dtype) +
                      "; kiln supports fp32 and fp16 here");
}

void infer_quantize(Node& n) {
  const Value& x = input_checked(n, 0);
  const Value& scale = input_checked(n, 1);
  const Value* zp = n.in(2);
  require_float(n, x, "input");
  require_float(n, scale, "scale");
  const int64_t precision = n.i("precision", 0);
  if (precision != 0 && precision != 1)  // 1 = FLOAT: the division is done in float32 here anyway
    throw_unsupported(n.label() + ": precision=" + std::to_string(precision) +
                      " is not supported by kiln (the division runs in float32)");
  DataType out = DataType::kUInt8;
  if (zp) {
    if (!zp->has_shape) throw_internal(n.label() + ": zero point '" + zp->name + "' has no shape");
    if (zp->dtype != DataType::kInt8 && zp->dtype != DataType::kUInt8)
      throw_unsupported(n.label() + ": zero point '" + zp->name + "' has dtype " + dtype_name(zp->dtype) +
                        "; kiln quantizes to int8 and uint8 only");
    out = zp->dtype;
    if (n.i("output_dtype", 0) != 0 && quant_dtype(n, n.i("output_dtype", 0)) != out)
      throw_bad_input(n.label() + ": output_dtype disagrees with the zero point's dtype " + dtype_name(out));
  } else if (n.i("output_dtype", 0) != 0) {
    out = quant_dtype(n, n.i("output_dtype", 0));
  }
  quant_layout(n, x.dims, scale.dims, zp ? &zp->dims : nullptr);
  set_output(n, 0, out, x.dims);
}

void infer_dequantize(Node& n) {
  const Value& x = input_checked(n, 0);
  const Value& scale = input_checked(n, 1);
  const Value* zp = n.in(2);
  if (x.dtype != DataType::kInt8 && x.dtype != DataType::kUInt8 && x.dtype != DataType::kInt32)
    throw_unsupported(n.label() + ": input '" + x.name + "' has dtype " + dtype_name(x.dtype) +
                      "; kiln dequantizes int8, uint8 and int32 only");
  require_float(n, scale, "scale");
  if (zp) {
    if (!zp->has_shape) throw_internal(n.label() + ": zero point '" + zp->name + "' has no shape");
    if (zp->dtype != x.dtype)
      throw_bad_input(n.label() + ": zero point '" + zp->name + "' has dtype " + dtype_name(zp->dtype) +
                      " but the input has " + dtype_name(x.dtype) + "; they must match");
  }
  DataType out = scale.dtype;
  if (int64_t code = n.i("output_dtype", 0)) {
    if (code == 1) out = DataType::kFloat32;
    else if (code == 10) out = DataType::kFloat16;
    else
      throw_unsupported(n.label() + ": output_dtype=" + std::to_string(code) +
                        " is not supported by kiln (float = 1 and float16 = 10 are)");
  }
  quant_layout(n, x.dims, scale.dims, zp ? &zp->dims : nullptr);
  set_output(n, 0, out, x.dims);
}

}  // namespace

void register_quantize_ops(OpRegistry& r) {
  r.add({"", "QuantizeLinear", infer_quantize});
  r.add({"", "DequantizeLinear", infer_dequantize});
}

}  // namespace kiln::ir
