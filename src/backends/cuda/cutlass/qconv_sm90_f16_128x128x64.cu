// The cutlass_sm90_i8:f16_128x128x64 QConv kernel: fp16 output, int8 residual or none
// (see qconv_sm90_kernel.cuh).
#include "backends/cuda/cutlass/qconv_sm90_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const QConvTile& qtile_f16_128x128x64() {
  static const Sm90QConvTile<128, 128, 64, cutlass::half_t, int8_t, 0, 1> tile(
      "f16_128x128x64", DataType::kFloat16, DataType::kInt8);
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
