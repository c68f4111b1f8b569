// Cast / CastLike, ConstantOfShape, Range and EyeLike. Cast semantics
// follow numpy's astype on x86 (what the ONNX reference and onnxruntime
// produce): float -> int truncates toward zero, NaN and out-of-range values
// become the int32/int64 minimum (8-bit types keep its low bits); any
// non-zero, NaN included, is true; integer narrowing wraps. fp16 goes
// through fp32.
// kiln never unmasks FP exceptions nor reads errno; letting the compiler
// speculate FP ops is what allows these select-style loops to vectorize.
#pragma GCC optimize("no-trapping-math", "no-math-errno")

#include <cmath>

#include "backends/cpu/eltwise_util.h"

namespace kiln::cpu {

namespace {

// Calls f(T{}) for the plain element types (not fp16 or bool).
template <class F> void with_plain(DataType t, F&& f) {
  switch (t) {
    case DataType::kFloat32: return f(float{});
    case DataType::kInt8: return f(int8_t{});
    case DataType::kBool:
    case DataType::kUInt8: return f(uint8_t{});
    case DataType::kInt32: return f(int32_t{});
    case DataType::kInt64: return f(int64_t{});
    case DataType::kFloat16: break;
  }
  throw_internal("with_plain: fp16");
}

template <class S, class D> void convert(const S* x, D* y, int64_t n) {
  ew::parallel_range(n, [&](int64_t b, int64_t e) {
    if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) {
      for (int64_t i = b; i < e; ++i) y[i] = ew::float_to_int<D>(double(x[i]));
    } else {
      for (int64_t i = b; i < e; ++i) y[i] = D(x[i]);
    }
  });
}

template <class S> void to_bool(const S* x, uint8_t* y, int64_t n) {
  ew::parallel_range(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = x[i] != S(0);
  });
}

void cast(const ir::Tensor& x, ir::Tensor& y) {
  DataType from = x.dtype(), to = y.dtype();
  if (from == to) {
    if (y.nbytes()) std::memcpy(y.raw(), x.raw(), y.nbytes());
    return;
  }
  if (from == DataType::kFloat16 && to == DataType::kFloat32) {
    const uint16_t* px = x.data<uint16_t>();
    float* py = y.data<float>();
    ew::parallel_range(x.numel(), [&](int64_t b, int64_t e) { ew::half_to_float_n(px + b, py + b, e - b); });
    return;
  }
  if (from == DataType::kFloat32 && to == DataType::kFloat16) return ew::store_half_tensor(x, y);
  if (from == DataType::kFloat16) {  // through fp32
    ir::Tensor f = ew::to_float_tensor(x);
    return cast(f, y);
  }
  if (to == DataType::kFloat16) {
    ir::Tensor f(DataType::kFloat32, y.dims());
    cast(x, f);
    return ew::store_half_tensor(f, y);
  }
  const int64_t n = x.numel();
  if (to == DataType::kBool) {
    with_plain(from, [&](auto s) { to_bool(x.data<decltype(s)>(), y.data<uint8_t>(), n); });
    return;
  }
  if (from == DataType::kBool) {  // canonical 0/1 whatever byte was stored
    ir::Tensor b(DataType::kUInt8, x.dims());
    to_bool(x.data<uint8_t>(), b.data<uint8_t>(), n);
    with_plain(to, [&](auto d) { convert(b.data<uint8_t>(), y.data<decltype(d)>(), n); });
    return;
  }
  with_plain(from, [&](auto s) {
    with_plain(to, [&](auto d) { convert(x.data<decltype(s)>(), y.data<decltype(d)>(), n); });
  });
}

std::unique_ptr<Kernel> make_cast(const ir::Node& n) {
  std::string tactic = std::string("cpu.cast.") + dtype_name(n.inputs[0]->dtype) + "_" + dtype_name(n.outputs[0]->dtype);
  return make_kernel(tactic, [](const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) {
    cast(*in[0], *out[0]);
  });
}

// Fills `t` with copies of the `size`-byte pattern at `v`.
void fill_bytes(ir::Tensor& t, const void* v, size_t size) {
  uint8_t* p = static_cast<uint8_t*>(t.raw());
  const int64_t n = t.numel();
  auto go = [&](auto w) {
    using W = decltype(w);
    W val;
    std::memcpy(&val, v, sizeof(W));
    W* q = reinterpret_cast<W*>(p);
    ew::parallel_range(n, [&](int64_t b, int64_t e) { std::fill(q + b, q + e, val); });
  };
  switch (size) {
    case 1: return go(uint8_t{});
    case 2: return go(uint16_t{});
    case 4: return go(uint32_t{});
    default: return go(uint64_t{});
  }
}

std::unique_ptr<Kernel> make_constant_of_shape(const ir::Node& n) {
  ir::Tensor value = ir::Tensor::from_float({0.0f}, {1});
  auto it = n.attrs.find("value");
  if (it != n.attrs.end() && it->second.kind == ir::Attribute::Kind::kTensor) value = it->second.t;
  if (value.numel() != 1) throw_bad_input(n.label() + ": attribute 'value' must be a one-element tensor");
  return make_kernel("cpu.fill", [value](const std::vector<const ir::Tensor*>&, const std::vector<ir::Tensor*>& out) {
    if (out[0]->dtype() != value.dtype()) throw_internal("ConstantOfShape: output dtype differs from value");
    fill_bytes(*out[0], value.raw(), dtype_size(value.dtype()));
  });
}

std::unique_ptr<Kernel> make_range(const ir::Node& n) {
  const DataType dt = n.outputs[0]->dtype;
  require_dtype(n, "input", dt, {DataType::kFloat32, DataType::kInt32, DataType::kInt64});
  return make_kernel("cpu.range", [dt](const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) {
    ir::Tensor& y = *out[0];
    const int64_t n = y.numel();
    if (dt == DataType::kFloat32) {
      const double s = in[0]->to_double()[0], d = in[2]->to_double()[0];
      float* p = y.data<float>();
      for (int64_t i = 0; i < n; ++i) p[i] = float(s + double(i) * d);
      return;
    }
    const int64_t s = in[0]->to_int64()[0], d = in[2]->to_int64()[0];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = ew::wrap_add(s, ew::wrap_mul(i, d));
      if (dt == DataType::kInt32) y.data<int32_t>()[i] = int32_t(v);
      else y.data<int64_t>()[i] = v;
    }
  });
}

std::unique_ptr<Kernel> make_eye_like(const ir::Node& n) {
  const int64_t k = n.i("k", 0);
  return make_kernel("cpu.eye", [k](const std::vector<const ir::Tensor*>&, const std::vector<ir::Tensor*>& out) {
    ir::Tensor& y = *out[0];
    if (y.nbytes()) std::memset(y.raw(), 0, y.nbytes());
    const int64_t rows = y.dims()[0], cols = y.dims()[1];
    const size_t es = dtype_size(y.dtype());
    uint8_t one[8] = {};
    switch (y.dtype()) {
      case DataType::kFloat32: { float f = 1.0f; std::memcpy(one, &f, 4); break; }
      case DataType::kFloat16: { uint16_t h = float_to_half(1.0f); std::memcpy(one, &h, 2); break; }
      default: one[0] = 1; break;  // little-endian integers and bool
    }
    uint8_t* p = static_cast<uint8_t*>(y.raw());
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t j = i + k;
      if (j >= 0 && j < cols) std::memcpy(p + size_t(i * cols + j) * es, one, es);
    }
  });
}

}  // namespace

void register_misc_kernels(KernelRegistry& r) {
  r.add("Cast", make_cast);
  r.add("CastLike", make_cast);
  r.add("ConstantOfShape", make_constant_of_shape);
  r.add("Range", make_range);
  r.add("EyeLike", make_eye_like);
}

}  // namespace kiln::cpu
