// One-input element-wise kernels. Float ops are written as inline scalar
// functions mapped over contiguous chunks (the compiler vectorizes the
// branch-free ones; exp/tanh/sigmoid use kiln's own vectorizable forms).
// fp16 runs through the fp32 code in cache-sized blocks.
// kiln never unmasks FP exceptions nor reads errno, so let the compiler
// speculate FP ops and inline sqrt: needed to vectorize select-style loops.
#pragma GCC optimize("no-trapping-math", "no-math-errno")
#include <cmath>
#include <limits>
#include <map>

#include "backends/cpu/eltwise_util.h"

namespace kiln::cpu {

namespace {

struct Params {
  float alpha = 0, beta = 0, gamma = 0;
  bool pos = true, neg = true;  // IsInf
};
using FloatFn = void (*)(const float*, float*, int64_t, const Params&);
using PredFn = void (*)(const float*, uint8_t*, int64_t, const Params&);

// Params are copied to a local so stores through y cannot alias them.
template <class Op> void map_f(const float* x, float* y, int64_t n, const Params& p) {
  const Params q = p;
  for (int64_t i = 0; i < n; ++i) y[i] = Op::f(x[i], q);
}
template <class Op> void map_pred(const float* x, uint8_t* y, int64_t n, const Params& p) {
  const Params q = p;
  for (int64_t i = 0; i < n; ++i) y[i] = Op::f(x[i], q);
}

inline float clamp01(float v) {
  v = v > 1.0f ? 1.0f : v;
  return v < 0.0f ? 0.0f : v;  // NaN passes through
}
inline float softplus(float x) { return x > 0.0f ? x + std::log1p(ew::exp_fast(-x)) : std::log1p(ew::exp_fast(x)); }

#define KILN_FOP(NAME, EXPR) \
  struct NAME {              \
    static inline float f(float x, const Params& p) { return EXPR; } \
  };
KILN_FOP(Relu, x < 0.0f ? 0.0f : x)
KILN_FOP(LeakyRelu, x < 0.0f ? p.alpha * x : x)
KILN_FOP(HardSigmoid, clamp01(p.alpha * x + p.beta))
KILN_FOP(HardSwish, x * clamp01(x * (1.0f / 6.0f) + 0.5f))
KILN_FOP(Log, std::log(x))
KILN_FOP(Sqrt, std::sqrt(x))
KILN_FOP(Reciprocal, 1.0f / x)
KILN_FOP(Neg, -x)
KILN_FOP(Abs, std::fabs(x))
KILN_FOP(Floor, std::floor(x))
KILN_FOP(Ceil, std::ceil(x))
KILN_FOP(Round, std::rint(x))  // default rounding mode: half to even
KILN_FOP(Sign, x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x))
KILN_FOP(Softplus, softplus(x))
KILN_FOP(Softsign, x / (1.0f + std::fabs(x)))
KILN_FOP(Elu, x < 0.0f ? p.alpha * ew::expm1_fast(x) : x)
KILN_FOP(Selu, x > 0.0f ? p.gamma * x : p.gamma * p.alpha * ew::expm1_fast(x))
KILN_FOP(Celu, x < 0.0f ? p.alpha * ew::expm1_fast(x / p.alpha) : x)
KILN_FOP(ThresholdedRelu, x > p.alpha ? x : 0.0f)
KILN_FOP(Shrink, x < -p.alpha ? x + p.beta : (x > p.alpha ? x - p.beta : 0.0f))
KILN_FOP(Mish, x * ew::tanh_fast(softplus(x)))
KILN_FOP(Sin, std::sin(x))
KILN_FOP(Cos, std::cos(x))
KILN_FOP(Tan, std::tan(x))
KILN_FOP(Asin, std::asin(x))
KILN_FOP(Acos, std::acos(x))
KILN_FOP(Atan, std::atan(x))
KILN_FOP(Sinh, std::sinh(x))
KILN_FOP(Cosh, std::cosh(x))
KILN_FOP(Asinh, std::asinh(x))
KILN_FOP(Acosh, std::acosh(x))
KILN_FOP(Atanh, std::atanh(x))
KILN_FOP(Clip, (x < p.alpha ? p.alpha : x) > p.beta ? p.beta : (x < p.alpha ? p.alpha : x))
KILN_FOP(IsNaN, x != x)
KILN_FOP(IsInf, (p.pos && x == std::numeric_limits<float>::infinity()) ||
                    (p.neg && x == -std::numeric_limits<float>::infinity()))
#undef KILN_FOP

// The transcendental hot spots have explicit vector implementations.
void arr_exp(const float* x, float* y, int64_t n, const Params&) { ew::exp_n(x, y, n); }
void arr_sigmoid(const float* x, float* y, int64_t n, const Params&) { ew::sigmoid_n(x, y, n); }
void arr_tanh(const float* x, float* y, int64_t n, const Params&) { ew::tanh_n(x, y, n); }
void arr_erf(const float* x, float* y, int64_t n, const Params&) { ew::erf_n(x, y, n); }
void arr_gelu_erf(const float* x, float* y, int64_t n, const Params&) { ew::gelu_erf_n(x, y, n); }
void arr_swish(const float* x, float* y, int64_t n, const Params& p) {
  for (int64_t i = 0; i < n; ++i) y[i] = p.alpha * x[i];
  ew::sigmoid_n(y, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] *= x[i];
}
void arr_gelu_tanh(const float* x, float* y, int64_t n, const Params&) { ew::gelu_tanh_n(x, y, n); }

const std::map<std::string, FloatFn>& float_ops() {
  static const std::map<std::string, FloatFn> m = {
      {"Relu", map_f<Relu>}, {"LeakyRelu", map_f<LeakyRelu>}, {"Sigmoid", arr_sigmoid},
      {"HardSigmoid", map_f<HardSigmoid>}, {"HardSwish", map_f<HardSwish>}, {"Tanh", arr_tanh},
      {"Exp", arr_exp}, {"Log", map_f<Log>}, {"Sqrt", map_f<Sqrt>}, {"Reciprocal", map_f<Reciprocal>},
      {"Neg", map_f<Neg>}, {"Abs", map_f<Abs>}, {"Floor", map_f<Floor>}, {"Ceil", map_f<Ceil>},
      {"Round", map_f<Round>}, {"Sign", map_f<Sign>}, {"Erf", arr_erf}, {"Softplus", map_f<Softplus>},
      {"Softsign", map_f<Softsign>}, {"Elu", map_f<Elu>}, {"Selu", map_f<Selu>}, {"Celu", map_f<Celu>},
      {"ThresholdedRelu", map_f<ThresholdedRelu>}, {"Mish", map_f<Mish>}, {"Sin", map_f<Sin>},
      {"Cos", map_f<Cos>}, {"Tan", map_f<Tan>}, {"Asin", map_f<Asin>}, {"Acos", map_f<Acos>},
      {"Atan", map_f<Atan>}, {"Sinh", map_f<Sinh>}, {"Cosh", map_f<Cosh>}, {"Asinh", map_f<Asinh>},
      {"Acosh", map_f<Acosh>}, {"Atanh", map_f<Atanh>}, {"Clip", map_f<Clip>},
      {"Shrink", map_f<Shrink>}, {"Swish", arr_swish},
  };
  return m;
}

Params params_of(const ir::Node& n) {
  Params p;
  const std::string& op = n.op_type;
  if (op == "LeakyRelu") p.alpha = n.f("alpha", 0.01f);
  if (op == "HardSigmoid") p.alpha = n.f("alpha", 0.2f), p.beta = n.f("beta", 0.5f);
  if (op == "Elu" || op == "Celu" || op == "ThresholdedRelu" || op == "Swish") p.alpha = n.f("alpha", 1.0f);
  if (op == "Shrink") p.alpha = n.f("lambd", 0.5f), p.beta = n.f("bias", 0.0f);
  if (op == "Selu") p.alpha = n.f("alpha", 1.67326319217681884765625f), p.gamma = n.f("gamma", 1.05070102214813232421875f);
  if (op == "IsInf") p.pos = n.i("detect_positive", 1) != 0, p.neg = n.i("detect_negative", 1) != 0;
  if (op == "Celu" && p.alpha == 0.0f) throw_bad_input(n.label() + ": Celu alpha must not be 0");
  return p;
}

// Runs a float map over fp32 or fp16 tensors (fp16 through fp32 blocks).
template <class OutT, class Fn>
void run_float_map(const ir::Tensor& x, ir::Tensor& y, Fn fn, const Params& p) {
  const int64_t n = x.numel();
  if (x.dtype() == DataType::kFloat32 && (std::is_same_v<OutT, uint8_t> || y.dtype() == DataType::kFloat32)) {
    const float* px = x.data<float>();
    OutT* py = y.data<OutT>();
    ew::parallel_range(n, [&](int64_t b, int64_t e) { fn(px + b, py + b, e - b, p); });
    return;
  }
  const uint16_t* px = x.data<uint16_t>();
  ew::parallel_range(n, [&](int64_t b, int64_t e) {
    constexpr int64_t kBlock = 512;
    float in[kBlock];
    [[maybe_unused]] float out[kBlock];
    for (int64_t i = b; i < e; i += kBlock) {
      int64_t m = std::min(kBlock, e - i);
      ew::half_to_float_n(px + i, in, m);
      if constexpr (std::is_same_v<OutT, uint8_t>) {
        fn(in, y.data<uint8_t>() + i, m, p);
      } else {
        fn(in, out, m, p);
        ew::float_to_half_n(out, y.data<uint16_t>() + i, m);
      }
    }
  });
}

// Integer variants of the ops ONNX defines on integer tensors.
template <class T> void int_map(const std::string& op, const T* x, T* y, int64_t n, T lo, T hi) {
  auto go = [&](auto f) {
    ew::parallel_range(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) y[i] = f(x[i]);
    });
  };
  if (op == "Relu") go([](T v) { return v < T(0) ? T(0) : v; });
  else if (op == "Neg") go([](T v) { return ew::wrap_neg(v); });
  else if (op == "Abs") go([](T v) { return v < T(0) ? ew::wrap_neg(v) : v; });
  else if (op == "Sign") go([](T v) { return T((v > T(0)) - (v < T(0))); });
  else if (op == "BitwiseNot") go([](T v) { return T(~v); });
  else if (op == "Clip") go([lo, hi](T v) { v = v < lo ? lo : v; return v > hi ? hi : v; });
  else throw_internal("int_map: " + op);
}

template <class T> std::unique_ptr<Kernel> make_int_kernel(const ir::Node& n) {
  std::string op = n.op_type;
  return make_kernel("cpu.eltwise.unary_int", [op](const std::vector<const ir::Tensor*>& in,
                                                   const std::vector<ir::Tensor*>& out) {
    T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
    if (op == "Clip") {
      if (in.size() > 1 && in[1]) lo = in[1]->data<T>()[0];
      if (in.size() > 2 && in[2]) hi = in[2]->data<T>()[0];
    }
    int_map<T>(op, in[0]->data<T>(), out[0]->data<T>(), in[0]->numel(), lo, hi);
  });
}

float bound_as_float(const ir::Tensor* t, float dflt) {
  if (!t) return dflt;
  return t->dtype() == DataType::kFloat16 ? half_to_float(t->data<uint16_t>()[0]) : t->data<float>()[0];
}

std::unique_ptr<Kernel> make_unary(const ir::Node& n) {
  const DataType dt = n.in(0) ? n.in(0)->dtype : DataType::kFloat32;
  const std::string& op = n.op_type;

  if (op == "Not") {
    require_dtype(n, "input", dt, {DataType::kBool});
    return make_kernel("cpu.eltwise.unary_bool", [](const std::vector<const ir::Tensor*>& in,
                                                    const std::vector<ir::Tensor*>& out) {
      const uint8_t* x = in[0]->data<uint8_t>();
      uint8_t* y = out[0]->data<uint8_t>();
      ew::parallel_range(in[0]->numel(), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) y[i] = x[i] == 0;
      });
    });
  }
  if (op == "IsNaN" || op == "IsInf") {
    require_dtype(n, "input", dt, {DataType::kFloat32, DataType::kFloat16});
    PredFn fn = op == "IsNaN" ? map_pred<IsNaN> : map_pred<IsInf>;
    Params p = params_of(n);
    return make_kernel("cpu.eltwise.unary_pred", [fn, p](const std::vector<const ir::Tensor*>& in,
                                                        const std::vector<ir::Tensor*>& out) {
      run_float_map<uint8_t>(*in[0], *out[0], fn, p);
    });
  }
  if (ew::is_int(dt) && (op == "Relu" || op == "Neg" || op == "Abs" || op == "Sign" || op == "Clip" || op == "BitwiseNot")) {
    switch (dt) {
      case DataType::kInt8: return make_int_kernel<int8_t>(n);
      case DataType::kUInt8: return make_int_kernel<uint8_t>(n);
      case DataType::kInt32: return make_int_kernel<int32_t>(n);
      default: return make_int_kernel<int64_t>(n);
    }
  }
  require_dtype(n, "input", dt, {DataType::kFloat32, DataType::kFloat16});
  FloatFn fn = nullptr;
  if (op == "Gelu") {
    std::string a = n.s("approximate", "none");
    fn = a == "tanh" ? arr_gelu_tanh : arr_gelu_erf;
  } else {
    auto it = float_ops().find(op);
    if (it == float_ops().end()) throw_internal(n.label() + ": no unary float function");
    fn = it->second;
  }
  Params base = params_of(n);
  const bool clip = op == "Clip";
  return make_kernel("cpu.eltwise.unary", [fn, base, clip](const std::vector<const ir::Tensor*>& in,
                                                           const std::vector<ir::Tensor*>& out) {
    Params p = base;
    if (clip) {
      p.alpha = bound_as_float(in.size() > 1 ? in[1] : nullptr, -std::numeric_limits<float>::infinity());
      p.beta = bound_as_float(in.size() > 2 ? in[2] : nullptr, std::numeric_limits<float>::infinity());
    }
    run_float_map<float>(*in[0], *out[0], fn, p);
  });
}

}  // namespace

void register_unary_kernels(KernelRegistry& r) {
  for (const char* op : {"Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Exp", "Log", "Sqrt",
                         "Reciprocal", "Neg", "Abs", "Floor", "Ceil", "Round", "Sign", "Erf", "Softplus",
                         "Softsign", "Elu", "Selu", "Celu", "ThresholdedRelu", "Mish", "Gelu", "Sin", "Cos", "Tan",
                         "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Not", "IsNaN",
                         "IsInf", "Clip", "Swish", "Shrink", "BitwiseNot"})
    r.add(op, make_unary);
}

}  // namespace kiln::cpu
