// The cutlass_sm90_i8gemm:i8_256x128x128_coop QConv kernel: 1x1 convolutions as a persistent cooperative
// GEMM (both consumer warp groups on one 256x128 tile), int8 output, int8 residual or none
// (see qconv_gemm_kernel.cuh).
#include "backends/cuda/cutlass/qconv_gemm_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const QConvTile& qgemm_i8_256x128x128_coop() {
  static const Sm90QGemmTile<256, 128, 128, int8_t, int8_t, true> tile(
      "i8_256x128x128_coop", DataType::kInt8, DataType::kInt8);
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
