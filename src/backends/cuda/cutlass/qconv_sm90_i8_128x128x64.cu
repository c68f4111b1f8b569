// The cutlass_sm90_i8:i8_128x128x64 QConv kernel: int8 output, int8 residual or none; one CTA per SM with as
// many stages as fit
// (see qconv_sm90_kernel.cuh).
#include "backends/cuda/cutlass/qconv_sm90_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const QConvTile& qtile_i8_128x128x64() {
  static const Sm90QConvTile<128, 128, 64, int8_t, int8_t, 0, 1> tile(
      "i8_128x128x64", DataType::kInt8, DataType::kInt8);
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
