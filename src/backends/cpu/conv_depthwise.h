// Depthwise 2-D convolution on NCHW (1-D convs pass H = 1): each output
// channel oc reads input channel oc / (M / C). Parallel over (n, oc) planes.
#pragma once

#include <cstdint>

#include "backends/cpu/conv_common.h"

namespace kiln::cpu {

struct DwGeom {
  int64_t ih, iw, oh, ow;  // input / output plane extents
  int64_t kh, kw, sh, sw, dh, dw, pt, pl;  // kernel, strides, dilations, begin pads
};

// w: [M, 1, kh, kw]; b: [M] or null; z: a residual laid out like y, or
// null. y = act(conv + b + z), all applied on the way out.
void depthwise_conv2d(const float* x, const float* w, const float* b, const float* z, float* y, int64_t n_batch,
                      int64_t c_in, int64_t m_out, const DwGeom& g, const Activation& act);

}  // namespace kiln::cpu
