// Warp-wide loads of tensor-core operand fragments from shared memory, shared
// by the own mma.sync kernels (conv_small_channel.cu, qconv_mma_kernel.cuh).
#pragma once

#include <cstdint>

namespace kiln::cuda {

// ldmatrix .x4: four 8x8 matrices of 16-bit elements (or 8x16 bytes); lanes
// 8j..8j+7 give the row addresses of matrix j (16-byte aligned), and each
// lane receives in r[j] its fragment of matrix j: row lane / 4, elements
// (lane % 4) * 2 and + 1, the A/B fragment layout of mma.sync.
__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, const void* p) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

}  // namespace kiln::cuda
