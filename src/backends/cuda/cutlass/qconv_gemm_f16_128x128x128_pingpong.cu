// The cutlass_sm90_i8gemm:f16_128x128x128_pingpong QConv kernel: 1x1 convolutions as a persistent ping-pong
// GEMM, fp16 output, int8 residual or none (the last bottleneck before float pooling; see
// qconv_gemm_kernel.cuh).
#include "backends/cuda/cutlass/qconv_gemm_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const QConvTile& qgemm_f16_128x128x128_pingpong() {
  static const Sm90QGemmTile<128, 128, 128, cutlass::half_t, int8_t, false> tile(
      "f16_128x128x128_pingpong", DataType::kFloat16, DataType::kInt8);
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
