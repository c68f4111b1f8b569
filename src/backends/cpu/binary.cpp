// Broadcasting multi-input kernels. Each op is a small functor over one
// element type; the broadcast plan (broadcast.h) picks a branch-free loop for
// the stride pattern once per run. Integer arithmetic wraps; integer Div
// truncates toward zero (as a C cast of the true quotient, the ONNX
// reference), integer division by zero yields 0 rather than trapping. fp16
// is computed in fp32.
// kiln never unmasks FP exceptions nor reads errno, so let the compiler
// speculate FP ops and inline sqrt: needed to vectorize select-style loops.
#pragma GCC optimize("no-trapping-math", "no-math-errno")
#include <cmath>
#include <limits>

#include "backends/cpu/broadcast.h"

namespace kiln::cpu {

namespace {

using ew::nan_max;
using ew::nan_min;

struct AddOp { template <class T> T operator()(T a, T b) const { return ew::wrap_add(a, b); } };
struct SubOp { template <class T> T operator()(T a, T b) const { return ew::wrap_sub(a, b); } };
struct MulOp { template <class T> T operator()(T a, T b) const { return ew::wrap_mul(a, b); } };
struct MaxOp { template <class T> T operator()(T a, T b) const { return nan_max(a, b); } };
struct MinOp { template <class T> T operator()(T a, T b) const { return nan_min(a, b); } };
struct DivOp {
  template <class T> T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return a / b;
    } else {
      if (b == 0) return T(0);
      if constexpr (std::is_signed_v<T>) if (b == T(-1)) return ew::wrap_neg(a);
      return T(a / b);
    }
  }
};
// fmod=1: sign of the dividend (C fmod); fmod=0 on integers: sign of the divisor.
struct ModOp {
  bool fmod = false;
  template <class T> T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return std::fmod(a, b);
    } else {
      if (b == 0) return T(0);
      if constexpr (std::is_signed_v<T>) {
        if (b == T(-1)) return T(0);
        T r = T(a % b);
        if (!fmod && r != 0 && ((r < 0) != (b < 0))) r = T(r + b);
        return r;
      } else {
        return T(a % b);
      }
    }
  }
};
struct PReluOp { template <class T> T operator()(T x, T s) const { return x < T(0) ? ew::wrap_mul(x, s) : x; } };
struct EqOp { template <class T> uint8_t operator()(T a, T b) const { return a == b; } };
struct LtOp { template <class T> uint8_t operator()(T a, T b) const { return a < b; } };
struct GtOp { template <class T> uint8_t operator()(T a, T b) const { return a > b; } };
struct LeOp { template <class T> uint8_t operator()(T a, T b) const { return a <= b; } };
struct GeOp { template <class T> uint8_t operator()(T a, T b) const { return a >= b; } };
struct AndOp { template <class T> T operator()(T a, T b) const { return T((a != 0) & (b != 0)); } };
struct OrOp { template <class T> T operator()(T a, T b) const { return T((a != 0) | (b != 0)); } };
struct XorOp { template <class T> T operator()(T a, T b) const { return T((a != 0) ^ (b != 0)); } };
struct BitAndOp { template <class T> T operator()(T a, T b) const { return T(a & b); } };
struct BitOrOp { template <class T> T operator()(T a, T b) const { return T(a | b); } };
struct BitXorOp { template <class T> T operator()(T a, T b) const { return T(a ^ b); } };
struct ShiftOp {
  bool left = true;
  template <class T> T operator()(T a, T b) const {
    if (b >= T(sizeof(T) * 8)) return T(0);
    return left ? T(a << b) : T(a >> b);
  }
};

std::vector<const ir::Dims*> dims_of(const ir::Node& n, size_t k0, size_t k1) {
  return {&n.inputs[k0]->dims, &n.inputs[k1]->dims};
}

// T: element type computed in (float for fp16 tensors); R: result type.
template <class T, class R, class Op> class Binary : public Kernel {
 public:
  Binary(const ir::Node& n, Op op, bool half, bool mean) : op_(op), half_(half), mean_(mean) {
    if (n.inputs.size() >= 2) {
      cache_.init(n.outputs[0]->dims, dims_of(n, 0, 1));
      tactic_ = "cpu.eltwise." + cache_.plan().kind();
    } else {
      tactic_ = "cpu.eltwise.copy";
    }
  }
  std::string tactic() const override { return tactic_; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    if (!half_) return eval(in, *out[0]);
    std::vector<ir::Tensor> tmp;
    std::vector<const ir::Tensor*> fin;
    tmp.reserve(in.size());
    for (auto* t : in) tmp.push_back(ew::to_float_tensor(*t));
    for (auto& t : tmp) fin.push_back(&t);
    if constexpr (std::is_same_v<R, uint8_t>) {
      eval(fin, *out[0]);
    } else {
      ir::Tensor fo(DataType::kFloat32, out[0]->dims());
      eval(fin, fo);
      ew::store_half_tensor(fo, *out[0]);
    }
  }

 private:
  void eval(const std::vector<const ir::Tensor*>& in, ir::Tensor& o) const {
    R* po = o.data<R>();
    if (in.size() == 1) {  // variadic ops with one input
      if (o.nbytes()) std::memcpy(po, in[0]->raw(), o.nbytes());
      return;
    }
    bc::Plan scratch;
    const bc::Plan& p = cache_.get(o.dims(), {&in[0]->dims(), &in[1]->dims()}, scratch);
    bc::binary_loop(p, in[0]->data<T>(), in[1]->data<T>(), po, op_);
    if constexpr (std::is_same_v<T, R>) {
      for (size_t k = 2; k < in.size(); ++k) {  // accumulate further inputs in place
        bc::Plan pk = bc::make_plan(o.dims(), {&o.dims(), &in[k]->dims()});
        bc::binary_loop(pk, po, in[k]->data<T>(), po, op_);
      }
      if constexpr (std::is_floating_point_v<T>) {
        if (mean_) {
          const T s = T(1) / T(in.size());
          ew::parallel_range(o.numel(), [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) po[i] *= s;
          });
        }
      }
    }
  }

  Op op_;
  bool half_, mean_;
  bc::PlanCache cache_;
  std::string tactic_;
};

DataType in_dtype(const ir::Node& n) { return n.in(0) ? n.in(0)->dtype : DataType::kFloat32; }

template <class Op>
std::unique_ptr<Kernel> make_same(const ir::Node& n, Op op, bool ints, bool mean = false) {
  const DataType dt = in_dtype(n);
  switch (dt) {
    case DataType::kFloat32: return std::make_unique<Binary<float, float, Op>>(n, op, false, mean);
    case DataType::kFloat16: return std::make_unique<Binary<float, float, Op>>(n, op, true, mean);
    default: break;
  }
  if (ints) {
    switch (dt) {
      case DataType::kInt8: return std::make_unique<Binary<int8_t, int8_t, Op>>(n, op, false, false);
      case DataType::kUInt8: return std::make_unique<Binary<uint8_t, uint8_t, Op>>(n, op, false, false);
      case DataType::kInt32: return std::make_unique<Binary<int32_t, int32_t, Op>>(n, op, false, false);
      case DataType::kInt64: return std::make_unique<Binary<int64_t, int64_t, Op>>(n, op, false, false);
      default: break;
    }
  }
  throw_unsupported(n.label() + ": input dtype " + dtype_name(dt) + " is not supported by the CPU kernel");
}

// Integer-only ops: float element types never instantiate the functor.
template <class Op> std::unique_ptr<Kernel> make_int(const ir::Node& n, Op op) {
  switch (in_dtype(n)) {
    case DataType::kInt8: return std::make_unique<Binary<int8_t, int8_t, Op>>(n, op, false, false);
    case DataType::kUInt8: return std::make_unique<Binary<uint8_t, uint8_t, Op>>(n, op, false, false);
    case DataType::kInt32: return std::make_unique<Binary<int32_t, int32_t, Op>>(n, op, false, false);
    case DataType::kInt64: return std::make_unique<Binary<int64_t, int64_t, Op>>(n, op, false, false);
    default: break;
  }
  throw_unsupported(n.label() + ": input dtype " + dtype_name(in_dtype(n)) + " is not supported by the CPU kernel");
}

template <class Op> std::unique_ptr<Kernel> make_compare(const ir::Node& n, Op op) {
  switch (in_dtype(n)) {
    case DataType::kFloat32: return std::make_unique<Binary<float, uint8_t, Op>>(n, op, false, false);
    case DataType::kFloat16: return std::make_unique<Binary<float, uint8_t, Op>>(n, op, true, false);
    case DataType::kInt8: return std::make_unique<Binary<int8_t, uint8_t, Op>>(n, op, false, false);
    case DataType::kBool:
    case DataType::kUInt8: return std::make_unique<Binary<uint8_t, uint8_t, Op>>(n, op, false, false);
    case DataType::kInt32: return std::make_unique<Binary<int32_t, uint8_t, Op>>(n, op, false, false);
    case DataType::kInt64: return std::make_unique<Binary<int64_t, uint8_t, Op>>(n, op, false, false);
  }
  throw_internal(n.label() + ": unknown dtype");
}

template <class Op> std::unique_ptr<Kernel> make_bytes(const ir::Node& n, Op op, DataType want) {
  require_dtype(n, "input", in_dtype(n), {want});
  return std::make_unique<Binary<uint8_t, uint8_t, Op>>(n, op, false, false);
}

// Pow: the exponent may have another dtype than the base; the result takes
// the base's. Float bases compute in float (double for integer exponents, as
// the ONNX reference does); integer bases use exact integer powers or a
// truncated double power for float exponents.
template <class T> T int_pow(T base, int64_t e) {
  if (e < 0) {
    if (base == T(1)) return T(1);
    if constexpr (std::is_signed_v<T>) if (base == T(-1)) return (e & 1) ? T(-1) : T(1);
    return T(0);
  }
  T r = T(1);
  while (e) {
    if (e & 1) r = ew::wrap_mul(r, base);
    base = ew::wrap_mul(base, base);
    e >>= 1;
  }
  return r;
}

class PowKernel : public Kernel {
 public:
  explicit PowKernel(const ir::Node& n) : base_(n.inputs[0]->dtype), exp_(n.inputs[1]->dtype) {
    cache_.init(n.outputs[0]->dims, dims_of(n, 0, 1));
    tactic_ = "cpu.eltwise.pow_" + cache_.plan().kind();
  }
  std::string tactic() const override { return tactic_; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& a = *in[0];
    const ir::Tensor& b = *in[1];
    ir::Tensor& o = *out[0];
    bc::Plan scratch;
    const bc::Plan& p = cache_.get(o.dims(), {&a.dims(), &b.dims()}, scratch);
    if (ew::is_float(base_)) {
      const bool half = base_ == DataType::kFloat16;
      ir::Tensor fa = half ? ew::to_float_tensor(a) : a;
      ir::Tensor fo = half ? ir::Tensor(DataType::kFloat32, o.dims()) : o;  // shares o's storage when fp32
      if (ew::is_float(exp_)) {
        ir::Tensor fb = exp_ == DataType::kFloat16 ? ew::to_float_tensor(b) : b;
        if (fb.numel() == 1) {
          pow_scalar(fa.data<float>(), fb.data<float>()[0], fo.data<float>(), fo.numel());
        } else {
          bc::binary_loop(p, fa.data<float>(), fb.data<float>(), fo.data<float>(),
                          [](float x, float e) { return std::pow(x, e); });
        }
      } else {
        std::vector<double> eb = b.to_double();
        bc::binary_loop(p, fa.data<float>(), eb.data(), fo.data<float>(),
                        [](float x, double e) { return float(std::pow(double(x), e)); });
      }
      if (half) ew::store_half_tensor(fo, o);
      return;
    }
    switch (base_) {
      case DataType::kInt8: return int_base<int8_t>(p, a, b, o);
      case DataType::kUInt8: return int_base<uint8_t>(p, a, b, o);
      case DataType::kInt32: return int_base<int32_t>(p, a, b, o);
      default: return int_base<int64_t>(p, a, b, o);
    }
  }

 private:
  static void pow_scalar(const float* x, float e, float* y, int64_t n) {
    ew::parallel_range(n, [&](int64_t b, int64_t end) {
      if (e == 2.0f) {
        for (int64_t i = b; i < end; ++i) y[i] = x[i] * x[i];
      } else if (e == 1.0f) {
        for (int64_t i = b; i < end; ++i) y[i] = x[i];
      } else {
        for (int64_t i = b; i < end; ++i) y[i] = std::pow(x[i], e);
      }
    });
  }
  template <class T> void int_base(const bc::Plan& p, const ir::Tensor& a, const ir::Tensor& b, ir::Tensor& o) {
    if (ew::is_float(exp_)) {
      std::vector<double> eb = b.to_double();
      bc::binary_loop(p, a.data<T>(), eb.data(), o.data<T>(),
                      [](T x, double e) { return ew::float_to_int<T>(std::pow(double(x), e)); });
    } else {
      std::vector<int64_t> eb = b.to_int64();
      bc::binary_loop(p, a.data<T>(), eb.data(), o.data<T>(), [](T x, int64_t e) { return int_pow<T>(x, e); });
    }
  }

  DataType base_, exp_;
  bc::PlanCache cache_;
  std::string tactic_;
};

// Where works on raw element bits: any dtype of a given size is one case.
class WhereKernel : public Kernel {
 public:
  explicit WhereKernel(const ir::Node& n) : size_(dtype_size(n.inputs[1]->dtype)) {
    cache_.init(n.outputs[0]->dims, {&n.inputs[0]->dims, &n.inputs[1]->dims, &n.inputs[2]->dims});
    tactic_ = "cpu.eltwise.where_" + cache_.plan().kind();
  }
  std::string tactic() const override { return tactic_; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    bc::Plan scratch;
    const bc::Plan& p = cache_.get(out[0]->dims(), {&in[0]->dims(), &in[1]->dims(), &in[2]->dims()}, scratch);
    switch (size_) {
      case 1: return go<uint8_t>(p, in, *out[0]);
      case 2: return go<uint16_t>(p, in, *out[0]);
      case 4: return go<uint32_t>(p, in, *out[0]);
      default: return go<uint64_t>(p, in, *out[0]);
    }
  }

 private:
  template <class T> static void go(const bc::Plan& p, const std::vector<const ir::Tensor*>& in, ir::Tensor& o) {
    const uint8_t* c = in[0]->data<uint8_t>();
    const T* x = in[1]->data<T>();
    const T* y = in[2]->data<T>();
    T* po = o.data<T>();
    auto drive = [&](auto sc, auto sx, auto sy) {
      constexpr int64_t kC = decltype(sc)::value, kX = decltype(sx)::value, kY = decltype(sy)::value;
      ew::parallel_range(p.total, [&](int64_t s, int64_t e) {
        bc::for_segments(p, s, e, [&](int64_t off, const int64_t* io, int64_t n) {
          const uint8_t* pc = c + io[0];
          const T* px = x + io[1];
          const T* py = y + io[2];
          T* q = po + off;
          // Bit-select on both loaded values: no conditional load, so it vectorizes.
          for (int64_t i = 0; i < n; ++i) {
            const T m = T(T(0) - T(pc[i * kC] != 0));
            q[i] = T((px[i * kX] & m) | (py[i * kY] & T(~m)));
          }
        });
      });
    };
    using I1 = std::integral_constant<int64_t, 1>;
    using I0 = std::integral_constant<int64_t, 0>;
    switch (p.pattern()) {
      case 7: drive(I1{}, I1{}, I1{}); break;
      case 6: drive(I0{}, I1{}, I1{}); break;
      case 5: drive(I1{}, I0{}, I1{}); break;
      case 4: drive(I0{}, I0{}, I1{}); break;
      case 3: drive(I1{}, I1{}, I0{}); break;
      case 2: drive(I0{}, I1{}, I0{}); break;
      case 1: drive(I1{}, I0{}, I0{}); break;
      default: drive(I0{}, I0{}, I0{}); break;
    }
  }

  size_t size_;
  bc::PlanCache cache_;
  std::string tactic_;
};

std::unique_ptr<Kernel> make_pow_kernel(const ir::Node& n) { return std::make_unique<PowKernel>(n); }
std::unique_ptr<Kernel> make_where_kernel(const ir::Node& n) { return std::make_unique<WhereKernel>(n); }

}  // namespace

void register_binary_kernels(KernelRegistry& r) {
  r.add("Add", [](const ir::Node& n) { return make_same(n, AddOp{}, true); });
  r.add("Sub", [](const ir::Node& n) { return make_same(n, SubOp{}, true); });
  r.add("Mul", [](const ir::Node& n) { return make_same(n, MulOp{}, true); });
  r.add("Div", [](const ir::Node& n) { return make_same(n, DivOp{}, true); });
  r.add("Mod", [](const ir::Node& n) { return make_same(n, ModOp{n.i("fmod", 0) != 0}, true); });
  r.add("Max", [](const ir::Node& n) { return make_same(n, MaxOp{}, true); });
  r.add("Min", [](const ir::Node& n) { return make_same(n, MinOp{}, true); });
  r.add("Sum", [](const ir::Node& n) { return make_same(n, AddOp{}, true); });
  r.add("Mean", [](const ir::Node& n) { return make_same(n, AddOp{}, false, true); });
  r.add("PRelu", [](const ir::Node& n) { return make_same(n, PReluOp{}, true); });
  r.add("Equal", [](const ir::Node& n) { return make_compare(n, EqOp{}); });
  r.add("Less", [](const ir::Node& n) { return make_compare(n, LtOp{}); });
  r.add("Greater", [](const ir::Node& n) { return make_compare(n, GtOp{}); });
  r.add("LessOrEqual", [](const ir::Node& n) { return make_compare(n, LeOp{}); });
  r.add("GreaterOrEqual", [](const ir::Node& n) { return make_compare(n, GeOp{}); });
  r.add("And", [](const ir::Node& n) { return make_bytes(n, AndOp{}, DataType::kBool); });
  r.add("Or", [](const ir::Node& n) { return make_bytes(n, OrOp{}, DataType::kBool); });
  r.add("Xor", [](const ir::Node& n) { return make_bytes(n, XorOp{}, DataType::kBool); });
  r.add("BitwiseAnd", [](const ir::Node& n) { return make_int(n, BitAndOp{}); });
  r.add("BitwiseOr", [](const ir::Node& n) { return make_int(n, BitOrOp{}); });
  r.add("BitwiseXor", [](const ir::Node& n) { return make_int(n, BitXorOp{}); });
  r.add("BitShift", [](const ir::Node& n) {
    return make_bytes(n, ShiftOp{n.s("direction", "LEFT") == "LEFT"}, DataType::kUInt8);
  });
  r.add("Pow", make_pow_kernel);
  r.add("Where", make_where_kernel);
}

}  // namespace kiln::cpu
