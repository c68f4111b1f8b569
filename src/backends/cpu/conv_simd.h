// AVX-512 helpers shared by kiln's own conv kernels. Every function marked
// KILN_AVX512 is only reached after avx512_enabled() (conv_gemm.h) said yes;
// the rest of the build targets AVX2.
#pragma once

#include <immintrin.h>

#include "backends/cpu/conv_common.h"

#define KILN_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))

namespace kiln::cpu {

// Fused activation on 16 lanes; Sigmoid / Tanh pass through (callers apply
// them with a scalar pass, see vector_activation()).
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
    default: return v;
  }
}

static inline bool vector_activation(const Activation& act) {
  return act.kind != Activation::kSigmoid && act.kind != Activation::kTanh;
}

// Bits [lo, hi) of a 16-lane mask (empty when hi <= lo).
static inline __mmask16 lane_range(int64_t lo, int64_t hi) {
  lo = lo < 0 ? 0 : lo;
  hi = hi > 16 ? 16 : hi;
  if (hi <= lo) return 0;
  return __mmask16(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

}  // namespace kiln::cpu
