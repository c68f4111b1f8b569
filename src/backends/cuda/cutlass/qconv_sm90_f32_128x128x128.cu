// The cutlass_sm90_i8:f32_128x128x128 QConv kernel: FP32 output and residual
// (see qconv_sm90_kernel.cuh).
#include "backends/cuda/cutlass/qconv_sm90_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const QConvTile& qtile_f32_128x128x128() {
  static const Sm90QConvTile<128, 128, 128, float, float> tile("f32_128x128x128", DataType::kFloat32,
                                                               DataType::kFloat32);
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
