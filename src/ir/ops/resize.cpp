// Shape inference for Resize (opset-18/19 form: X, roi, scales, sizes).
#include <algorithm>
#include <cmath>

#include "ir/op_registry.h"
#include "ir/ops/resize_params.h"
#include "ir/ops/shape_helpers.h"
#include "kiln/error.h"

namespace kiln::ir {

namespace {

void check_one_of(const Node& n, const char* what, const std::string& v, std::initializer_list<const char*> ok) {
  for (const char* o : ok)
    if (v == o) return;
  throw_unsupported(n.label() + ": " + what + " '" + v + "' is not supported");
}

}  // namespace

ResizeSpec resize_spec(const Node& n) {
  const Value& x = input_checked(n, 0);
  const int64_t r = int64_t(x.dims.size());
  ResizeSpec s;
  s.in = x.dims;
  s.mode = n.s("mode", "nearest");
  s.coord_mode = n.s("coordinate_transformation_mode", "half_pixel");
  s.nearest_mode = n.s("nearest_mode", "round_prefer_floor");
  s.cubic_a = n.f("cubic_coeff_a", -0.75f);
  s.exclude_outside = n.i("exclude_outside", 0) != 0;
  s.antialias = n.i("antialias", 0) != 0 && s.mode != "nearest";  // no effect on nearest
  s.extrapolation = n.f("extrapolation_value", 0.f);
  const std::string policy = n.s("keep_aspect_ratio_policy", "stretch");
  check_one_of(n, "mode", s.mode, {"nearest", "linear", "cubic"});
  check_one_of(n, "coordinate_transformation_mode", s.coord_mode,
               {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_crop_and_resize"});
  check_one_of(n, "nearest_mode", s.nearest_mode, {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"});
  check_one_of(n, "keep_aspect_ratio_policy", policy, {"stretch", "not_larger", "not_smaller"});

  std::vector<int64_t> axes;
  if (n.has("axes")) {
    axes = normalize_axes(n, n.ints("axes"), r);
  } else {
    for (int64_t i = 0; i < r; ++i) axes.push_back(i);
  }
  const size_t na = axes.size();

  s.roi_start.assign(size_t(r), 0.0);
  s.roi_end.assign(size_t(r), 1.0);
  if (s.coord_mode == "tf_crop_and_resize") {
    if (!has_nonempty_input(n, 1)) throw_bad_input(n.label() + ": tf_crop_and_resize needs the roi input");
    std::vector<double> roi = constant_doubles(n, 1);
    if (roi.size() != 2 * na)
      throw_bad_input(n.label() + ": roi has " + std::to_string(roi.size()) + " values, expected " +
                      std::to_string(2 * na));
    for (size_t i = 0; i < na; ++i) {
      s.roi_start[size_t(axes[i])] = roi[i];
      s.roi_end[size_t(axes[i])] = roi[na + i];
    }
  }

  const bool has_scales = has_nonempty_input(n, 2), has_sizes = has_nonempty_input(n, 3);
  if (has_scales == has_sizes)
    throw_bad_input(n.label() + ": exactly one of scales and sizes must be given");
  s.scale.assign(size_t(r), 1.0);
  s.out = s.in;
  if (has_scales) {
    std::vector<double> sc = constant_doubles(n, 2);
    if (sc.size() != na)
      throw_bad_input(n.label() + ": scales has " + std::to_string(sc.size()) + " values for " + std::to_string(na) +
                      " axes");
    for (size_t i = 0; i < na; ++i) {
      const size_t a = size_t(axes[i]);
      if (!(sc[i] > 0) || !std::isfinite(sc[i]))
        throw_bad_input(n.label() + ": scale " + std::to_string(sc[i]) + " must be positive");
      s.scale[a] = sc[i];
      // tf_crop_and_resize sizes the output from the cropped region.
      const double span = s.coord_mode == "tf_crop_and_resize" ? s.roi_end[a] - s.roi_start[a] : 1.0;
      const double o = std::floor(double(s.in[a]) * span * sc[i]);
      if (o < 0 || o > double(int64_t(1) << 40)) throw_bad_input(n.label() + ": scale gives an invalid output size");
      s.out[a] = int64_t(o);
    }
  } else {
    std::vector<int64_t> sz = constant_ints(n, 3);
    if (sz.size() != na)
      throw_bad_input(n.label() + ": sizes has " + std::to_string(sz.size()) + " values for " + std::to_string(na) +
                      " axes");
    for (size_t i = 0; i < na; ++i) {
      const size_t a = size_t(axes[i]);
      if (sz[i] < 0) throw_bad_input(n.label() + ": sizes " + shape_str(sz) + " has a negative entry");
      if (s.in[a] == 0 && sz[i] != 0) throw_bad_input(n.label() + ": cannot resize the empty axis " + std::to_string(a));
      s.out[a] = sz[i];
      s.scale[a] = s.in[a] == 0 ? 1.0 : double(sz[i]) / double(s.in[a]);
    }
    if (policy != "stretch") {
      double k = policy == "not_larger" ? 1e300 : 0.0;
      for (int64_t a : axes)
        k = policy == "not_larger" ? std::min(k, s.scale[size_t(a)]) : std::max(k, s.scale[size_t(a)]);
      for (int64_t a : axes) {
        s.scale[size_t(a)] = k;
        s.out[size_t(a)] = int64_t(k * double(s.in[size_t(a)]) + 0.5);
      }
    }
  }
  for (int64_t a = 0; a < r; ++a)
    if (s.in[size_t(a)] == 0 && s.out[size_t(a)] != 0)
      throw_bad_input(n.label() + ": cannot resize the empty axis " + std::to_string(a));
  return s;
}

namespace {

void infer_resize(Node& n) {
  const Value& x = input_checked(n, 0);
  ResizeSpec s = resize_spec(n);
  set_output(n, 0, x.dtype, s.out);
}

}  // namespace

void register_resize_ops(OpRegistry& r) { r.add({"", "Resize", infer_resize}); }

}  // namespace kiln::ir
