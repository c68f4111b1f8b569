// The qconv_mma kernels on Hopper's warpgroup mma (wgmma), which exists only
// in the arch-specific target sm_90a: this folder builds as its own object
// library for 90a. Both warpgroups read their operands straight from the
// swizzled shared-memory stages, so a warp issues 2 * WM multiplies per
// 64-channel chunk where mma.sync takes 16 * WM mma and 10 ldmatrix.
#include "backends/cuda/qconv_mma_kernel.cuh"

namespace kiln::cuda::qconv::mma {

KernelFn wgmma_variant(const MmaArgs& a, int wm, int tn) {
  if (tn == 128) return pick_variant<1, true, 128>(a);  // 64 sums per thread: one fragment row block
  return wm == 2 ? pick_variant<2, true>(a) : pick_variant<1, true>(a);
}

}  // namespace kiln::cuda::qconv::mma
