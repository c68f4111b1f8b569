// Resize tap tables (resize_tables.cpp): per axis, the source indices and
// weights each output coordinate reads, and which coordinates fall outside a
// tf_crop_and_resize box. Shared by the CUDA Resize kernels (resize.cu).
#pragma once

#include <cstdint>
#include <vector>

#include "ir/ops/resize_params.h"
#include "kiln/types.h"

namespace kiln::cuda {

struct AxisTable {
  int64_t len = 0, taps = 1;
  std::vector<int64_t> idx;      // len * taps source indices, clamped
  std::vector<float> w;          // len * taps weights
  std::vector<uint8_t> outside;  // per output coordinate
  bool any_outside = false;
  bool identity = false;         // every output coordinate reads its own source element
};

AxisTable build_table(const ir::ResizeSpec& s, size_t axis);

// The extrapolation value as `t` stores it (integers round half to even and
// saturate, as the CPU kernel stores them), in the low bytes.
uint64_t fill_bits(float v, DataType t);

}  // namespace kiln::cuda
