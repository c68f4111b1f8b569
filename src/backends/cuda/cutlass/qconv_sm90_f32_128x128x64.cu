// The cutlass_sm90_i8:f32_128x128x64 QConv kernel: fp32 output, fp32 residual or none
// (see qconv_sm90_kernel.cuh).
#include "backends/cuda/cutlass/qconv_sm90_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const QConvTile& qtile_f32_128x128x64() {
  static const Sm90QConvTile<128, 128, 64, float, float, 0, 1> tile(
      "f32_128x128x64", DataType::kFloat32, DataType::kFloat32);
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
