// Reduce* and ArgMax/ArgMin. The input is viewed as [O, R, I] (kept outer,
// reduced, kept inner) after dropping size-1 axes and merging neighbours;
// reductions over non-adjacent axis groups first permute the data to
// [O, R]. Floats reduce in fp32 with several accumulators (rows) or one per
// inner lane (columns); integers accumulate exactly in int64.
// kiln never unmasks FP exceptions nor reads errno; letting the compiler
// speculate FP ops is what allows these select-style loops to vectorize.
#pragma GCC optimize("no-trapping-math", "no-math-errno")

#include <algorithm>
#include <cmath>
#include <limits>

#include "backends/cpu/eltwise_util.h"

namespace kiln::cpu {

namespace {

enum class Red { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kLogSum, kLogSumExp, kSumSquare };

Red red_of(const std::string& op) {
  static const std::pair<const char*, Red> table[] = {
      {"ReduceSum", Red::kSum}, {"ReduceMean", Red::kMean}, {"ReduceMax", Red::kMax}, {"ReduceMin", Red::kMin},
      {"ReduceProd", Red::kProd}, {"ReduceL1", Red::kL1}, {"ReduceL2", Red::kL2}, {"ReduceLogSum", Red::kLogSum},
      {"ReduceLogSumExp", Red::kLogSumExp}, {"ReduceSumSquare", Red::kSumSquare}};
  for (auto& [name, r] : table)
    if (op == name) return r;
  throw_internal("unknown reduction " + op);
}

constexpr float kInf = std::numeric_limits<float>::infinity();

// Element map applied before combining; `s` is the per-output shift (LogSumExp).
struct PreId { static float f(float x, float) { return x; } };
struct PreAbs { static float f(float x, float) { return std::fabs(x); } };
struct PreSq { static float f(float x, float) { return x * x; } };
struct PreExp { static float f(float x, float s) { return ew::exp_fast(x - s); } };
struct PreFinite { static float f(float x, float) { return std::fabs(x) == kInf ? -kInf : x; } };
struct CombAdd { static float f(float a, float b) { return a + b; } };
struct CombMul { static float f(float a, float b) { return a * b; } };
struct CombMax { static float f(float a, float b) { return ew::nan_max(a, b); } };
struct CombMin { static float f(float a, float b) { return ew::nan_min(a, b); } };

// y[o*I + i] = combine over r of pre(x[(o*R + r)*I + i], shift[o*I + i]).
template <class Pre, class Comb>
void reduce_f32(const float* x, float* y, int64_t O, int64_t R, int64_t I, float init, const float* shift) {
  if (I == 1) {
    ew::parallel_range(O, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const float* row = x + o * R;
        const float s = shift ? shift[o] : 0.0f;
        float lanes[16];
        for (float& l : lanes) l = init;
        int64_t r = 0;
        for (; r + 16 <= R; r += 16)
          for (int l = 0; l < 16; ++l) lanes[l] = Comb::f(lanes[l], Pre::f(row[r + l], s));
        float acc = init;
        for (int l = 0; l < 16; ++l) acc = Comb::f(acc, lanes[l]);
        for (; r < R; ++r) acc = Comb::f(acc, Pre::f(row[r], s));
        y[o] = acc;
      }
    }, std::max<int64_t>(1, ew::kGrain / std::max<int64_t>(R, 1)));
    return;
  }
  constexpr int64_t kChunk = 512;
  const int64_t chunks = (I + kChunk - 1) / kChunk;
  ew::parallel_range(O * chunks, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / chunks, i0 = (t % chunks) * kChunk, m = std::min(kChunk, I - i0);
      float* acc = y + o * I + i0;
      const float* sh = shift ? shift + o * I + i0 : nullptr;
      for (int64_t i = 0; i < m; ++i) acc[i] = init;
      for (int64_t r = 0; r < R; ++r) {
        const float* src = x + (o * R + r) * I + i0;
        if (sh) {
          for (int64_t i = 0; i < m; ++i) acc[i] = Comb::f(acc[i], Pre::f(src[i], sh[i]));
        } else {
          for (int64_t i = 0; i < m; ++i) acc[i] = Comb::f(acc[i], Pre::f(src[i], 0.0f));
        }
      }
    }
  }, std::max<int64_t>(1, ew::kGrain / std::max<int64_t>(R * kChunk, 1)));
}

void reduce_float(Red op, const float* x, float* y, int64_t O, int64_t R, int64_t I) {
  const int64_t n = O * I;
  auto post = [&](auto f) {
    ew::parallel_range(n, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) y[j] = f(y[j], j);
    });
  };
  switch (op) {
    case Red::kSum: return reduce_f32<PreId, CombAdd>(x, y, O, R, I, 0.0f, nullptr);
    case Red::kMean: {
      reduce_f32<PreId, CombAdd>(x, y, O, R, I, 0.0f, nullptr);
      const float inv = 1.0f / float(R);
      return post([inv](float v, int64_t) { return v * inv; });
    }
    case Red::kMax: return reduce_f32<PreId, CombMax>(x, y, O, R, I, -kInf, nullptr);
    case Red::kMin: return reduce_f32<PreId, CombMin>(x, y, O, R, I, kInf, nullptr);
    case Red::kProd: return reduce_f32<PreId, CombMul>(x, y, O, R, I, 1.0f, nullptr);
    case Red::kL1: return reduce_f32<PreAbs, CombAdd>(x, y, O, R, I, 0.0f, nullptr);
    case Red::kSumSquare: return reduce_f32<PreSq, CombAdd>(x, y, O, R, I, 0.0f, nullptr);
    case Red::kL2:
      reduce_f32<PreSq, CombAdd>(x, y, O, R, I, 0.0f, nullptr);
      return post([](float v, int64_t) { return std::sqrt(v); });
    case Red::kLogSum:
      reduce_f32<PreId, CombAdd>(x, y, O, R, I, 0.0f, nullptr);
      return post([](float v, int64_t) { return std::log(v); });
    case Red::kLogSumExp: {
      // Shift by the largest finite value so exp cannot overflow.
      std::vector<float> m(size_t(n), 0.0f);
      reduce_f32<PreFinite, CombMax>(x, m.data(), O, R, I, -kInf, nullptr);
      for (float& v : m) v = std::fabs(v) == kInf ? 0.0f : v;
      reduce_f32<PreExp, CombAdd>(x, y, O, R, I, 0.0f, m.data());
      const float* pm = m.data();
      return post([pm](float v, int64_t j) { return std::log(v) + pm[j]; });
    }
  }
}

// Integers: exact int64 accumulation (wrapping), double for L2/LogSum/LSE.
template <class T> void reduce_int(Red op, const T* x, T* y, int64_t O, int64_t R, int64_t I) {
  ew::parallel_range(O * I, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const T* p = x + (j / I) * R * I + (j % I);
      auto at = [&](int64_t r) { return p[r * I]; };
      int64_t acc = 0;
      double dacc = 0;
      switch (op) {
        case Red::kMax: {
          T v = std::numeric_limits<T>::lowest();
          for (int64_t r = 0; r < R; ++r) v = std::max(v, at(r));
          y[j] = v;
          continue;
        }
        case Red::kMin: {
          T v = std::numeric_limits<T>::max();
          for (int64_t r = 0; r < R; ++r) v = std::min(v, at(r));
          y[j] = v;
          continue;
        }
        case Red::kSum:
        case Red::kMean:
          for (int64_t r = 0; r < R; ++r) acc = ew::wrap_add(acc, int64_t(at(r)));
          if (op == Red::kMean && R > 0) acc /= R;
          break;
        case Red::kProd:
          acc = 1;
          for (int64_t r = 0; r < R; ++r) acc = ew::wrap_mul(acc, int64_t(at(r)));
          break;
        case Red::kL1:
          for (int64_t r = 0; r < R; ++r) acc = ew::wrap_add(acc, int64_t(at(r) < 0 ? -int64_t(at(r)) : at(r)));
          break;
        case Red::kSumSquare:
          for (int64_t r = 0; r < R; ++r) acc = ew::wrap_add(acc, ew::wrap_mul(int64_t(at(r)), int64_t(at(r))));
          break;
        case Red::kL2:
          for (int64_t r = 0; r < R; ++r) dacc += double(at(r)) * double(at(r));
          y[j] = ew::float_to_int<T>(std::sqrt(dacc));
          continue;
        case Red::kLogSum:
          for (int64_t r = 0; r < R; ++r) dacc += double(at(r));
          y[j] = ew::float_to_int<T>(std::log(dacc));
          continue;
        case Red::kLogSumExp: {
          double m = R ? double(at(0)) : 0.0;
          for (int64_t r = 1; r < R; ++r) m = std::max(m, double(at(r)));
          for (int64_t r = 0; r < R; ++r) dacc += std::exp(double(at(r)) - m);
          y[j] = ew::float_to_int<T>(std::log(dacc) + m);
          continue;
        }
      }
      y[j] = T(acc);
    }
  });
}

// The [O, R, I] view of a reduction, or a permutation to [O, R] first.
struct Layout {
  int64_t O = 1, R = 1, I = 1;
  bool permute = false;
  std::vector<int64_t> pdims, pstrides;  // permuted dims (kept then reduced) and source strides
};

Layout layout_of(const ir::Dims& dims, const std::vector<int64_t>& axes) {
  Layout L;
  auto reduced = [&](size_t d) { return std::find(axes.begin(), axes.end(), int64_t(d)) != axes.end(); };
  std::vector<std::pair<int64_t, bool>> groups;
  for (size_t d = 0; d < dims.size(); ++d) {
    if (reduced(d)) L.R *= dims[d];
    else L.O *= dims[d];
    if (dims[d] == 1) continue;
    if (!groups.empty() && groups.back().second == reduced(d)) groups.back().first *= dims[d];
    else groups.push_back({dims[d], reduced(d)});
  }
  if (L.O == 0 || L.R == 0) return L;  // nothing to read; caller fills
  // Direct when the reduced axes form one block: [K] [R] [K R] [R K] [K R K].
  size_t nred = 0;
  for (auto& g : groups) nred += g.second;
  if (nred <= 1) {  // groups alternate, so one reduced block
    int64_t outer = 1, inner = 1;
    bool seen = false;
    for (auto& g : groups) {
      if (g.second) seen = true;
      else (seen ? inner : outer) *= g.first;
    }
    L.O = outer;
    L.I = inner;
    return L;
  }
  L.permute = true;
  std::vector<int64_t> strides(dims.size());
  int64_t s = 1;
  for (size_t d = dims.size(); d-- > 0;) strides[d] = s, s *= dims[d];
  for (int pass = 0; pass < 2; ++pass)
    for (size_t d = 0; d < dims.size(); ++d)
      if (dims[d] != 1 && reduced(d) == (pass == 1)) L.pdims.push_back(dims[d]), L.pstrides.push_back(strides[d]);
  return L;
}

// Gathers x into the order of L.pdims (an odometer over the permuted axes).
template <class T> void permute_copy(const T* x, T* y, const Layout& L) {
  const size_t r = L.pdims.size();
  const int64_t total = L.O * L.R;
  std::vector<int64_t> idx(r, 0);
  int64_t src = 0;
  for (int64_t j = 0; j < total; ++j) {
    y[j] = x[src];
    for (size_t d = r; d-- > 0;) {
      src += L.pstrides[d];
      if (++idx[d] < L.pdims[d]) break;
      src -= idx[d] * L.pstrides[d];
      idx[d] = 0;
    }
  }
}

template <class T> T empty_value(Red op) {
  constexpr bool fl = std::is_floating_point_v<T>;
  switch (op) {
    case Red::kMax: return fl ? T(-kInf) : std::numeric_limits<T>::lowest();
    case Red::kMin: return fl ? T(kInf) : std::numeric_limits<T>::max();
    case Red::kProd: return T(1);
    case Red::kMean: return fl ? T(std::numeric_limits<float>::quiet_NaN()) : T(0);
    case Red::kLogSum:
    case Red::kLogSumExp: return fl ? T(-kInf) : std::numeric_limits<T>::lowest();
    default: return T(0);
  }
}

class ReduceKernel : public Kernel {
 public:
  ReduceKernel(const ir::Node& n, Red op, std::vector<int64_t> axes, bool noop)
      : op_(op), dt_(n.inputs[0]->dtype), axes_(std::move(axes)), noop_(noop) {
    if (dt_ == DataType::kBool && op != Red::kMax && op != Red::kMin)
      throw_unsupported(n.label() + ": bool input is only supported by ReduceMax/ReduceMin");
    Layout L = layout_of(n.inputs[0]->dims, axes_);
    tactic_ = noop ? "cpu.reduce.copy"
                   : L.permute ? "cpu.reduce.permuted" : (L.I == 1 ? "cpu.reduce.rows" : "cpu.reduce.columns");
  }
  std::string tactic() const override { return tactic_; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& x = *in[0];
    ir::Tensor& y = *out[0];
    if (noop_) {
      if (y.nbytes()) std::memcpy(y.raw(), x.raw(), y.nbytes());
      return;
    }
    const Layout L = layout_of(x.dims(), axes_);
    switch (dt_) {
      case DataType::kFloat32: return go<float>(x, y, L);
      case DataType::kFloat16: {
        ir::Tensor fx = ew::to_float_tensor(x), fy(DataType::kFloat32, y.dims());
        go<float>(fx, fy, L);
        return ew::store_half_tensor(fy, y);
      }
      case DataType::kInt8: return go<int8_t>(x, y, L);
      case DataType::kBool:
      case DataType::kUInt8: return go<uint8_t>(x, y, L);
      case DataType::kInt32: return go<int32_t>(x, y, L);
      case DataType::kInt64: return go<int64_t>(x, y, L);
    }
  }

 private:
  template <class T> void go(const ir::Tensor& x, ir::Tensor& y, const Layout& L) const {
    T* py = y.data<T>();
    if (y.numel() == 0) return;
    if (L.R == 0) {
      std::fill(py, py + y.numel(), empty_value<T>(op_));
      return;
    }
    const T* px = x.data<T>();
    std::vector<T> tmp;
    if (L.permute) {
      tmp.resize(size_t(L.O * L.R));
      permute_copy(px, tmp.data(), L);
      px = tmp.data();
    }
    if constexpr (std::is_same_v<T, float>) reduce_float(op_, px, py, L.O, L.R, L.I);
    else reduce_int<T>(op_, px, py, L.O, L.R, L.I);
  }

  Red op_;
  DataType dt_;
  std::vector<int64_t> axes_;
  bool noop_;
  std::string tactic_;
};

// Mirrors the axes resolution of shape inference (src/ir/ops/reduce.cpp).
std::unique_ptr<Kernel> make_reduce(const ir::Node& n) {
  const int64_t rank = int64_t(n.inputs[0]->dims.size());
  std::vector<int64_t> axes;
  if (const ir::Value* a = n.in(1)) {
    if (ir::numel_of(a->dims) > 0) {
      if (!a->is_constant()) throw_unsupported(n.label() + ": input '" + a->name + "' must be a constant (kiln needs static shapes)");
      axes = a->constant->to_int64();
    }
  } else if (n.has("axes")) {
    axes = n.ints("axes");
  }
  bool noop = false;
  if (axes.empty()) {
    noop = n.i("noop_with_empty_axes", 0) != 0;
    for (int64_t d = 0; d < rank && !noop; ++d) axes.push_back(d);
  }
  for (int64_t& ax : axes) ax = ir::normalize_axis(n, ax, rank);
  return std::make_unique<ReduceKernel>(n, red_of(n.op_type), axes, noop);
}

// ArgMax/ArgMin over [O, A, I]; ties pick the first index, or the last with
// select_last_index; NaN counts as the extreme (numpy argmax semantics).
// One contiguous row: a vectorizable extreme first, then the index of its
// first (or last) occurrence.
template <class T, bool kMax> T row_extreme(const T* p, int64_t A) {
  T m = p[0];
  int64_t a = 1;
#ifdef KILN_EW_AVX2
  if constexpr (std::is_same_v<T, float>) {  // explicit: the compiler leaves this scalar
    __m256 vm = _mm256_set1_ps(p[0]), nan = _mm256_setzero_ps();
    for (a = 0; a + 8 <= A; a += 8) {
      __m256 v = _mm256_loadu_ps(p + a);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      vm = kMax ? _mm256_max_ps(vm, v) : _mm256_min_ps(vm, v);
    }
    if (_mm256_movemask_ps(nan)) return std::numeric_limits<float>::quiet_NaN();
    float lanes[8];
    _mm256_storeu_ps(lanes, vm);
    for (float l : lanes) m = kMax ? std::max(m, l) : std::min(m, l);
  }
#endif
  for (; a < A; ++a) m = kMax ? ew::nan_max(m, p[a]) : ew::nan_min(m, p[a]);
  return m;
}

template <class T, bool kMax> int64_t arg_row(const T* p, int64_t A, bool last) {
  const T m = row_extreme<T, kMax>(p, A);
  const bool nan = m != m;  // NaN is the extreme (numpy)
  auto hit = [&](int64_t k) { return nan ? p[k] != p[k] : p[k] == m; };
  int64_t k = 0;
  if (last) {
    for (k = A - 1; k > 0 && !hit(k); --k) {}
  } else {
    for (; k < A - 1 && !hit(k); ++k) {}
  }
  return k;
}

template <class T, bool kMax>
void arg_reduce(const T* x, int64_t* y, int64_t O, int64_t A, int64_t I, bool last) {
  if (I == 1) {
    ew::parallel_range(O, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) y[o] = arg_row<T, kMax>(x + o * A, A, last);
    }, std::max<int64_t>(1, ew::kGrain / std::max<int64_t>(A, 1)));
    return;
  }
  ew::parallel_range(O * I, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const T* p = x + (j / I) * A * I + (j % I);
      T best = p[0];
      int64_t bi = 0;
      for (int64_t a = 1; a < A; ++a) {
        const T v = p[a * I];
        bool better = kMax ? v > best : v < best;
        if (last) better = better || v == best;
        if constexpr (std::is_floating_point_v<T>) {
          if (best != best) better = last && v != v;
          else if (v != v) better = true;
        }
        if (better) best = v, bi = a;
      }
      y[j] = bi;
    }
  }, std::max<int64_t>(1, ew::kGrain / std::max<int64_t>(A, 1)));
}

template <bool kMax> std::unique_ptr<Kernel> make_arg(const ir::Node& n) {
  const ir::Dims dims = n.inputs[0]->dims;
  const DataType dt = n.inputs[0]->dtype;
  const int64_t rank = int64_t(dims.size());
  const int64_t axis = rank ? ir::normalize_axis(n, n.i("axis", 0), rank) : 0;
  const bool last = n.i("select_last_index", 0) != 0;
  require_dtype(n, "input", dt, {DataType::kFloat32, DataType::kFloat16, DataType::kInt8, DataType::kUInt8,
                                 DataType::kInt32, DataType::kInt64});
  return make_kernel("cpu.reduce.arg", [axis, last, dt](const std::vector<const ir::Tensor*>& in,
                                                        const std::vector<ir::Tensor*>& out) {
    const ir::Tensor& x = *in[0];
    int64_t O = 1, A = 1, I = 1;
    for (int64_t d = 0; d < x.rank(); ++d) (d < axis ? O : d == axis ? A : I) *= x.dims()[size_t(d)];
    int64_t* y = out[0]->data<int64_t>();
    if (out[0]->numel() == 0) return;
    if (A == 0) throw_bad_input("arg reduction over an empty axis");
    switch (dt) {
      case DataType::kFloat32: return arg_reduce<float, kMax>(x.data<float>(), y, O, A, I, last);
      case DataType::kFloat16: {
        ir::Tensor f = ew::to_float_tensor(x);
        return arg_reduce<float, kMax>(f.data<float>(), y, O, A, I, last);
      }
      case DataType::kInt8: return arg_reduce<int8_t, kMax>(x.data<int8_t>(), y, O, A, I, last);
      case DataType::kUInt8: return arg_reduce<uint8_t, kMax>(x.data<uint8_t>(), y, O, A, I, last);
      case DataType::kInt32: return arg_reduce<int32_t, kMax>(x.data<int32_t>(), y, O, A, I, last);
      default: return arg_reduce<int64_t, kMax>(x.data<int64_t>(), y, O, A, I, last);
    }
  });
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  for (const char* op : {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                         "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})
    r.add(op, make_reduce);
  r.add("ArgMax", make_arg<true>);
  r.add("ArgMin", make_arg<false>);
}

}  // namespace kiln::cpu
