// im2col for the GEMM-based convolutions. (An implicit im2col that packed the
// GEMM's panels straight from the image measured no faster on Zen 5: the
// explicit buffer streams at cache bandwidth, so the simple form stays.)
#pragma once

#include <cstdint>

namespace kiln::cpu {

// Spatial geometry in a 3-D view: 1-D and 2-D convs get leading extent-1 axes.
struct ConvGeom {
  int64_t k[3] = {1, 1, 1}, s[3] = {1, 1, 1}, d[3] = {1, 1, 1}, pb[3] = {0, 0, 0};
  int64_t taps() const { return k[0] * k[1] * k[2]; }
};

// Column matrix rows for cg channels x taps, columns of output rows [r0, r1)
// (orow = od * OH + oh); parallel over rows.
void im2col(const float* x, int64_t cg, const int64_t id[3], const int64_t od[3], const ConvGeom& g, int64_t r0,
            int64_t r1, float* col);

}  // namespace kiln::cpu
