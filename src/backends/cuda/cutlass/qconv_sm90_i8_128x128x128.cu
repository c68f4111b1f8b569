// The cutlass_sm90_i8:i8_128x128x128 QConv kernel: int8 output and residual
// (see qconv_sm90_kernel.cuh).
#include "backends/cuda/cutlass/qconv_sm90_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const QConvTile& qtile_i8_128x128x128() {
  static const Sm90QConvTile<128, 128, 128, int8_t, int8_t> tile("i8_128x128x128", DataType::kInt8, DataType::kInt8);
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
