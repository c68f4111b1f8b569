// Shape inference for Conv and ConvTranspose (ONNX opset 18 forms).
// Inference also rewrites the window attributes into explicit form (see
// conv_window.h) so kernels never resolve auto_pad or default values.
//
// kiln-internal extensions, attached by fusion passes:
//   - attribute `activation` (Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid,
//     HardSwish, Tanh, SiLU = x * sigmoid(x)) with `activation_params`
//     (LeakyRelu: alpha; Clip: min, max; HardSigmoid: alpha, beta; none for
//     the others). Gemm takes the same pair (see gemm.cpp).
//   - an optional 4th input Z, a residual with exactly the output's dims and
//     dtype: Y = act(conv(X, W) + B + Z). It is how `relu(conv(x) + shortcut)`
//     (ResNet) and `conv(x) + x` (MobileNetV2) run as one layer.
// Kernels apply bias, Z and the activation in one epilogue, in that order.
#include <string>

#include "ir/fused_activation.h"
#include "ir/op_registry.h"
#include "ir/ops/conv_window.h"
#include "kiln/error.h"

namespace kiln::ir {

namespace {

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

}  // namespace

// Shared with Gemm's inference (gemm.cpp), which carries the same pair.
void check_fused_activation(const Node& n) { FusedActivation::from_node(n); }

namespace {

bool is_int8(DataType t) { return t == DataType::kUInt8 || t == DataType::kInt8; }

// Common checks of X and W; returns the number of spatial axes.
size_t check_xw(const Node& n, const Value& x, const Value& w, bool integer = false) {
  if (integer) {
    if (!is_int8(x.dtype) || !is_int8(w.dtype))
      throw_unsupported(n.label() + ": input dtypes " + dtype_name(x.dtype) + " / " + dtype_name(w.dtype) +
                        " are not supported (uint8 / int8 only)");
  } else if (!is_float(x.dtype)) {
    throw_unsupported(n.label() + ": input dtype " + dtype_name(x.dtype) + " is not supported (float only)");
  }
  if (!integer && w.dtype != x.dtype)
    throw_bad_input(n.label() + ": weight dtype " + dtype_name(w.dtype) + " differs from input dtype " +
                    dtype_name(x.dtype));
  if (x.dims.size() < 3)
    throw_bad_input(n.label() + ": input '" + x.name + "' has shape " + shape_str(x.dims) +
                    "; expected [N, C, spatial...] with at least one spatial axis");
  if (w.dims.size() != x.dims.size())
    throw_bad_input(n.label() + ": weight '" + w.name + "' has shape " + shape_str(w.dims) + " but input has rank " +
                    std::to_string(x.dims.size()));
  return x.dims.size() - 2;
}

int64_t read_group(const Node& n) {
  int64_t g = n.i("group", 1);
  if (g < 1) throw_bad_input(n.label() + ": group " + std::to_string(g) + " must be >= 1");
  return g;
}

Dims kernel_from_weight(const Node& n, const Value& w) {
  Dims k(w.dims.begin() + 2, w.dims.end());
  for (int64_t e : k)
    if (e < 1) throw_bad_input(n.label() + ": weight '" + w.name + "' has an empty kernel " + shape_str(w.dims));
  if (n.has("kernel_shape") && n.ints("kernel_shape") != k)
    throw_bad_input(n.label() + ": kernel_shape " + shape_str(n.ints("kernel_shape")) +
                    " does not match the weight's spatial dims " + shape_str(k));
  return k;
}

void check_bias(const Node& n, int64_t m) {
  const Value* b = n.in(2);
  if (!b) return;
  if (b->dims != Dims{m})
    throw_bad_input(n.label() + ": bias '" + b->name + "' has shape " + shape_str(b->dims) + ", expected [" +
                    std::to_string(m) + "]");
  if (b->dtype != n.in(0)->dtype) throw_bad_input(n.label() + ": bias dtype differs from input dtype");
}

// Z (input 3) of a float Conv: the residual added before the activation.
void check_residual(const Node& n, const Dims& out) {
  if (n.inputs.size() > 4)
    throw_bad_input(n.label() + ": Conv takes at most 4 inputs (X, W, B, residual Z), got " +
                    std::to_string(n.inputs.size()));
  const Value* z = n.in(3);
  if (!z) return;
  if (!z->has_shape) throw_bad_input(n.label() + ": residual input '" + z->name + "' has no known shape");
  if (z->dims != out)
    throw_bad_input(n.label() + ": residual input '" + z->name + "' has shape " + shape_str(z->dims) +
                    " but the output has shape " + shape_str(out) + " (no broadcasting)");
  if (z->dtype != n.in(0)->dtype)
    throw_bad_input(n.label() + ": residual input '" + z->name + "' is " + dtype_name(z->dtype) +
                    " but the input is " + dtype_name(n.in(0)->dtype));
}

void infer_conv_common(Node& n, bool integer) {
  const Value& x = input_checked(n, 0);
  const Value& w = input_checked(n, 1);
  size_t r = check_xw(n, x, w, integer);
  int64_t g = read_group(n);
  int64_t c = x.dims[1], m = w.dims[0];
  if (c % g != 0 || w.dims[1] * g != c)
    throw_bad_input(n.label() + ": input has " + std::to_string(c) + " channels but weight " + shape_str(w.dims) +
                    " with group " + std::to_string(g) + " expects " + std::to_string(w.dims[1] * g));
  if (m % g != 0)
    throw_bad_input(n.label() + ": " + std::to_string(m) + " output channels are not divisible by group " +
                    std::to_string(g));
  if (integer) {
    // Zero points: X per tensor; W per tensor or per output channel.
    const Value* xz = n.in(2);
    const Value* wz = n.in(3);
    if (xz && (numel_of(xz->dims) != 1 || xz->dtype != x.dtype))
      throw_bad_input(n.label() + ": x_zero_point must be one value of the input's dtype");
    if (wz && ((numel_of(wz->dims) != 1 && numel_of(wz->dims) != m) || wz->dtype != w.dtype))
      throw_bad_input(n.label() + ": w_zero_point must be one value or one per output channel, of the weight's dtype");
  } else {
    check_bias(n, m);
    check_fused_activation(n);
  }
  Dims in(x.dims.begin() + 2, x.dims.end());
  window::Window win = window::resolve(n, in, kernel_from_weight(n, w));
  Dims out{x.dims[0], m};
  for (size_t i = 0; i < r; ++i)
    out.push_back(window::out_extent(n, in[i], win.kernel[i], win.strides[i], win.dilations[i], win.pads[i],
                                     win.pads[i + r], false));
  if (!integer) check_residual(n, out);
  set_output(n, 0, integer ? DataType::kInt32 : x.dtype, out);
}

void infer_conv(Node& n) { infer_conv_common(n, false); }
void infer_conv_integer(Node& n) { infer_conv_common(n, true); }

// ConvTranspose: out = s*(in-1) + output_padding + dilated_k - pad_begin - pad_end.
// With output_shape (or SAME_*), pads are derived from it; a target larger
// than the natural extent leaves the extra tail cells at bias, as
// onnxruntime and the ONNX reference do. The resolved form keeps
// output_shape (spatial only) and explicit pads whose begins are exact.
void infer_conv_transpose(Node& n) {
  const Value& x = input_checked(n, 0);
  const Value& w = input_checked(n, 1);
  size_t r = check_xw(n, x, w);
  int64_t g = read_group(n);
  int64_t c = x.dims[1];
  if (w.dims[0] != c || c % g != 0)
    throw_bad_input(n.label() + ": input has " + std::to_string(c) + " channels but weight " + shape_str(w.dims) +
                    " expects " + std::to_string(w.dims[0]) + " (divisible by group " + std::to_string(g) + ")");
  int64_t m = w.dims[1] * g;
  check_bias(n, m);
  Dims in(x.dims.begin() + 2, x.dims.end());
  Dims k = kernel_from_weight(n, w);
  Dims s = window::read_ints(n, "strides", r, 1, 1);
  Dims d = window::read_ints(n, "dilations", r, 1, 1);
  Dims op = window::read_ints(n, "output_padding", r, 0, 0);
  std::string ap = n.s("auto_pad", "NOTSET");
  if (ap != "NOTSET" && ap != "VALID" && ap != "SAME_UPPER" && ap != "SAME_LOWER")
    throw_bad_input(n.label() + ": auto_pad '" + ap + "' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID");
  bool same = ap == "SAME_UPPER" || ap == "SAME_LOWER";

  Dims target;
  if (n.has("output_shape")) {
    target = n.ints("output_shape");
    if (target.size() == r + 2) target.erase(target.begin(), target.begin() + 2);  // older [N, C, ...] form
    if (target.size() != r)
      throw_bad_input(n.label() + ": output_shape " + shape_str(n.ints("output_shape")) + " must have " +
                      std::to_string(r) + " spatial values");
  } else if (same) {
    for (size_t i = 0; i < r; ++i) target.push_back(in[i] * s[i]);
  }

  Dims natural(r), pads(2 * r, 0);
  for (size_t i = 0; i < r; ++i) natural[i] = s[i] * (in[i] - 1) + op[i] + (k[i] - 1) * d[i] + 1;
  bool explicit_pads = n.has("pads") && ap == "NOTSET";
  if (explicit_pads) {
    Dims p = n.ints("pads");
    if (p.size() != 2 * r)
      throw_bad_input(n.label() + ": attribute 'pads' has " + std::to_string(p.size()) + " values, expected " +
                      std::to_string(2 * r));
    for (size_t i = 0; i < r; ++i)
      if (p[i] < 0 || (target.empty() && p[i + r] < 0))
        throw_bad_input(n.label() + ": pads " + shape_str(p) + " must be >= 0");
    pads = p;
  }
  Dims out(r);
  for (size_t i = 0; i < r; ++i) {
    if (target.empty()) {
      out[i] = natural[i] - pads[i] - pads[i + r];
    } else {
      out[i] = target[i];
      if (!explicit_pads) {
        int64_t total = std::max<int64_t>(0, natural[i] - target[i]);
        pads[i] = ap == "SAME_UPPER" ? total / 2 : total - total / 2;
      }
      pads[i + r] = natural[i] - out[i] - pads[i];  // may be negative: tail cells beyond the data
    }
    if (out[i] < 1)
      throw_bad_input(n.label() + ": output spatial size " + std::to_string(out[i]) +
                      " is not positive; check pads / output_shape");
  }
  window::set_ints(n, "kernel_shape", k);
  window::set_ints(n, "strides", s);
  window::set_ints(n, "dilations", d);
  window::set_ints(n, "output_padding", op);
  window::set_ints(n, "pads", pads);
  if (!target.empty()) window::set_ints(n, "output_shape", out);
  n.attrs.erase("auto_pad");
  Dims y{x.dims[0], m};
  y.insert(y.end(), out.begin(), out.end());
  set_output(n, 0, x.dtype, y);
}

}  // namespace

void register_conv_ops(OpRegistry& r) {
  r.add({"", "Conv", infer_conv});
  r.add({"", "ConvTranspose", infer_conv_transpose});
  r.add({"", "ConvInteger", infer_conv_integer});
}

}  // namespace kiln::ir
