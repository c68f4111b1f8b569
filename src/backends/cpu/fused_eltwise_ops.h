// Private to fused.cpp: the ops a FusedElementwise chain may hold, each
// applied to a whole block in one tight loop so the compiler vectorizes it.
// The scalar formulas match unary.cpp / binary.cpp (same NaN behaviour, the
// same fast exp/tanh/erf from eltwise_util.h), so fusing never changes a
// result beyond float contraction. unary.cpp keeps its per-op functions in
// an unnamed namespace, hence the small twins here.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "backends/cpu/eltwise_util.h"

namespace kiln::cpu::fused {

enum class Op : uint8_t {
  kRelu, kLeakyRelu, kSigmoid, kHardSigmoid, kHardSwish, kTanh, kExp, kNeg, kAbs, kSqrt, kClip, kErf, kElu,
  kSoftplus,
  kAdd, kSub, kMul, kDiv, kMax, kMin, kPow,  // binary from here on
};
inline bool is_binary(Op op) { return op >= Op::kAdd; }

// False for names outside the fusable set.
inline bool parse_op(const std::string& s, Op* op) {
  static const char* const kNames[] = {"Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                                       "Exp",  "Neg",       "Abs",     "Sqrt",        "Clip",      "Erf",
                                       "Elu",  "Softplus",  "Add",     "Sub",         "Mul",       "Div",
                                       "Max",  "Min",       "Pow"};
  for (size_t k = 0; k < sizeof(kNames) / sizeof(kNames[0]); ++k)
    if (s == kNames[k]) {
      *op = Op(k);
      return true;
    }
  return false;
}

struct Step {
  Op op = Op::kRelu;
  int operand = -1;  // node-input index of a binary op's other operand
  bool swap = false;  // chain value is the right-hand side
  float alpha = 0.f, beta = 0.f;
};

template <class F> inline void map1(const float* s, float* d, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) d[i] = f(s[i]);
}

inline float clamp01(float v) {
  v = v > 1.0f ? 1.0f : v;
  return v < 0.0f ? 0.0f : v;  // NaN passes through
}

// d[i] = op(s[i]); s may equal d.
inline void apply_unary(const Step& st, const float* s, float* d, int64_t n) {
  const float a = st.alpha, b = st.beta;
  switch (st.op) {
    case Op::kRelu: return map1(s, d, n, [](float x) { return x < 0.0f ? 0.0f : x; });
    case Op::kLeakyRelu: return map1(s, d, n, [a](float x) { return x < 0.0f ? a * x : x; });
    case Op::kSigmoid: return ew::sigmoid_n(s, d, n);
    case Op::kHardSigmoid: return map1(s, d, n, [a, b](float x) { return clamp01(a * x + b); });
    case Op::kHardSwish: return map1(s, d, n, [](float x) { return x * clamp01(x * (1.0f / 6.0f) + 0.5f); });
    case Op::kTanh: return ew::tanh_n(s, d, n);
    case Op::kExp: return ew::exp_n(s, d, n);
    case Op::kNeg: return map1(s, d, n, [](float x) { return -x; });
    case Op::kAbs: return map1(s, d, n, [](float x) { return std::fabs(x); });
    case Op::kSqrt: return map1(s, d, n, [](float x) { return std::sqrt(x); });
    case Op::kClip:
      return map1(s, d, n, [a, b](float x) {
        float y = x < a ? a : x;
        return y > b ? b : y;  // NaN passes through
      });
    case Op::kErf: return ew::erf_n(s, d, n);
    case Op::kElu: return map1(s, d, n, [a](float x) { return x < 0.0f ? a * ew::expm1_fast(x) : x; });
    case Op::kSoftplus:
      return map1(s, d, n, [](float x) {
        return x > 0.0f ? x + std::log1p(ew::exp_fast(-x)) : std::log1p(ew::exp_fast(x));
      });
    default: break;
  }
}

// d[i] = f(s[i], v) (or f(v, s[i]) when swapped) where v is vec[i], or the
// block-constant `sc` when vec is null.
template <class F>
inline void map2(const float* s, const float* vec, float sc, bool swap, float* d, int64_t n, F f) {
  if (vec) {
    if (swap) {
      for (int64_t i = 0; i < n; ++i) d[i] = f(vec[i], s[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) d[i] = f(s[i], vec[i]);
    }
  } else if (swap) {
    for (int64_t i = 0; i < n; ++i) d[i] = f(sc, s[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) d[i] = f(s[i], sc);
  }
}

// Calls body(f, commutative) with the scalar function of binary op `op`.
template <class Body> inline void with_binary(Op op, Body&& body) {
  switch (op) {
    case Op::kAdd: return body([](float x, float y) { return x + y; }, true);
    case Op::kMul: return body([](float x, float y) { return x * y; }, true);
    case Op::kSub: return body([](float x, float y) { return x - y; }, false);
    case Op::kDiv: return body([](float x, float y) { return x / y; }, false);
    case Op::kMax: return body([](float x, float y) { return ew::nan_max(x, y); }, false);
    case Op::kMin: return body([](float x, float y) { return ew::nan_min(x, y); }, false);
    case Op::kPow: return body([](float x, float y) { return std::pow(x, y); }, false);
    default: break;
  }
}

inline void apply_binary(const Step& st, const float* s, const float* vec, float sc, float* d, int64_t n) {
  if (st.op == Op::kPow && !vec && !st.swap) {
    // Exponents of 1 and 2 are exact without powf (the common x^2).
    if (sc == 2.0f) return map1(s, d, n, [](float x) { return x * x; });
    if (sc == 1.0f) return map1(s, d, n, [](float x) { return x; });
  }
  with_binary(st.op, [&](auto f, bool comm) { map2(s, vec, sc, st.swap && !comm, d, n, f); });
}

// The same over `rows` rows of `inner` elements whose operand varies by row:
// row r reads base[roff[r]] (one value) or base[roff[r] + i] (row_vec).
// One dispatch per block, not per row: rows may be a few elements long.
inline void apply_binary_rows(const Step& st, const float* s, const float* base, const int64_t* roff, bool row_vec,
                              int64_t rows, int64_t inner, float* d) {
  with_binary(st.op, [&](auto f, bool comm) {
    const bool sw = st.swap && !comm;
    for (int64_t r = 0; r < rows; ++r) {
      const float* sr = s + r * inner;
      float* dr = d + r * inner;
      if (row_vec) map2(sr, base + roff[r], 0.f, sw, dr, inner, f);
      else map2(sr, nullptr, base[roff[r]], sw, dr, inner, f);
    }
  });
}

}  // namespace kiln::cpu::fused
