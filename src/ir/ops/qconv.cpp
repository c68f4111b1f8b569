// Shape inference for kiln::QConv, the INT8 2-D convolution that
// quant::assign_int8 makes from Conv (contract: docs in the INT8 design note).
//   inputs: X int8 [N, C, H, W]; W int8 constant [K, C/group, kh, kw] with
//           values in [-127, 127]; optional B fp32 constant [K]; optional Z
//           (residual, Y's dims): int8 (needs z_scale), fp32 or fp16
//   attributes: the Conv window (group, kernel_shape, strides, pads,
//           dilations; rewritten into explicit form like Conv), activation /
//           activation_params (ir::FusedActivation), x_scale, w_scales (K),
//           z_scale (iff Z is int8), y_scale (iff Y is int8), to (Y's dtype
//           code: int8, fp32 or fp16)
//   math:   acc = exact int32 sum of x * w over the window;
//           v = act(float(acc) * (x_scale * w_scales[k]) + B[k] + Z);
//           Y = to == int8 ? saturate(round_half_even(v / y_scale)) : v
// The node never comes from a model file, but a plan file can carry
// anything, so every attribute is checked before a kernel trusts it.
#include <cmath>
#include <string>

#include "ir/fused_activation.h"
#include "ir/op_registry.h"
#include "ir/ops/conv_window.h"
#include "kiln/error.h"

namespace kiln::ir {

namespace {

// Largest reduction length whose int32 sum cannot overflow: |x| <= 128 and
// |w| <= 127, so |acc| <= 16256 * R must stay below 2^31.
constexpr int64_t kMaxReduction = 132104;

std::string dt_list() { return "int8, fp32 or fp16"; }

// A float attribute that must be present, finite and > 0.
float positive_scale(const Node& n, const char* name, const char* why) {
  if (!n.has(name)) throw_bad_input(n.label() + ": attribute '" + name + "' is missing (" + why + ")");
  const float v = n.f(name, 0.f);
  if (!std::isfinite(v) || !(v > 0.f))
    throw_bad_input(n.label() + ": attribute '" + name + "' is " + std::to_string(v) +
                    "; it must be a finite scale > 0");
  return v;
}

void forbid(const Node& n, const char* name, const char* why) {
  if (n.has(name)) throw_bad_input(n.label() + ": attribute '" + name + "' is set but " + why);
}

const Value& constant_input(const Node& n, size_t k, const char* what) {
  const Value& v = input_checked(n, k);
  if (!v.is_constant())
    throw_bad_input(n.label() + ": " + what + " '" + v.name + "' must be a constant (it is computed at run time)");
  return v;
}

void check_weight(const Node& n, const Value& w) {
  if (w.dtype != DataType::kInt8)
    throw_unsupported(n.label() + ": weight '" + w.name + "' is " + dtype_name(w.dtype) + "; QConv takes int8 weights");
  if (w.dims.size() != 4)
    throw_bad_input(n.label() + ": weight '" + w.name + "' has shape " + shape_str(w.dims) +
                    "; expected [K, C/group, kh, kw]");
  const Tensor& t = *w.constant;
  if (t.dtype() != DataType::kInt8 || t.dims() != w.dims)
    throw_bad_input(n.label() + ": weight '" + w.name + "' constant data does not match its declared int8 " +
                    shape_str(w.dims));
  // Symmetric quantization never yields -128; kernels may rely on |w| <= 127.
  const int8_t* p = t.data<int8_t>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (p[i] == -128)
      throw_bad_input(n.label() + ": weight '" + w.name + "' holds -128; QConv weights are symmetric in [-127, 127]");
}

void infer_qconv(Node& n) {
  if (n.inputs.size() < 2 || n.inputs.size() > 4)
    throw_bad_input(n.label() + ": QConv takes 2 to 4 inputs (X, W, optional B, optional Z), got " +
                    std::to_string(n.inputs.size()));
  if (n.outputs.size() != 1 || !n.outputs[0])
    throw_bad_input(n.label() + ": QConv has exactly one output");
  const Value& x = input_checked(n, 0);
  if (x.dtype != DataType::kInt8)
    throw_unsupported(n.label() + ": input '" + x.name + "' is " + dtype_name(x.dtype) + "; QConv takes int8 input");
  if (x.dims.size() != 4)
    throw_unsupported(n.label() + ": input '" + x.name + "' has shape " + shape_str(x.dims) +
                      "; QConv is 2-D only ([N, C, H, W])");
  const Value& w = constant_input(n, 1, "weight");
  check_weight(n, w);

  const int64_t g = n.i("group", 1);
  if (g < 1) throw_bad_input(n.label() + ": group " + std::to_string(g) + " must be >= 1");
  const int64_t c = x.dims[1], k = w.dims[0];
  if (c % g != 0 || w.dims[1] * g != c)
    throw_bad_input(n.label() + ": input has " + std::to_string(c) + " channels but weight " + shape_str(w.dims) +
                    " with group " + std::to_string(g) + " expects " + std::to_string(w.dims[1] * g));
  if (k < 1 || k % g != 0)
    throw_bad_input(n.label() + ": " + std::to_string(k) + " output channels are not a positive multiple of group " +
                    std::to_string(g));
  Dims kernel{w.dims[2], w.dims[3]};
  if (kernel[0] < 1 || kernel[1] < 1) throw_bad_input(n.label() + ": weight '" + w.name + "' has an empty kernel");
  if (n.has("kernel_shape") && n.ints("kernel_shape") != kernel)
    throw_bad_input(n.label() + ": kernel_shape " + shape_str(n.ints("kernel_shape")) +
                    " does not match the weight's spatial dims " + shape_str(kernel));
  if (w.dims[1] * kernel[0] * kernel[1] > kMaxReduction)
    throw_unsupported(n.label() + ": a reduction of " + std::to_string(w.dims[1] * kernel[0] * kernel[1]) +
                      " taps per output could overflow int32 accumulation (at most " +
                      std::to_string(kMaxReduction) + "); keep this layer in float");

  if (const Value* b = n.in(2)) {
    constant_input(n, 2, "bias");
    if (b->dtype != DataType::kFloat32 || b->dims != Dims{k})
      throw_bad_input(n.label() + ": bias '" + b->name + "' is " + dtype_name(b->dtype) + " " + shape_str(b->dims) +
                      "; expected fp32 [" + std::to_string(k) + "]");
  }

  FusedActivation::from_node(n);
  positive_scale(n, "x_scale", "the input's quantization scale");
  const float xs = n.f("x_scale", 1.f);
  if (!n.has("w_scales"))
    throw_bad_input(n.label() + ": attribute 'w_scales' is missing (one weight scale per output channel)");
  const std::vector<float> ws = n.floats("w_scales");
  if (int64_t(ws.size()) != k)
    throw_bad_input(n.label() + ": attribute 'w_scales' has " + std::to_string(ws.size()) + " entries, expected " +
                    std::to_string(k) + " (one per output channel)");
  for (size_t i = 0; i < ws.size(); ++i) {
    if (!std::isfinite(ws[i]) || !(ws[i] > 0.f))
      throw_bad_input(n.label() + ": w_scales[" + std::to_string(i) + "] is " + std::to_string(ws[i]) +
                      "; every weight scale must be finite and > 0");
    if (!std::isfinite(xs * ws[i]))
      throw_bad_input(n.label() + ": x_scale * w_scales[" + std::to_string(i) + "] overflows float");
  }

  if (!n.has("to")) throw_bad_input(n.label() + ": attribute 'to' (the output dtype code) is missing");
  const int64_t to = n.i("to", 0);
  if (to != int64_t(DataType::kInt8) && to != int64_t(DataType::kFloat32) && to != int64_t(DataType::kFloat16))
    throw_bad_input(n.label() + ": attribute 'to' is dtype code " + std::to_string(to) + "; QConv outputs " +
                    dt_list());
  if (to == int64_t(DataType::kInt8)) positive_scale(n, "y_scale", "the int8 output's quantization scale");
  else forbid(n, "y_scale", "the output is not int8");

  Dims in{x.dims[2], x.dims[3]};
  window::Window win = window::resolve(n, in, kernel);
  Dims out{x.dims[0], k};
  for (size_t i = 0; i < 2; ++i)
    out.push_back(window::out_extent(n, in[i], kernel[i], win.strides[i], win.dilations[i], win.pads[i],
                                     win.pads[i + 2], false));

  if (const Value* z = n.in(3)) {
    if (!z->has_shape) throw_bad_input(n.label() + ": residual input '" + z->name + "' has no known shape");
    if (z->dims != out)
      throw_bad_input(n.label() + ": residual input '" + z->name + "' has shape " + shape_str(z->dims) +
                      " but the output has shape " + shape_str(out) + " (no broadcasting)");
    if (z->dtype == DataType::kInt8) {
      positive_scale(n, "z_scale", "the int8 residual's quantization scale");
    } else if (z->dtype == DataType::kFloat32 || z->dtype == DataType::kFloat16) {
      forbid(n, "z_scale", "the residual is not int8");
    } else {
      throw_unsupported(n.label() + ": residual input '" + z->name + "' is " + dtype_name(z->dtype) + "; QConv takes " +
                        dt_list() + " residuals");
    }
  } else {
    forbid(n, "z_scale", "there is no residual input");
  }
  set_output(n, 0, DataType(to), out);
}

}  // namespace

void register_qconv_ops(OpRegistry& r) { r.add({"kiln", "QConv", infer_qconv}); }

}  // namespace kiln::ir
