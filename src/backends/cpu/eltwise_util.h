// Private helpers for the element-wise kernel families (unary, binary,
// reduce, softmax, misc): parallel ranges, fp16 block conversion, wrapping
// integer arithmetic and branch-free float math the compiler can vectorize.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "backends/cpu/kernel.h"
#include "backends/cpu/parallel.h"
#include "kiln/error.h"
#include "kiln/types.h"

#if defined(__AVX__)
#include <immintrin.h>
#endif
#if defined(__F16C__) && defined(__AVX__)
#define KILN_EW_F16C 1
#endif

namespace kiln::cpu::ew {

// Below this many elements a loop is not worth waking the pool for.
constexpr int64_t kGrain = 16384;

template <class F> void parallel_range(int64_t n, F&& fn, int64_t grain = kGrain) {
  if (n <= 0) return;
  if (n <= grain) {
    fn(int64_t(0), n);
    return;
  }
  parallel_for(n, [&](int64_t b, int64_t e) { fn(b, e); }, grain);
}

inline bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }
inline bool is_int(DataType t) {
  return t == DataType::kInt8 || t == DataType::kUInt8 || t == DataType::kInt32 || t == DataType::kInt64;
}

// fp16 <-> fp32 over arrays. F16C rounds to nearest even like kiln::float_to_half.
inline void half_to_float_n(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
#ifdef KILN_EW_F16C
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  for (; i < n; ++i) dst[i] = half_to_float(src[i]);
}

inline void float_to_half_n(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#ifdef KILN_EW_F16C
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; ++i) dst[i] = float_to_half(src[i]);
}

// Whole-tensor fp16 -> fp32 copy (kernels that compute fp16 in float).
inline ir::Tensor to_float_tensor(const ir::Tensor& t) {
  ir::Tensor f(DataType::kFloat32, t.dims());
  const uint16_t* s = t.data<uint16_t>();
  float* d = f.data<float>();
  parallel_range(t.numel(), [&](int64_t b, int64_t e) { half_to_float_n(s + b, d + b, e - b); });
  return f;
}
inline void store_half_tensor(const ir::Tensor& f, ir::Tensor& out) {
  const float* s = f.data<float>();
  uint16_t* d = out.data<uint16_t>();
  parallel_range(f.numel(), [&](int64_t b, int64_t e) { float_to_half_n(s + b, d + b, e - b); });
}

// Integer arithmetic wraps (two's complement) as ONNX runtimes do; done in
// unsigned to stay clear of signed-overflow undefined behaviour.
template <class T> inline T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return T(U(U(a) + U(b)));
  } else {
    return a + b;
  }
}
template <class T> inline T wrap_sub(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return T(U(U(a) - U(b)));
  } else {
    return a - b;
  }
}
template <class T> inline T wrap_mul(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;
    return T(U(U(a) * U(b)));
  } else {
    return a * b;
  }
}
template <class T> inline T wrap_neg(T a) { return wrap_sub(T(0), a); }

// Float -> integer as x86 (and so numpy/onnxruntime there) does it: truncate
// toward zero; NaN and out-of-range give the minimum of int32/int64, and the
// 8-bit types take the low bits of the int32 result.
template <class D> inline D float_to_int(double x) {
  if constexpr (sizeof(D) == 8) {
    if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0)) return std::numeric_limits<D>::min();
    return D(int64_t(x));
  } else {
    int32_t v = (x >= -2147483648.0 && x < 2147483648.0) ? int32_t(x) : std::numeric_limits<int32_t>::min();
    return D(v);
  }
}

// NaN-propagating max/min (numpy maximum/minimum semantics), branch-free.
template <class T> inline T nan_max(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) return ((a > b) | (a != a)) ? a : b;  // no short-circuit branch
  else return a > b ? a : b;
}
template <class T> inline T nan_min(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) return ((a < b) | (a != a)) ? a : b;
  else return a < b ? a : b;
}

inline float bits_to_float(int32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// exp(x) with ~2 ulp error, written without calls or branches so loops over
// it vectorize. x = n*ln2 + r with |r| <= ln2/2; exp(r) by a degree-6
// polynomial fitted for relative error (6.7e-8 in fp32 arithmetic); 2^n is
// built in the exponent bits as 2^(n-1) * 2 so n = 128 still fits.
inline float exp_fast(float x) {
  float xc = x < -87.0f ? -87.0f : (x > 88.7f ? 88.7f : x);
  float n = std::floor(xc * 1.44269504088896341f + 0.5f);
  float r = xc - n * 0.693145751953125f;  // ln2 split in two for exact n*ln2_hi
  r = r - n * 1.4286068203094172e-06f;
  float p = 0.001381461275741458f;
  p = p * r + 0.008368710055947304f;
  p = p * r + 0.04166838899254799f;
  p = p * r + 0.1666652113199234f;
  p = p * r + 0.4999999403953552f;
  p = p * r * r + r + 1.0f;
  float scale = bits_to_float((int32_t(n) + 126) << 23);
  float y = p * scale * 2.0f;
  y = x > 88.72283f ? std::numeric_limits<float>::infinity() : y;
  y = x < -87.0f ? 0.0f : y;
  return x != x ? x : y;
}

// exp(x)-1: Taylor series near 0 where exp(x)-1 would cancel.
inline float expm1_fast(float x) {
  float p = 1.0f / 720.0f;
  p = p * x + 1.0f / 120.0f;
  p = p * x + 1.0f / 24.0f;
  p = p * x + 1.0f / 6.0f;
  p = p * x + 0.5f;
  p = p * x * x + x;
  return std::fabs(x) < 0.3f ? p : exp_fast(x) - 1.0f;
}

inline float sigmoid_fast(float x) { return 1.0f / (1.0f + exp_fast(-x)); }

// tanh: odd Taylor polynomial near 0 (where 1-e^-2|x| would cancel), else
// (1-e)/(1+e) with e = e^-2|x|.
inline float tanh_fast(float x) {
  float a = std::fabs(x);
  float e = exp_fast(-2.0f * a);
  float t = (1.0f - e) / (1.0f + e);
  t = x < 0.0f ? -t : t;
  float x2 = x * x;
  float p = -1382.0f / 155925.0f;
  p = p * x2 + 62.0f / 2835.0f;
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  p = p * x2 * x + x;
  return a < 0.3f ? p : t;
}

// Array math for the hot transcendental ops, 8 lanes at a time with AVX2
// (explicit intrinsics: the clamps and selects need exact min/max operand
// order for NaN to propagate, which the auto-vectorizer does not produce).
// Tails run through the same vector code on a padded copy, so every element
// gets identical arithmetic. Without AVX2 they fall back to libm.
#if defined(__AVX2__) && defined(__FMA__)
#define KILN_EW_AVX2 1
namespace v8 {
inline __m256 set(float v) { return _mm256_set1_ps(v); }
// NaN in `v` survives: on unordered inputs max/min return their second operand.
inline __m256 clamp(__m256 v, float lo, float hi) { return _mm256_min_ps(set(hi), _mm256_max_ps(set(lo), v)); }

inline __m256 exp(__m256 x) {
  // Adding 1.5*2^23 rounds x*log2(e) to an integer n held in the low mantissa
  // bits (offset by 126 for the exponent field), saving a round and a convert.
  const __m256 magic = set(12582912.0f + 126.0f);
  __m256 xc = clamp(x, -87.0f, 88.7f);
  __m256 t = _mm256_fmadd_ps(xc, set(1.44269504088896341f), magic);
  __m256 n = _mm256_sub_ps(t, magic);
  __m256 r = _mm256_fnmadd_ps(n, set(0.693145751953125f), xc);
  r = _mm256_fnmadd_ps(n, set(1.4286068203094172e-06f), r);
  __m256 p = _mm256_fmadd_ps(set(0.001381461275741458f), r, set(0.008368710055947304f));
  p = _mm256_fmadd_ps(p, r, set(0.04166838899254799f));
  p = _mm256_fmadd_ps(p, r, set(0.1666652113199234f));
  p = _mm256_fmadd_ps(p, r, set(0.4999999403953552f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  p = _mm256_add_ps(p, set(1.0f));
  __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));  // 2^(n-1)
  __m256 y = _mm256_mul_ps(p, scale);
  y = _mm256_add_ps(y, y);
  return _mm256_blendv_ps(y, set(std::numeric_limits<float>::infinity()), _mm256_cmp_ps(x, set(88.72283f), _CMP_GT_OQ));
}
inline __m256 sigmoid(__m256 x) {
  __m256 e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(set(1.0f), _mm256_add_ps(set(1.0f), e));
}
inline __m256 abs(__m256 x) { return _mm256_andnot_ps(set(-0.0f), x); }
inline __m256 copysign(__m256 mag, __m256 sign) {
  return _mm256_or_ps(mag, _mm256_and_ps(set(-0.0f), sign));
}
// tanh: odd Taylor polynomial below 0.3 (no cancellation), else (1-e)/(1+e), e = exp(-2|x|).
inline __m256 tanh(__m256 x) {
  __m256 a = abs(x);
  __m256 e = exp(_mm256_mul_ps(a, set(-2.0f)));
  __m256 t = copysign(_mm256_div_ps(_mm256_sub_ps(set(1.0f), e), _mm256_add_ps(set(1.0f), e)), x);
  __m256 x2 = _mm256_mul_ps(x, x);
  __m256 p = _mm256_fmadd_ps(set(-1382.0f / 155925.0f), x2, set(62.0f / 2835.0f));
  p = _mm256_fmadd_ps(p, x2, set(-17.0f / 315.0f));
  p = _mm256_fmadd_ps(p, x2, set(2.0f / 15.0f));
  p = _mm256_fmadd_ps(p, x2, set(-1.0f / 3.0f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, x2), x, x);
  return _mm256_blendv_ps(t, p, _mm256_cmp_ps(a, set(0.3f), _CMP_LT_OQ));
}
// erf(x)/x as a polynomial in x^2 on [0, 1] (relative error 4e-8, fitted).
inline __m256 erf_small(__m256 x) {
  __m256 s = _mm256_mul_ps(x, x);
  __m256 p = _mm256_fmadd_ps(set(-0.0005631398526020348f), s, set(0.004917546175420284f));
  p = _mm256_fmadd_ps(p, s, set(-0.02671130746603012f));
  p = _mm256_fmadd_ps(p, s, set(0.11280179768800735f));
  p = _mm256_fmadd_ps(p, s, set(-0.37612324953079224f));
  p = _mm256_fmadd_ps(p, s, set(1.1283791065216064f));
  return _mm256_mul_ps(p, x);
}
// erfc(a) for a >= 1: exp(-a^2) * Q(1/(1+a/2)), Q fitted on [1, 9.4] for
// relative error (3e-7 in fp32); a^2 carried as hi+lo so exp(-a^2) stays
// accurate. Past 9.4 erfc is below the smallest normal float.
inline __m256 erfc_large(__m256 a) {
  a = clamp(a, 0.0f, 9.4f);
  __m256 t = _mm256_div_ps(set(1.0f), _mm256_fmadd_ps(a, set(0.5f), set(1.0f)));
  __m256 q = _mm256_fmadd_ps(set(0.07716777920722961f), t, set(-0.3370494544506073f));
  q = _mm256_fmadd_ps(q, t, set(0.38315293192863464f));
  q = _mm256_fmadd_ps(q, t, set(0.028730010613799095f));
  q = _mm256_fmadd_ps(q, t, set(0.29031530022621155f));
  q = _mm256_fmadd_ps(q, t, set(0.2744600176811218f));
  q = _mm256_fmadd_ps(q, t, set(0.2828313112258911f));
  q = _mm256_fmadd_ps(q, t, set(-3.0008995963726193e-05f));
  __m256 hi = _mm256_mul_ps(a, a);
  __m256 lo = _mm256_fmsub_ps(a, a, hi);
  __m256 e = _mm256_mul_ps(exp(_mm256_sub_ps(_mm256_setzero_ps(), hi)), _mm256_sub_ps(set(1.0f), lo));
  return _mm256_mul_ps(q, e);
}
// 1 + erf(z), accurate in relative terms also where erf(z) is near -1.
inline __m256 one_plus_erf(__m256 z) {
  __m256 a = abs(z);
  __m256 ec = erfc_large(a);
  __m256 big = _mm256_blendv_ps(_mm256_sub_ps(set(2.0f), ec), ec, _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_LT_OQ));
  __m256 small = _mm256_add_ps(set(1.0f), erf_small(z));
  __m256 r = _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, set(1.0f), _CMP_LT_OQ));
  return _mm256_blendv_ps(r, z, _mm256_cmp_ps(z, z, _CMP_UNORD_Q));  // NaN in, NaN out
}
inline __m256 erf(__m256 x) {
  __m256 a = abs(x);
  __m256 big = copysign(_mm256_sub_ps(set(1.0f), erfc_large(a)), x);
  __m256 r = _mm256_blendv_ps(big, erf_small(x), _mm256_cmp_ps(a, set(1.0f), _CMP_LT_OQ));
  return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
}  // namespace v8

// y[i] = f(x[i]) for f over __m256.
template <class F> void map8(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    float buf[8] = {};
    std::memcpy(buf, x + i, size_t(n - i) * 4);
    _mm256_storeu_ps(buf, f(_mm256_loadu_ps(buf)));
    std::memcpy(y + i, buf, size_t(n - i) * 4);
  }
}
#endif

// The same functions 16 lanes wide for CPUs with AVX-512F, chosen at run
// time (kiln's baseline is AVX2): about 3x faster where the hardware has it.
// 2^n is applied with vscalefps, which also yields inf/0 on over/underflow.
#ifdef KILN_EW_AVX2
#pragma GCC push_options
#pragma GCC target("avx512f")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // these helpers never cross an ABI boundary
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12 false positives inside avx512fintrin.h
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace v16 {
using V = __m512;
inline V set(float v) { return _mm512_set1_ps(v); }
inline V clamp(V v, float lo, float hi) { return _mm512_min_ps(set(hi), _mm512_max_ps(set(lo), v)); }
inline V neg(V v) { return _mm512_sub_ps(_mm512_setzero_ps(), v); }
inline V copysign(V mag, V sign) {
  __m512i m = _mm512_set1_epi32(int32_t(0x80000000u));
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(mag), _mm512_and_si512(m, _mm512_castps_si512(sign))));
}
inline V exp(V x) {
  V xc = clamp(x, -104.0f, 88.8f);
  V n = _mm512_roundscale_ps(_mm512_mul_ps(xc, set(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  V r = _mm512_fnmadd_ps(n, set(0.693145751953125f), xc);
  r = _mm512_fnmadd_ps(n, set(1.4286068203094172e-06f), r);
  V p = _mm512_fmadd_ps(set(0.001381461275741458f), r, set(0.008368710055947304f));
  p = _mm512_fmadd_ps(p, r, set(0.04166838899254799f));
  p = _mm512_fmadd_ps(p, r, set(0.1666652113199234f));
  p = _mm512_fmadd_ps(p, r, set(0.4999999403953552f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  return _mm512_scalef_ps(_mm512_add_ps(p, set(1.0f)), n);
}
inline V sigmoid(V x) { return _mm512_div_ps(set(1.0f), _mm512_add_ps(set(1.0f), exp(neg(x)))); }
inline V tanh(V x) {
  V a = _mm512_abs_ps(x);
  V e = exp(_mm512_mul_ps(a, set(-2.0f)));
  V t = copysign(_mm512_div_ps(_mm512_sub_ps(set(1.0f), e), _mm512_add_ps(set(1.0f), e)), x);
  V x2 = _mm512_mul_ps(x, x);
  V p = _mm512_fmadd_ps(set(-1382.0f / 155925.0f), x2, set(62.0f / 2835.0f));
  p = _mm512_fmadd_ps(p, x2, set(-17.0f / 315.0f));
  p = _mm512_fmadd_ps(p, x2, set(2.0f / 15.0f));
  p = _mm512_fmadd_ps(p, x2, set(-1.0f / 3.0f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, x2), x, x);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, set(0.3f), _CMP_LT_OQ), t, p);
}
inline V erf_small(V x) {
  V s = _mm512_mul_ps(x, x);
  V p = _mm512_fmadd_ps(set(-0.0005631398526020348f), s, set(0.004917546175420284f));
  p = _mm512_fmadd_ps(p, s, set(-0.02671130746603012f));
  p = _mm512_fmadd_ps(p, s, set(0.11280179768800735f));
  p = _mm512_fmadd_ps(p, s, set(-0.37612324953079224f));
  p = _mm512_fmadd_ps(p, s, set(1.1283791065216064f));
  return _mm512_mul_ps(p, x);
}
inline V erfc_large(V a) {
  a = clamp(a, 0.0f, 9.4f);
  V t = _mm512_div_ps(set(1.0f), _mm512_fmadd_ps(a, set(0.5f), set(1.0f)));
  V q = _mm512_fmadd_ps(set(0.07716777920722961f), t, set(-0.3370494544506073f));
  q = _mm512_fmadd_ps(q, t, set(0.38315293192863464f));
  q = _mm512_fmadd_ps(q, t, set(0.028730010613799095f));
  q = _mm512_fmadd_ps(q, t, set(0.29031530022621155f));
  q = _mm512_fmadd_ps(q, t, set(0.2744600176811218f));
  q = _mm512_fmadd_ps(q, t, set(0.2828313112258911f));
  q = _mm512_fmadd_ps(q, t, set(-3.0008995963726193e-05f));
  V hi = _mm512_mul_ps(a, a);
  V lo = _mm512_fmsub_ps(a, a, hi);
  return _mm512_mul_ps(q, _mm512_mul_ps(exp(neg(hi)), _mm512_sub_ps(set(1.0f), lo)));
}
inline V one_plus_erf(V z) {
  V a = _mm512_abs_ps(z);
  V ec = erfc_large(a);
  V big = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_sub_ps(set(2.0f), ec), ec);
  V r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, set(1.0f), _CMP_LT_OQ), big, _mm512_add_ps(set(1.0f), erf_small(z)));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, z, _CMP_UNORD_Q), r, z);
}
inline V erf(V x) {
  V a = _mm512_abs_ps(x);
  V big = copysign(_mm512_sub_ps(set(1.0f), erfc_large(a)), x);
  V r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, set(1.0f), _CMP_LT_OQ), big, erf_small(x));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), r, x);
}
template <class F> void map16(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i)));
  if (i < n) {
    __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}
inline void exp_n(const float* x, float* y, int64_t n, float shift) {
  const V s = set(shift);
  map16(x, y, n, [s](V v) { return exp(_mm512_sub_ps(v, s)); });
}
inline void sigmoid_n(const float* x, float* y, int64_t n) { map16(x, y, n, [](V v) { return sigmoid(v); }); }
inline void tanh_n(const float* x, float* y, int64_t n) { map16(x, y, n, [](V v) { return tanh(v); }); }
inline void erf_n(const float* x, float* y, int64_t n) { map16(x, y, n, [](V v) { return erf(v); }); }
inline void gelu_erf_n(const float* x, float* y, int64_t n) {
  map16(x, y, n, [](V v) {
    return _mm512_mul_ps(_mm512_mul_ps(v, set(0.5f)), one_plus_erf(_mm512_mul_ps(v, set(0.70710678118654752f))));
  });
}
inline void gelu_tanh_n(const float* x, float* y, int64_t n) {
  map16(x, y, n, [](V v) {
    V v3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
    return _mm512_mul_ps(v, sigmoid(_mm512_mul_ps(_mm512_fmadd_ps(v3, set(0.044715f), v), set(2.0f * 0.79788456080286536f))));
  });
}
}  // namespace v16
#pragma GCC diagnostic pop
#pragma GCC pop_options

// -1: use AVX-512 when the CPU has it; 0/1 force a path (tests cover both).
inline std::atomic<int>& wide_override() {
  static std::atomic<int> v{-1};
  return v;
}
inline bool has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  int o = wide_override().load(std::memory_order_relaxed);
  return yes && o != 0;
}
#define KILN_EW_WIDE(call) \
  if (has_avx512()) return v16::call;
#else
#define KILN_EW_WIDE(call)
#endif

// y = exp(x - shift) (softmax rows; shift = 0 for Exp).
inline void exp_n(const float* x, float* y, int64_t n, float shift = 0.0f) {
  KILN_EW_WIDE(exp_n(x, y, n, shift))
#ifdef KILN_EW_AVX2
  const __m256 s = _mm256_set1_ps(shift);
  map8(x, y, n, [s](__m256 v) { return v8::exp(_mm256_sub_ps(v, s)); });
#else
  for (int64_t i = 0; i < n; ++i) y[i] = exp_fast(x[i] - shift);
#endif
}
inline void sigmoid_n(const float* x, float* y, int64_t n) {
  KILN_EW_WIDE(sigmoid_n(x, y, n))
#ifdef KILN_EW_AVX2
  map8(x, y, n, [](__m256 v) { return v8::sigmoid(v); });
#else
  for (int64_t i = 0; i < n; ++i) y[i] = sigmoid_fast(x[i]);
#endif
}
inline void tanh_n(const float* x, float* y, int64_t n) {
  KILN_EW_WIDE(tanh_n(x, y, n))
#ifdef KILN_EW_AVX2
  map8(x, y, n, [](__m256 v) { return v8::tanh(v); });
#else
  for (int64_t i = 0; i < n; ++i) y[i] = tanh_fast(x[i]);
#endif
}
inline void erf_n(const float* x, float* y, int64_t n) {
  KILN_EW_WIDE(erf_n(x, y, n))
#ifdef KILN_EW_AVX2
  map8(x, y, n, [](__m256 v) { return v8::erf(v); });
#else
  for (int64_t i = 0; i < n; ++i) y[i] = std::erf(x[i]);
#endif
}
// Gelu, exact form: 0.5 x (1 + erf(x / sqrt 2)).
inline void gelu_erf_n(const float* x, float* y, int64_t n) {
  KILN_EW_WIDE(gelu_erf_n(x, y, n))
#ifdef KILN_EW_AVX2
  map8(x, y, n, [](__m256 v) {
    __m256 h = _mm256_mul_ps(v, _mm256_set1_ps(0.5f));
    return _mm256_mul_ps(h, v8::one_plus_erf(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f))));
  });
#else
  for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * std::erfc(x[i] * -0.70710678118654752f);  // no 1 + erf cancellation
#endif
}
// Gelu, tanh form, as x * sigmoid(2u): equal to 0.5x(1 + tanh u) without the
// cancellation of 1 + tanh(u) for negative u.
inline void gelu_tanh_n(const float* x, float* y, int64_t n) {
  KILN_EW_WIDE(gelu_tanh_n(x, y, n))
#ifdef KILN_EW_AVX2
  map8(x, y, n, [](__m256 v) {
    __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
    __m256 u2 = _mm256_mul_ps(_mm256_fmadd_ps(v3, _mm256_set1_ps(0.044715f), v), _mm256_set1_ps(2.0f * 0.79788456080286536f));
    return _mm256_mul_ps(v, v8::sigmoid(u2));
  });
#else
  for (int64_t i = 0; i < n; ++i) {
    float u = 0.79788456080286536f * (x[i] + 0.044715f * x[i] * x[i] * x[i]);
    y[i] = x[i] * sigmoid_fast(2.0f * u);
  }
#endif
}

}  // namespace kiln::cpu::ew
