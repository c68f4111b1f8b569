#include "backends/cpu/conv_gemm.h"

#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>

#include "backends/cpu/conv_simd.h"
#include "backends/cpu/parallel.h"

namespace kiln::cpu {

namespace {

constexpr int kMR = 12;        // rows per A panel (12 x 2 zmm accumulators)
constexpr int kNR = 32;        // columns per B panel
constexpr int64_t kKC = 384;   // max K per block: A panel 18 KiB stays in L1
constexpr int64_t kNC = 256;   // columns per task: packed B block <= 384 KiB stays in L2

std::atomic<int> g_avx512{-1};

int detect_avx512() {
  const char* off = std::getenv("KILN_CPU_NO_AVX512");
  if (off && *off && *off != '0') return 0;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
             ? 1
             : 0;
}

struct Tile {
  float* c;
  int64_t ldc;
  __mmask16 m0, m1;
  bool accumulate, last;
  const float* bias;
  const float* z;  // residual block laid out like c (ldc), or null
  int kind;
  float fa, fb;
};

// MR x 32 block of C from a packed A panel (kc x kMR) and a packed B panel (kc x 32).
template <int MR> KILN_AVX512 void ukernel(int64_t kc, const float* ap, const float* bp, const Tile& t) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) c0[r] = c1[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m512 b0 = _mm512_loadu_ps(bp + k * kNR), b1 = _mm512_loadu_ps(bp + k * kNR + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      __m512 a = _mm512_set1_ps(ap[k * kMR + r]);
      c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
    }
  }
  const __m512 va = _mm512_set1_ps(t.fa), vb = _mm512_set1_ps(t.fb);
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    float* cr = t.c + r * t.ldc;
    if (t.accumulate) {
      c0[r] = _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(t.m0, cr));
      c1[r] = _mm512_add_ps(c1[r], _mm512_maskz_loadu_ps(t.m1, cr + 16));
    }
    if (t.last) {
      if (t.bias) {
        __m512 bb = _mm512_set1_ps(t.bias[r]);
        c0[r] = _mm512_add_ps(c0[r], bb);
        c1[r] = _mm512_add_ps(c1[r], bb);
      }
      if (t.z) {
        const float* zr = t.z + r * t.ldc;
        c0[r] = _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(t.m0, zr));
        c1[r] = _mm512_add_ps(c1[r], _mm512_maskz_loadu_ps(t.m1, zr + 16));
      }
      c0[r] = act512(c0[r], t.kind, va, vb);
      c1[r] = act512(c1[r], t.kind, va, vb);
    }
    _mm512_mask_storeu_ps(cr, t.m0, c0[r]);
    _mm512_mask_storeu_ps(cr + 16, t.m1, c1[r]);
  }
}

using UKernel = void (*)(int64_t, const float*, const float*, const Tile&);
const UKernel kKernels[kMR + 1] = {nullptr,     ukernel<1>, ukernel<2>, ukernel<3>,  ukernel<4>,  ukernel<5>, ukernel<6>,
                                   ukernel<7>, ukernel<8>, ukernel<9>, ukernel<10>, ukernel<11>, ukernel<12>};

__mmask16 mask_of(int64_t valid) { return lane_range(0, valid); }

// kc rows x 32 columns of B (columns past `valid` read as zero) into a packed panel.
KILN_AVX512 void pack_b(const float* b, int64_t ldb, int64_t kc, int64_t valid, float* dst) {
  __mmask16 m0 = mask_of(valid), m1 = mask_of(valid - 16);
  for (int64_t k = 0; k < kc; ++k, b += ldb, dst += kNR) {
    _mm512_storeu_ps(dst, _mm512_maskz_loadu_ps(m0, b));
    _mm512_storeu_ps(dst + 16, _mm512_maskz_loadu_ps(m1, b + 16));
  }
}

}  // namespace

void blas_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const BlockEpilogue& epi) {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    if (epi) epi(0, m, 0, n);
    return;
  }
  auto call = [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const float* ap = ta ? a + i0 : a + i0 * lda;
    const float* bp = tb ? b + j0 * ldb : b + j0;
    float* cp = c + i0 * ldc + j0;
    int mm = int(i1 - i0), nn = int(j1 - j0);
    if (mm == 1) {  // one row: c = op(B)^T a, where a steps by lda through a transposed A
      const int inc = ta ? int(lda) : 1;
      if (tb) cblas_sgemv(CblasRowMajor, CblasNoTrans, nn, int(k), alpha, bp, int(ldb), ap, inc, beta, cp, 1);
      else cblas_sgemv(CblasRowMajor, CblasTrans, int(k), nn, alpha, bp, int(ldb), ap, inc, beta, cp, 1);
    } else {
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, mm, nn, int(k),
                  alpha, ap, int(lda), bp, int(ldb), beta, cp, int(ldc));
    }
    if (epi) epi(i0, i1, j0, j1);
  };
  // Blocks of >= ~4 MFLOP along the longer side, a few per thread for balance.
  const bool by_cols = n >= m;
  const int64_t len = by_cols ? n : m, other = by_cols ? m : n;
  const int64_t min_len = std::max<int64_t>(16, (int64_t(2) << 20) / std::max<int64_t>(other * k, 1));
  const int64_t blocks = std::max<int64_t>(1, std::min(len / min_len, 4 * int64_t(num_threads())));
  const int64_t step = (len + blocks - 1) / blocks;
  parallel_blocks(len, step, [&](int64_t s0, int64_t s1) {
    if (by_cols) call(0, m, s0, s1);
    else call(s0, s1, 0, n);
  });
}

bool avx512_enabled() {
  int v = g_avx512.load();
  if (v < 0) {
    v = detect_avx512();
    g_avx512.store(v);
  }
  return v == 1;
}

void set_avx512_enabled(bool on) { g_avx512.store(on ? detect_avx512() : 0); }

void PackedGemm::pack(const float* a, int64_t m, int64_t k, int64_t lda) {
  m_ = m;
  k_ = k;
  native_ = avx512_enabled();
  if (!native_) {
    a_.resize(size_t(m * k));
    for (int64_t i = 0; i < m; ++i) std::copy(a + i * lda, a + i * lda + k, a_.begin() + i * k);
    return;
  }
  // Layout: K blocks; within a block of kc, panels of kMR rows as kc x kMR (rows past M are zero).
  int64_t nkb = std::max<int64_t>(1, (k + kKC - 1) / kKC), mpad = (m + kMR - 1) / kMR * kMR;
  kb_.clear();
  for (int64_t i = 0; i <= nkb; ++i) kb_.push_back(i * k / nkb);
  a_.assign(size_t(k * mpad), 0.f);
  for (int64_t bi = 0; bi < nkb; ++bi) {
    int64_t k0 = kb_[size_t(bi)], kc = kb_[size_t(bi) + 1] - k0;
    float* blk = a_.data() + k0 * mpad;
    for (int64_t row = 0; row < m; ++row) {
      float* panel = blk + (row / kMR) * kc * kMR + row % kMR;
      for (int64_t q = 0; q < kc; ++q) panel[q * kMR] = a[row * lda + k0 + q];
    }
  }
}

void PackedGemm::run(const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc, const float* bias,
                     const Activation& act, const float* z) const {
  const int64_t m = m_, k = k_;
  if (m == 0 || n == 0) return;
  auto block_epilogue = [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    for (int64_t i = i0; i < i1; ++i)
      epilogue(c + i * ldc + j0, j1 - j0, bias ? bias[i] : 0.f, z ? z + i * ldc + j0 : nullptr, act);
  };
  if (k == 0) {
    parallel_for(m, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.f);
      block_epilogue(s, e, 0, n);
    }, std::max<int64_t>(1, 16384 / n));
    return;
  }
  if (!native_) {
    const bool any = bias || z || act.kind != Activation::kNone;
    blas_sgemm(false, false, m, n, k, 1.f, a_.data(), k, b, ldb, 0.f, c, ldc,
               any ? BlockEpilogue(block_epilogue) : BlockEpilogue());
    return;
  }
  run_native(b, ldb, n, c, ldc, bias, act, z);
}

void PackedGemm::run_native(const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc, const float* bias,
                            const Activation& act, const float* z) const {
  const int64_t m = m_;
  const int64_t mpan = (m + kMR - 1) / kMR, nblk = (n + kNC - 1) / kNC, nkb = int64_t(kb_.size()) - 1;
  // Small products run on the calling thread: waking the pool costs more
  // than it saves below a few MFLOP. Otherwise split rows too when there are
  // too few column blocks to feed every thread.
  const bool small = m * n * k_ < (int64_t(2) << 20);
  const int64_t threads = small ? 1 : num_threads();
  const int64_t msplit = std::min(mpan, std::max<int64_t>(1, (2 * threads + nblk - 1) / nblk));
  const int64_t tasks = nblk * msplit;
  parallel_blocks(tasks, small ? tasks : 1, [&](int64_t ts, int64_t te) {
    float* bp = scratch(size_t(kKC * kNC), 3);
    for (int64_t task = ts; task < te; ++task) {
      int64_t nb = task / msplit, ms = task % msplit;
      int64_t n0 = nb * kNC, nc = std::min(kNC, n - n0), npan = (nc + kNR - 1) / kNR;
      int64_t p0 = ms * mpan / msplit, p1 = (ms + 1) * mpan / msplit;
      for (int64_t bi = 0; bi < nkb; ++bi) {
        int64_t k0 = kb_[size_t(bi)], kc = kb_[size_t(bi) + 1] - k0;
        for (int64_t j = 0; j < npan; ++j)
          pack_b(b + k0 * ldb + n0 + j * kNR, ldb, kc, std::min<int64_t>(kNR, nc - j * kNR), bp + j * kc * kNR);
        const float* blk = a_.data() + k0 * ((m + kMR - 1) / kMR * kMR);
        for (int64_t p = p0; p < p1; ++p) {
          int64_t rows = std::min<int64_t>(kMR, m - p * kMR);
          Tile t;
          t.ldc = ldc;
          t.accumulate = bi > 0;
          t.last = bi == nkb - 1;
          t.bias = bias ? bias + p * kMR : nullptr;
          t.kind = act.kind;
          t.fa = act.a;
          t.fb = act.b;
          for (int64_t j = 0; j < npan; ++j) {
            int64_t cols = std::min<int64_t>(kNR, nc - j * kNR);
            const int64_t off = p * kMR * ldc + n0 + j * kNR;
            t.c = c + off;
            t.z = z ? z + off : nullptr;
            t.m0 = mask_of(cols);
            t.m1 = mask_of(cols - 16);
            kKernels[rows](kc, blk + p * kc * kMR, bp + j * kc * kNR, t);
          }
        }
      }
    }
  });
}

}  // namespace kiln::cpu
