// Resize tap tables: per axis, the source indices and weights each output
// coordinate reads (ONNX's coordinate transforms, nearest rounding, linear,
// cubic and antialias weights) and which coordinates fall outside a
// tf_crop_and_resize box. Built once on the host from the resolved spec; the
// CPU kernel walks them and the CUDA kernels upload them, so both backends
// sample the same taps.
#pragma once

#include <cstdint>
#include <vector>

#include "ir/ops/resize_params.h"

namespace kiln::ir {

struct ResizeTable {
  int64_t len = 0, taps = 1;
  std::vector<int64_t> idx;      // len * taps source indices, already clamped
  std::vector<float> w;          // len * taps weights
  std::vector<uint8_t> outside;  // per output coordinate: use the extrapolation value
  bool any_outside = false;
  bool identity = false;         // every output coordinate reads exactly its own source element
};

ResizeTable resize_table(const ResizeSpec& s, size_t axis);

}  // namespace kiln::ir
