#include "backends/cpu/conv_im2col.h"

#include <algorithm>
#include <cstring>

#include "backends/cpu/conv_common.h"

namespace kiln::cpu {

// Columns [r0, r1) of output rows (orow = od * OH + oh) for all Cg * K rows.
void im2col(const float* x, int64_t cg, const int64_t id[3], const int64_t od[3], const ConvGeom& g, int64_t r0,
            int64_t r1, float* col) {
  const int64_t kt = g.taps(), ow_n = od[2], iw_n = id[2], sw = g.s[2];
  const int64_t cols = (r1 - r0) * ow_n;
  parallel_blocks(cg * kt, std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(cols, 1)), [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      int64_t c = row / kt, kk = row % kt;
      int64_t kd = kk / (g.k[1] * g.k[2]), kh = (kk / g.k[2]) % g.k[1], kw = kk % g.k[2];
      int64_t off_w = kw * g.d[2] - g.pb[2];
      // Output columns whose input column is inside the image.
      int64_t lo = off_w >= 0 ? 0 : std::min(ow_n, (-off_w + sw - 1) / sw);
      int64_t u = iw_n - 1 - off_w;
      int64_t hi = u < 0 ? 0 : std::min(ow_n, u / sw + 1);
      hi = std::max(hi, lo);
      float* dst = col + row * cols;
      for (int64_t orow = r0; orow < r1; ++orow, dst += ow_n) {
        int64_t zd = (orow / od[1]) * g.s[0] - g.pb[0] + kd * g.d[0];
        int64_t ih = (orow % od[1]) * g.s[1] - g.pb[1] + kh * g.d[1];
        if (zd < 0 || zd >= id[0] || ih < 0 || ih >= id[1]) {
          std::fill(dst, dst + ow_n, 0.f);
          continue;
        }
        const float* src = x + ((c * id[0] + zd) * id[1] + ih) * iw_n;
        std::fill(dst, dst + lo, 0.f);
        if (sw == 1) {
          if (hi > lo) std::memcpy(dst + lo, src + lo + off_w, size_t(hi - lo) * sizeof(float));
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * sw + off_w];
        }
        std::fill(dst + hi, dst + ow_n, 0.f);
      }
    }
  });
}

}  // namespace kiln::cpu
