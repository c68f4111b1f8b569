// SGEMM with a pre-packed left operand and a fused epilogue, for
// convolutions: C[M x N] = act(A[M x K] * B[K x N] + bias[M] + Z[M x N]),
// where Z (the residual) is optional. On CPUs with AVX-512 it runs kiln's own
// blocked kernel (weights packed once into 12-row panels, B packed per call
// into 32-column panels, parallel over column blocks on kiln's pool) with the
// epilogue applied to the accumulators before the store. Elsewhere it calls
// OpenBLAS (blas_sgemm below) and applies the epilogue to each block of C
// right after that block is computed, while it is still in cache.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "backends/cpu/conv_common.h"

namespace kiln::cpu {

class PackedGemm {
 public:
  // A is M x K, row-major with leading dimension lda.
  void pack(const float* a, int64_t m, int64_t k, int64_t lda);
  // C (ldc) = act(A * B + bias + Z); B is K x N with leading dimension ldb.
  // bias may be null; so may z, which otherwise is laid out like C (ldc).
  void run(const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc, const float* bias, const Activation& act,
           const float* z = nullptr) const;
  int64_t m() const { return m_; }
  int64_t k() const { return k_; }
  bool native() const { return native_; }  // own AVX-512 kernel (else OpenBLAS)

 private:
  void run_native(const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc, const float* bias,
                  const Activation& act, const float* z) const;

  int64_t m_ = 0, k_ = 0;
  bool native_ = false;
  std::vector<int64_t> kb_;  // K-block boundaries (native layout)
  std::vector<float> a_;     // packed panels (native) or a dense copy (OpenBLAS)
};

// Called on each finished block of C (rows [i0, i1), columns [j0, j1)) by
// the thread that computed it, right after the block is written.
using BlockEpilogue = std::function<void(int64_t i0, int64_t i1, int64_t j0, int64_t j1)>;

// Row-major C[M x N] = alpha * op(A) * op(B) + beta * C through OpenBLAS,
// one BLAS thread per call, split over columns (or rows, when there are more)
// across kiln's pool; `epi` (if set) then runs on every block while it is
// still in cache. OpenBLAS is switched to a single thread on first use: its
// own workers spin-yield between calls and would steal the cores kiln's pool
// runs on.
void blas_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const BlockEpilogue& epi = nullptr);

// Whether the AVX-512 kernels may be used (CPU support and not disabled by
// KILN_CPU_NO_AVX512=1 or set_avx512_enabled(false), which tests use to
// cover the portable path).
bool avx512_enabled();
void set_avx512_enabled(bool on);

}  // namespace kiln::cpu
