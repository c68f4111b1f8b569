// Resize tap tables (resize_table.h).
#include "ir/ops/resize_table.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace kiln::ir {

namespace {

double source_coord(const ResizeSpec& s, size_t a, int64_t x) {
  const double in = double(s.in[a]), sc = s.scale[a], xd = double(x);
  const int64_t out = s.out[a];
  const std::string& m = s.coord_mode;
  if (m == "asymmetric") return xd / sc;
  if (m == "pytorch_half_pixel") return out > 1 ? (xd + 0.5) / sc - 0.5 : 0.0;
  if (m == "align_corners") return out == 1 ? 0.0 : xd * (in - 1) / (sc * in - 1);
  if (m == "half_pixel_symmetric") {
    // Centres the (fractional) output canvas on the input when floor() cut it.
    const double adjust = double(out) / (sc * in);
    return in / 2 * (1 - adjust) + (xd + 0.5) / sc - 0.5;
  }
  if (m == "tf_crop_and_resize") {
    const double rs = s.roi_start[a], re = s.roi_end[a];
    if (out == 1) return (rs + re) / 2 * (in - 1);
    return rs * (in - 1) + xd * (re - rs) * (in - 1) / double(out - 1);
  }
  return (xd + 0.5) / sc - 0.5;  // half_pixel
}

int64_t nearest_index(double x, const std::string& mode) {
  const double f = std::floor(x), frac = x - f;
  if (frac == 0) return int64_t(f);
  if (mode == "floor") return int64_t(f);
  if (mode == "ceil") return int64_t(f) + 1;
  if (mode == "round_prefer_ceil") return frac < 0.5 ? int64_t(f) : int64_t(f) + 1;
  return frac <= 0.5 ? int64_t(f) : int64_t(f) + 1;  // round_prefer_floor
}

double cubic_weight(double d, double A) {
  d = std::fabs(d);
  if (d <= 1) return ((A + 2) * d - (A + 3)) * d * d + 1;
  if (d < 2) return ((A * d - 5 * A) * d + 8 * A) * d - 4 * A;
  return 0;
}

}  // namespace

ResizeTable resize_table(const ResizeSpec& s, size_t a) {
  ResizeTable t;
  const int64_t in = s.in[a];
  t.len = s.out[a];
  t.outside.assign(size_t(t.len), 0);
  const bool nearest = s.mode == "nearest", cubic = s.mode == "cubic";
  // Antialias widens the kernel by 1/scale when shrinking.
  const double ks = s.antialias ? std::min(s.scale[a], 1.0) : 1.0;
  const double support = cubic ? 2.0 : 1.0;
  const int64_t start = nearest ? 0 : int64_t(std::floor(-support / ks)) + 1;
  t.taps = nearest ? 1 : 2 - 2 * start;
  t.idx.resize(size_t(t.len * t.taps));
  t.w.resize(size_t(t.len * t.taps));
  std::vector<double> w(size_t(t.taps));
  for (int64_t x = 0; x < t.len; ++x) {
    const double xo = source_coord(s, a, x);
    if (s.coord_mode == "tf_crop_and_resize" && (xo < 0 || xo > double(in - 1))) {
      t.outside[size_t(x)] = 1;
      t.any_outside = true;
    }
    int64_t* ix = &t.idx[size_t(x * t.taps)];
    float* wt = &t.w[size_t(x * t.taps)];
    if (nearest) {
      ix[0] = std::clamp<int64_t>(nearest_index(xo, s.nearest_mode), 0, in - 1);
      wt[0] = 1.f;
      continue;
    }
    // Taps left of xo are floor-aligned with the fraction in (0, 1], as the ONNX reference picks neighbours.
    const int64_t f = int64_t(std::ceil(xo)) - 1;
    double sum = 0;
    for (int64_t j = 0; j < t.taps; ++j) {
      const int64_t i = f + start + j;
      const double d = (double(i) - xo) * ks;
      double v = cubic ? cubic_weight(d, s.cubic_a) : std::max(0.0, 1 - std::fabs(d));
      if (s.exclude_outside && (i < 0 || i >= in)) v = 0;
      w[size_t(j)] = v;
      sum += v;
      ix[j] = std::clamp<int64_t>(i, 0, in - 1);
    }
    const bool normalize = (s.antialias || s.exclude_outside) && sum != 0;
    for (int64_t j = 0; j < t.taps; ++j) wt[j] = float(normalize ? w[size_t(j)] / sum : w[size_t(j)]);
  }
  // Identity: every output coordinate reads exactly its own source element.
  t.identity = t.len == in && !t.any_outside;
  for (int64_t x = 0; t.identity && x < t.len; ++x) {
    float own = 0;
    for (int64_t j = 0; j < t.taps; ++j) {
      const size_t k = size_t(x * t.taps + j);
      if (t.idx[k] == x) own += t.w[k];
      else if (t.w[k] != 0.f) t.identity = false;
    }
    t.identity = t.identity && own == 1.f;
  }
  return t;
}

}  // namespace kiln::ir
