// Resize parameters resolved from a node's attributes and constant inputs
// (defined in src/ir/ops/resize.cpp), shared by shape inference and the CPU
// kernel so both agree on output sizes and scales.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::ir {

struct ResizeSpec {
  Dims in, out;
  std::vector<double> scale;                // per axis; the factor the coordinate transform divides by
  std::vector<double> roi_start, roi_end;   // per axis, tf_crop_and_resize only (default 0 / 1)
  std::string mode;                         // nearest | linear | cubic
  std::string coord_mode;                   // coordinate_transformation_mode
  std::string nearest_mode;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  bool antialias = false;
  float extrapolation = 0.f;
};

// Throws kBadInput for inconsistent inputs and kUnsupported for unknown modes
// or non-constant scales / sizes / roi.
ResizeSpec resize_spec(const Node& n);

}  // namespace kiln::ir
