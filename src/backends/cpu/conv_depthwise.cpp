// Depthwise conv kernels. With AVX-512 each output row is computed 16
// columns at a time straight from the input plane: masked loads return zero
// for taps in the padding, so there is no padded copy and no border code;
// stride 2 loads 32 inputs and keeps the even ones with one permute. Four
// output rows are computed together; for 3x3 / 5x5 kernels without dilation
// each input vector is loaded once and feeds every row that uses it. Bias,
// the residual and the fused activation are applied before the (masked)
// store. Without AVX-512, a portable AVX2 path copies each plane into
// zero-padded, phase-split sub-planes and runs a flat vector loop over them;
// its epilogue runs on each output row as it is copied out.
#include "backends/cpu/conv_depthwise.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "backends/cpu/conv_gemm.h"
#include "backends/cpu/conv_simd.h"
#include "backends/cpu/parallel.h"

namespace kiln::cpu {

namespace {

// y[q] = sum_t w[t] * src[off[t] + q] for q in [0, len): the depthwise inner
// loop over a flattened output grid. Four independent accumulators hide FMA
// latency; the loop is load-bound, as it should be.
void dw_flat(const float* src, const int64_t* off, const float* w, int64_t taps, float* y, int64_t len) {
  int64_t q = 0;
#if defined(__AVX2__) && defined(__FMA__)  // the build baseline; scalar otherwise
  for (; q + 32 <= len; q += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t t = 0; t < taps; ++t) {
      const float* p = src + off[t] + q;
      __m256 wv = _mm256_broadcast_ss(w + t);
      a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p), a0);
      a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 8), a1);
      a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 16), a2);
      a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 24), a3);
    }
    _mm256_storeu_ps(y + q, a0);
    _mm256_storeu_ps(y + q + 8, a1);
    _mm256_storeu_ps(y + q + 16, a2);
    _mm256_storeu_ps(y + q + 24, a3);
  }
  for (; q + 8 <= len; q += 8) {
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t t = 0; t < taps; ++t)
      a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(w + t), _mm256_loadu_ps(src + off[t] + q), a0);
    _mm256_storeu_ps(y + q, a0);
  }
#endif
  for (; q < len; ++q) {
    float a = 0.f;
    for (int64_t t = 0; t < taps; ++t) a += w[t] * src[off[t] + q];
    y[q] = a;
  }
}

// Depthwise conv on 2-D (1-D as H = 1). Each input plane is copied once into
// SH*SW zero-padded sub-planes split by row/column phase, so every tap of every
// output reads sub[off_t + oh * Wq + ow]: the output is computed on a flat
// OH x Wq grid (Wq >= OW; extra columns are discarded) with no bounds checks.
void depthwise_portable(const float* xs, const float* ws, const float* bs, const float* zs, float* ys,
                        int64_t n_batch, int64_t c_in, int64_t m_out, const DwGeom& g, const Activation& act) {
  const int64_t ih_n = g.ih, iw_n = g.iw, oh_n = g.oh, ow_n = g.ow;
  const int64_t sh = g.sh, sw = g.sw, dh = g.dh, dw = g.dw, pt = g.pt, pl = g.pl;
  const int64_t kh_n = g.kh, kw_n = g.kw, taps = kh_n * kw_n, mult = m_out / c_in;
  const int64_t hp = (oh_n - 1) * sh + (kh_n - 1) * dh + 1, wp = (ow_n - 1) * sw + (kw_n - 1) * dw + 1;
  const int64_t hq = (hp + sh - 1) / sh, wq = (wp + sw - 1) / sw, sub = hq * wq;
  const int64_t padded = sh * sw * sub + wq + 8;  // slack: junk columns may read past the last sub-plane
  std::vector<int64_t> off(static_cast<size_t>(taps));
  for (int64_t kh = 0; kh < kh_n; ++kh)
    for (int64_t kw = 0; kw < kw_n; ++kw) {
      int64_t ry = (kh * dh) % sh, rx = (kw * dw) % sw;
      off[size_t(kh * kw_n + kw)] = (ry * sw + rx) * sub + (kh * dh / sh) * wq + kw * dw / sw;
    }
  const int64_t planes_per_block = std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(oh_n * ow_n * taps, 1));
  parallel_blocks(n_batch * m_out, planes_per_block, [&](int64_t b, int64_t e) {
    float* pad = scratch(size_t(padded), 0);
    float* tmp = scratch(size_t(oh_n * wq), 1);
    std::fill(pad + sh * sw * sub, pad + padded, 0.f);
    int64_t built = -1;  // input plane currently in `pad` (channel multipliers reuse it)
    for (int64_t p = b; p < e; ++p) {
      int64_t n = p / m_out, oc = p % m_out, plane = n * c_in + oc / mult;
      if (plane != built) {
        const float* x = xs + plane * ih_n * iw_n;
        for (int64_t ry = 0; ry < sh; ++ry)
          for (int64_t rx = 0; rx < sw; ++rx) {
            float* dst = pad + (ry * sw + rx) * sub;
            for (int64_t i = 0; i < hq; ++i, dst += wq) {
              int64_t y = i * sh + ry - pt;
              if (y < 0 || y >= ih_n) {
                std::fill(dst, dst + wq, 0.f);
                continue;
              }
              const float* row = x + y * iw_n;
              // Columns j with 0 <= j*sw + rx - pl < iw_n.
              int64_t first = rx - pl;
              int64_t lo = first >= 0 ? 0 : std::min(wq, (-first + sw - 1) / sw);
              int64_t u = iw_n - 1 - first;
              int64_t hi = u < 0 ? 0 : std::min(wq, u / sw + 1);
              hi = std::max(hi, lo);
              std::fill(dst, dst + lo, 0.f);
              if (sw == 1) {
                if (hi > lo) std::memcpy(dst + lo, row + lo + first, size_t(hi - lo) * sizeof(float));
              } else {
                for (int64_t j = lo; j < hi; ++j) dst[j] = row[j * sw + first];
              }
              std::fill(dst + hi, dst + wq, 0.f);
            }
          }
        built = plane;
      }
      dw_flat(pad, off.data(), ws + oc * taps, taps, tmp, oh_n * wq);
      float* y = ys + p * oh_n * ow_n;
      const float* z = zs ? zs + p * oh_n * ow_n : nullptr;
      float bias = bs ? bs[oc] : 0.f;
      for (int64_t oh = 0; oh < oh_n; ++oh) {
        std::memcpy(y + oh * ow_n, tmp + oh * wq, size_t(ow_n) * sizeof(float));
        epilogue(y + oh * ow_n, ow_n, bias, z ? z + oh * ow_n : nullptr, act);
      }
    }
  });
}

// Per output-column chunk (16 wide) and kernel column: input offset of lane 0
// and the masks of valid input elements for the (one or two) loads.
struct DwPlan {
  int64_t chunks = 0;
  std::vector<int64_t> base;
  std::vector<__mmask16> lo, hi, out;
};

DwPlan plan_chunks(const DwGeom& g) {
  DwPlan p;
  p.chunks = (g.ow + 15) / 16;
  for (int64_t c = 0; c < p.chunks; ++c) {
    p.out.push_back(lane_range(0, g.ow - c * 16));
    for (int64_t kw = 0; kw < g.kw; ++kw) {
      int64_t b = c * 16 * g.sw + kw * g.dw - g.pl;
      p.base.push_back(b);
      if (g.sw <= 2) {
        p.lo.push_back(lane_range(-b, g.iw - b));
        p.hi.push_back(lane_range(-(b + 16), g.iw - (b + 16)));
      } else {
        __mmask16 m = 0;
        for (int64_t i = 0; i < 16; ++i)
          if (b + i * g.sw >= 0 && b + i * g.sw < g.iw) m = __mmask16(m | (1u << i));
        p.lo.push_back(m);
        p.hi.push_back(0);
      }
    }
  }
  return p;
}

// Epilogue of one output vector: + residual (bias is in the accumulator's
// start value), activation, masked store.
KILN_AVX512 inline void store_out(float* y, const float* z, int64_t at, __mmask16 m, __m512 v, int kind, __m512 va,
                                  __m512 vb) {
  if (z) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, z + at));
  _mm512_mask_storeu_ps(y + at, m, act512(v, kind, va, vb));
}

// One output plane, four output rows at a time (four independent FMA chains
// per tap). Rows outside the image read from `zeros`, so the tap loops carry
// no row checks. kStride: 1, 2, or 0 for any other stride (gathers).
template <int kStride>
KILN_AVX512 void dw_plane512(const float* x, const float* w, float bias, const float* z, float* y, const DwGeom& g,
                             const DwPlan& p, const float* zeros, int kind, float fa, float fb) {
  constexpr int kR = 4;
  const __m512 va = _mm512_set1_ps(fa), vb = _mm512_set1_ps(fb), vbias = _mm512_set1_ps(bias);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i gidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(int(g.sw)));
  const int64_t kw_n = g.kw, kh_n = g.kh;
  const float* rows[kR * 16];  // [kh][r], kernels up to 16 rows tall take this path
  for (int64_t oh0 = 0; oh0 < g.oh; oh0 += kR) {
    for (int64_t kh = 0; kh < kh_n; ++kh)
      for (int r = 0; r < kR; ++r) {
        int64_t ih = (oh0 + r) * g.sh - g.pt + kh * g.dh;
        rows[kh * kR + r] = (oh0 + r < g.oh && ih >= 0 && ih < g.ih) ? x + ih * g.iw : zeros;
      }
    for (int64_t c = 0; c < p.chunks; ++c) {
      __m512 acc[kR];
      for (int r = 0; r < kR; ++r) acc[r] = vbias;
      for (int64_t kh = 0; kh < kh_n; ++kh) {
        const float* const* rp = rows + kh * kR;
        for (int64_t kw = 0; kw < kw_n; ++kw) {
          size_t t = size_t(c * kw_n + kw);
          const int64_t b = p.base[t];
          const __mmask16 lo = p.lo[t], hi = p.hi[t];
          const __m512 wv = _mm512_set1_ps(w[kh * kw_n + kw]);
#pragma GCC unroll 4
          for (int r = 0; r < kR; ++r) {
            const float* src = rp[r] + b;
            __m512 v;
            if (kStride == 1) {
              v = _mm512_maskz_loadu_ps(lo, src);
            } else if (kStride == 2) {
              v = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(lo, src), even, _mm512_maskz_loadu_ps(hi, src + 16));
            } else {
              v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lo, gidx, src, 4);
            }
            acc[r] = _mm512_fmadd_ps(wv, v, acc[r]);
          }
        }
      }
      for (int r = 0; r < kR && oh0 + r < g.oh; ++r)
        store_out(y, z, (oh0 + r) * g.ow + c * 16, p.out[size_t(c)], acc[r], kind, va, vb);
    }
  }
}

// The common square kernels (3x3, 5x5; stride 1 or 2; no dilation), with
// the geometry known at compile time: input row j of the four-row group
// feeds output row r through kernel row kh = j - r * S, so each input vector
// is loaded once and used by every output row that needs it.
template <int K, int S>
KILN_AVX512 void dw_plane512_k(const float* x, const float* w, float bias, const float* z, float* y, const DwGeom& g,
                               const DwPlan& p, const float* zeros, int kind, float fa, float fb) {
  constexpr int kR = 4, kRows = (kR - 1) * S + K;
  const __m512 va = _mm512_set1_ps(fa), vb = _mm512_set1_ps(fb), vbias = _mm512_set1_ps(bias);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const float* rows[kRows];
  for (int64_t oh0 = 0; oh0 < g.oh; oh0 += kR) {
    const int64_t top = oh0 * S - g.pt;
    const int64_t last = std::min<int64_t>(kRows, (g.oh - 1 - oh0) * S + K);  // rows past it feed no stored output
    for (int j = 0; j < kRows; ++j) {
      int64_t ih = top + j;
      rows[j] = (j < last && ih >= 0 && ih < g.ih) ? x + ih * g.iw : zeros;
    }
    for (int64_t c = 0; c < p.chunks; ++c) {
      __m512 acc[kR];
#pragma GCC unroll 4
      for (int r = 0; r < kR; ++r) acc[r] = vbias;
#pragma GCC unroll 16
      for (int j = 0; j < kRows; ++j) {
#pragma GCC unroll 5
        for (int kw = 0; kw < K; ++kw) {
          const size_t t = size_t(c * K + kw);
          const float* src = rows[j] + p.base[t];
          __m512 v;
          if (S == 1) v = _mm512_maskz_loadu_ps(p.lo[t], src);
          else v = _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(p.lo[t], src), even, _mm512_maskz_loadu_ps(p.hi[t], src + 16));
#pragma GCC unroll 4
          for (int r = 0; r < kR; ++r) {
            const int kh = j - r * S;
            if (kh >= 0 && kh < K) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(w[kh * K + kw]), v, acc[r]);
          }
        }
      }
      for (int r = 0; r < kR && oh0 + r < g.oh; ++r)
        store_out(y, z, (oh0 + r) * g.ow + c * 16, p.out[size_t(c)], acc[r], kind, va, vb);
    }
  }
}

void depthwise_avx512(const float* xs, const float* ws, const float* bs, const float* zs, float* ys,
                      int64_t n_batch, int64_t c_in, int64_t m_out, const DwGeom& g, const Activation& act) {
  const DwPlan plan = plan_chunks(g);
  const int64_t mult = m_out / c_in, taps = g.kh * g.kw, isz = g.ih * g.iw, osz = g.oh * g.ow;
  const int kind = act.kind;
  auto fn = g.sw == 1 ? dw_plane512<1> : g.sw == 2 ? dw_plane512<2> : dw_plane512<0>;
  if (g.kh == g.kw && g.sh == g.sw && g.dh == 1 && g.dw == 1 && (g.kh == 3 || g.kh == 5) && (g.sh == 1 || g.sh == 2))
    fn = g.kh == 3 ? (g.sh == 1 ? dw_plane512_k<3, 1> : dw_plane512_k<3, 2>)
                   : (g.sh == 1 ? dw_plane512_k<5, 1> : dw_plane512_k<5, 2>);
  const std::vector<float> zeros(static_cast<size_t>(g.iw), 0.f);
  // Blocks of >= ~256K MACs: enough to amortize a claim, small enough to balance.
  const int64_t per_block = std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(osz * taps, 1));
  parallel_blocks(n_batch * m_out, per_block, [&](int64_t s, int64_t e) {
    for (int64_t pl = s; pl < e; ++pl) {
      int64_t n = pl / m_out, oc = pl % m_out;
      fn(xs + (n * c_in + oc / mult) * isz, ws + oc * taps, bs ? bs[oc] : 0.f, zs ? zs + pl * osz : nullptr,
         ys + pl * osz, g, plan, zeros.data(), kind, act.a, act.b);
    }
  });
}

}  // namespace

void depthwise_conv2d(const float* x, const float* w, const float* b, const float* z, float* y, int64_t n_batch,
                      int64_t c_in, int64_t m_out, const DwGeom& g, const Activation& act) {
  if (n_batch * m_out * g.oh * g.ow == 0) return;
  if (avx512_enabled() && g.kh <= 16) depthwise_avx512(x, w, b, z, y, n_batch, c_in, m_out, g, act);
  else depthwise_portable(x, w, b, z, y, n_batch, c_in, m_out, g, act);
}

}  // namespace kiln::cpu
