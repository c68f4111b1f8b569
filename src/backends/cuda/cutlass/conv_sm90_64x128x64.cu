// The cutlass_sm90:64x128x64 convolution kernel (see conv_sm90_kernel.cuh).
#include "backends/cuda/cutlass/conv_sm90_kernel.cuh"

namespace kiln::cuda::cutlass_sm90 {

const ConvTile& tile_64x128x64() {
  static const Sm90ConvTile<64, 128, 64> tile("64x128x64");
  return tile;
}

}  // namespace kiln::cuda::cutlass_sm90
