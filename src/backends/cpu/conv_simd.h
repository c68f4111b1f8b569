// AVX-512 helpers shared by kiln's own conv kernels. Every function marked
// KILN_AVX512 is only reached after avx512_enabled() (conv_gemm.h) said yes;
// the rest of the build targets AVX2.
#pragma once

#include <immintrin.h>

#include "backends/cpu/conv_common.h"

#define KILN_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))

namespace kiln::cpu {

// e^x on 16 lanes: x = n ln2 + r with |r| <= ln2 / 2, e^r from its Taylor
// series to r^7 (truncation below 1e-8 relative), scaled by 2^n with
// vscalefps. Inputs are clamped to where float e^x is finite or a denormal;
// the clamp keeps NaN (max/min return their second operand on NaN).
KILN_AVX512 static inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(88.7f), _mm512_max_ps(_mm512_set1_ps(-103.9f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // ln2 in two parts: n * hi is exact for the n that occur here.
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// num / (1 + e^-v): sigmoid with num = 1, SiLU with num = v. For v << 0
// e^-v saturates near FLT_MAX and the quotient goes to zero as it should.
KILN_AVX512 static inline __m512 over_one_plus_exp_neg512(__m512 num, __m512 v) {
  const __m512 one = _mm512_set1_ps(1.f);
  return _mm512_div_ps(num, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
}

// tanh v = 1 - 2 / (e^2v + 1); near zero that difference cancels, so
// |v| < 0.25 uses the odd series to v^9 instead (truncation below 1e-8).
KILN_AVX512 static inline __m512 tanh512(__m512 v) {
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 e = exp512(_mm512_add_ps(v, v));
  const __m512 far = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.f), _mm512_add_ps(e, one)));
  const __m512 v2 = _mm512_mul_ps(v, v);
  __m512 p = _mm512_set1_ps(62.f / 2835.f);
  p = _mm512_fmadd_ps(p, v2, _mm512_set1_ps(-17.f / 315.f));
  p = _mm512_fmadd_ps(p, v2, _mm512_set1_ps(2.f / 15.f));
  p = _mm512_fmadd_ps(p, v2, _mm512_set1_ps(-1.f / 3.f));
  p = _mm512_mul_ps(p, v2);
  const __m512 near = _mm512_fmadd_ps(p, v, v);
  const __mmask16 small = _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(0.25f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(small, far, near);
}

// Fused activation on 16 lanes (every Activation kind).
KILN_AVX512 static inline __m512 act512(__m512 v, int kind, __m512 a, __m512 b) {
  const __m512 zero = _mm512_setzero_ps();
  switch (kind) {
    case Activation::kRelu: return _mm512_max_ps(v, zero);
    case Activation::kClip: return _mm512_min_ps(_mm512_max_ps(v, a), b);
    case Activation::kLeakyRelu: return _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, a);
    case Activation::kHardSigmoid:
      return _mm512_min_ps(_mm512_max_ps(_mm512_fmadd_ps(a, v, b), zero), _mm512_set1_ps(1.f));
    case Activation::kHardSwish: {
      __m512 t = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, _mm512_set1_ps(3.f)), zero), _mm512_set1_ps(6.f));
      return _mm512_mul_ps(_mm512_mul_ps(v, t), _mm512_set1_ps(1.f / 6.f));
    }
    case Activation::kSigmoid: return over_one_plus_exp_neg512(_mm512_set1_ps(1.f), v);
    case Activation::kTanh: return tanh512(v);
    case Activation::kSiLU: return over_one_plus_exp_neg512(v, v);
    default: return v;
  }
}

// Bits [lo, hi) of a 16-lane mask (empty when hi <= lo).
static inline __mmask16 lane_range(int64_t lo, int64_t hi) {
  lo = lo < 0 ? 0 : lo;
  hi = hi > 16 ? 16 : hi;
  if (hi <= lo) return 0;
  return __mmask16(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

}  // namespace kiln::cpu
