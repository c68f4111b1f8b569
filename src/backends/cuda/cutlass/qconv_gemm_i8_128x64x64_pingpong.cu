// The cutlass_sm90_i8gemm:i8_128x64x64_pingpong QConv kernel: 1x1 convolutions as a persistent ping-pong
// GEMM with a 64-deep, 64-wide tile for shallow layers (C or K of 64: a 128 tile would be half empty),
// int8 output, int8 residual or none (see qconv_gemm_kernel.cuh).
#include "backends/cuda/cutlass/qconv_gemm_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const QConvTile& qgemm_i8_128x64x64_pingpong() {
  static const Sm90QGemmTile<128, 64, 64, int8_t, int8_t, false> tile(
      "i8_128x64x64_pingpong", DataType::kInt8, DataType::kInt8);
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
