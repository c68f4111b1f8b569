// The cutlass_sm90:128x64x64 convolution kernel (see conv_sm90_kernel.cuh).
#include "backends/cuda/cutlass/conv_sm90_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const ConvTile& tile_128x64x64() {
  static const Sm90ConvTile<128, 64, 64> tile("128x64x64");
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
