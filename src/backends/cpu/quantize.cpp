// CPU QuantizeLinear and DequantizeLinear, per tensor or per axis:
//   Q:  y = saturate(round_half_to_even(x / scale) + zero_point)
//   DQ: y = (float(x) - float(zero_point)) * scale
// in float32 (fp16 data and scales are widened first), as the ONNX reference
// computes them. The division is a real division, not a multiply by 1/scale,
// so ties round as onnxruntime's do. NaN quantizes to the zero point (C++
// leaves a NaN -> int conversion undefined; ONNX does not define it).
// Scales and zero points may be runtime inputs (the ONNX node tests feed
// them), so they are read on every run.
#include <cmath>
#include <vector>

#include "backends/cpu/eltwise_util.h"
#include "ir/ops/quantize_params.h"

namespace kiln::cpu {

namespace {

std::vector<float> floats_of(const ir::Tensor& t) {
  std::vector<float> v(size_t(t.numel()));
  if (t.dtype() == DataType::kFloat16) ew::half_to_float_n(t.data<uint16_t>(), v.data(), t.numel());
  else
    for (int64_t i = 0; i < t.numel(); ++i) v[size_t(i)] = t.data<float>()[i];
  return v;
}

// Zero points as float (exact for int8/uint8/int32 magnitudes up to 2^24);
// zeros when the input is omitted.
std::vector<float> zero_points(const ir::Tensor* zp, int64_t count) {
  std::vector<float> v(size_t(count), 0.f);
  if (!zp) return v;
  auto vals = zp->to_double();
  for (size_t i = 0; i < v.size() && i < vals.size(); ++i) v[i] = float(vals[i]);
  return v;
}

// What the run needs of the node (its label and attributes), kept by value:
// the kernel must not depend on the graph outliving it.
ir::Node node_meta(const ir::Node& n) {
  ir::Node m;
  m.name = n.name;
  m.op_type = n.op_type;
  m.attrs = n.attrs;
  return m;
}

// Float view of x (fp16 widened); `keep` owns the widened copy.
const float* float_data(const ir::Tensor& x, ir::Tensor& keep) {
  if (x.dtype() == DataType::kFloat32) return x.data<float>();
  keep = ew::to_float_tensor(x);
  return keep.data<float>();
}

template <class Q> void quantize(const float* x, Q* y, const ir::QuantLayout& l, const std::vector<float>& scale,
                                 const std::vector<float>& zp) {
  const float lo = float(std::numeric_limits<Q>::min()), hi = float(std::numeric_limits<Q>::max());
  ew::parallel_range(l.outer * l.channels, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const size_t c = size_t(row % l.channels);
      const float s = scale[c], z = zp[c];
      const float* xr = x + row * l.inner;
      Q* yr = y + row * l.inner;
      for (int64_t i = 0; i < l.inner; ++i) {
        float v = std::nearbyint(xr[i] / s) + z;  // default rounding mode: half to even
        if (std::isnan(v)) v = z;
        yr[i] = Q(std::fmin(std::fmax(v, lo), hi));
      }
    }
  }, std::max<int64_t>(1, ew::kGrain / std::max<int64_t>(1, l.inner)));
}

template <class Q> void dequantize(const Q* x, float* y, const ir::QuantLayout& l, const std::vector<float>& scale,
                                   const std::vector<float>& zp) {
  ew::parallel_range(l.outer * l.channels, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const size_t c = size_t(row % l.channels);
      const float s = scale[c], z = zp[c];
      const Q* xr = x + row * l.inner;
      float* yr = y + row * l.inner;
      for (int64_t i = 0; i < l.inner; ++i) yr[i] = (float(xr[i]) - z) * s;
    }
  }, std::max<int64_t>(1, ew::kGrain / std::max<int64_t>(1, l.inner)));
}

std::unique_ptr<Kernel> make_quantize(const ir::Node& n) {
  require_dtype(n, "input", n.in(0)->dtype, {DataType::kFloat32, DataType::kFloat16});
  require_dtype(n, "output", n.outputs[0]->dtype, {DataType::kInt8, DataType::kUInt8});
  return make_kernel("cpu.quantize_linear", [node = node_meta(n)](const std::vector<const ir::Tensor*>& in,
                                                   const std::vector<ir::Tensor*>& out) {
    const ir::Tensor* zp = in.size() > 2 ? in[2] : nullptr;
    ir::Dims zd = zp ? zp->dims() : ir::Dims{};
    const ir::QuantLayout l = ir::quant_layout(node, in[0]->dims(), in[1]->dims(), zp ? &zd : nullptr);
    const auto scale = floats_of(*in[1]);
    const auto z = zero_points(zp, l.channels);
    ir::Tensor widened;
    const float* x = float_data(*in[0], widened);
    if (out[0]->dtype() == DataType::kInt8) quantize(x, out[0]->data<int8_t>(), l, scale, z);
    else quantize(x, out[0]->data<uint8_t>(), l, scale, z);
  });
}

std::unique_ptr<Kernel> make_dequantize(const ir::Node& n) {
  require_dtype(n, "input", n.in(0)->dtype, {DataType::kInt8, DataType::kUInt8, DataType::kInt32});
  require_dtype(n, "output", n.outputs[0]->dtype, {DataType::kFloat32, DataType::kFloat16});
  return make_kernel("cpu.dequantize_linear", [node = node_meta(n)](const std::vector<const ir::Tensor*>& in,
                                                     const std::vector<ir::Tensor*>& out) {
    const ir::Tensor* zp = in.size() > 2 ? in[2] : nullptr;
    ir::Dims zd = zp ? zp->dims() : ir::Dims{};
    const ir::QuantLayout l = ir::quant_layout(node, in[0]->dims(), in[1]->dims(), zp ? &zd : nullptr);
    const auto scale = floats_of(*in[1]);
    const auto z = zero_points(zp, l.channels);
    const bool half = out[0]->dtype() == DataType::kFloat16;
    ir::Tensor f32;
    if (half) f32 = ir::Tensor(DataType::kFloat32, out[0]->dims());
    float* y = half ? f32.data<float>() : out[0]->data<float>();
    switch (in[0]->dtype()) {
      case DataType::kInt8: dequantize(in[0]->data<int8_t>(), y, l, scale, z); break;
      case DataType::kUInt8: dequantize(in[0]->data<uint8_t>(), y, l, scale, z); break;
      default: dequantize(in[0]->data<int32_t>(), y, l, scale, z); break;
    }
    if (half) ew::store_half_tensor(f32, *out[0]);
  });
}

}  // namespace

void register_quantize_kernels(KernelRegistry& r) {
  r.add("QuantizeLinear", make_quantize);
  r.add("DequantizeLinear", make_dequantize);
}

}  // namespace kiln::cpu
