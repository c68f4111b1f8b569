// The cutlass_sm90_i8:f16zf16_128x128x64 QConv kernel: fp16 output, fp16 residual
// (see qconv_sm90_kernel.cuh).
#include "backends/cuda/cutlass/qconv_sm90_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const QConvTile& qtile_f16zf16_128x128x64() {
  static const Sm90QConvTile<128, 128, 64, cutlass::half_t, cutlass::half_t, 0, 1> tile(
      "f16zf16_128x128x64", DataType::kFloat16, DataType::kFloat16);
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
