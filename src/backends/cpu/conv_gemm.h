// SGEMM with a pre-packed left operand and a fused per-row bias + activation
// epilogue, for convolutions: C[M x N] = act(A[M x K] * B[K x N] + bias[M]).
// On CPUs with AVX-512 it runs kiln's own blocked kernel (weights packed once
// into 12-row panels, B packed per call into 32-column panels, parallel over
// column blocks with cpu::parallel_for). Elsewhere it calls OpenBLAS sgemm
// and applies the epilogue in a second pass.
#pragma once

#include <cstdint>
#include <vector>

#include "backends/cpu/conv_common.h"

namespace kiln::cpu {

class PackedGemm {
 public:
  // A is M x K, row-major with leading dimension lda.
  void pack(const float* a, int64_t m, int64_t k, int64_t lda);
  // C (ldc) = act(A * B + bias); B is K x N with leading dimension ldb. bias may be null.
  void run(const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc, const float* bias,
           const Activation& act) const;
  int64_t m() const { return m_; }
  int64_t k() const { return k_; }
  bool native() const { return native_; }  // own AVX-512 kernel (else OpenBLAS)

 private:
  void run_native(const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc, const float* bias,
                  const Activation& act) const;

  int64_t m_ = 0, k_ = 0;
  bool native_ = false;
  std::vector<int64_t> kb_;  // K-block boundaries (native layout)
  std::vector<float> a_;     // packed panels (native) or a dense copy (OpenBLAS)
};

// Whether the AVX-512 kernels may be used (CPU support and not disabled by
// KILN_CPU_NO_AVX512=1 or set_avx512_enabled(false), which tests use to
// cover the portable path).
bool avx512_enabled();
void set_avx512_enabled(bool on);

}  // namespace kiln::cpu
