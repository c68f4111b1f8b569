// Resize tap tables, built on the host exactly as the CPU reference builds
// them (src/backends/cpu/resize.cpp) so both backends sample the same taps.
#include "backends/cuda/resize_tables.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace kiln::cuda {

namespace {

double source_coord(const ir::ResizeSpec& s, size_t a, int64_t x) {
  const double in = double(s.in[a]), sc = s.scale[a], xd = double(x);
  const int64_t out = s.out[a];
  const std::string& m = s.coord_mode;
  if (m == "asymmetric") return xd / sc;
  if (m == "pytorch_half_pixel") return out > 1 ? (xd + 0.5) / sc - 0.5 : 0.0;
  if (m == "align_corners") return out == 1 ? 0.0 : xd * (in - 1) / (sc * in - 1);
  if (m == "half_pixel_symmetric") {
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

AxisTable build_table(const ir::ResizeSpec& s, size_t a) {
  AxisTable t;
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
    // Left neighbours are floor-aligned with the fraction in (0, 1], as the reference picks them.
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

// The extrapolation value as the output dtype stores it (integers round half
// to even and saturate, as the CPU kernel stores them).
uint64_t fill_bits(float v, DataType t) {
  uint64_t bits = 0;
  auto to_int = [v](double lo, double hi) {
    const double r = std::nearbyint(double(v));
    return std::isnan(r) ? 0.0 : std::clamp(r, lo, hi);
  };
  switch (t) {
    case DataType::kFloat32: std::memcpy(&bits, &v, 4); break;
    case DataType::kFloat16: bits = float_to_half(v); break;
    case DataType::kInt8: { int8_t q = int8_t(to_int(-128, 127)); std::memcpy(&bits, &q, 1); break; }
    case DataType::kUInt8: bits = uint8_t(to_int(0, 255)); break;
    case DataType::kInt32: { int32_t q = int32_t(to_int(-2147483648.0, 2147483647.0)); std::memcpy(&bits, &q, 4); break; }
    case DataType::kInt64: {
      const double r = std::nearbyint(double(v));
      int64_t q = std::isnan(r) ? 0 : r >= 9.2233720368547758e18 ? INT64_MAX : r < -9.2233720368547758e18 ? INT64_MIN : int64_t(r);
      std::memcpy(&bits, &q, 8);
      break;
    }
    case DataType::kBool: bits = v != 0; break;
  }
  return bits;
}

}  // namespace kiln::cuda
