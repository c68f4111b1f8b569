// The cutlass_sm90_i8:f16_128x128x128 QConv kernel: FP16 output and residual
// (see qconv_sm90_kernel.cuh).
#include "backends/cuda/cutlass/qconv_sm90_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const QConvTile& qtile_f16_128x128x128() {
  static const Sm90QConvTile<128, 128, 128, cutlass::half_t, cutlass::half_t> tile(
      "f16_128x128x128", DataType::kFloat16, DataType::kFloat16);
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
