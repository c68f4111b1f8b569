// Resize against a float64 reference written from the ONNX operator text: for
// every output element, the full product of per-axis taps (not separable
// passes like the kernel), plus a few outputs of the ONNX reference
// implementation copied from its node tests.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "kiln/error.h"
#include "support/op_test.h"

using namespace kiln;
using namespace kiln::test;
using ir::Dims;
using ir::Tensor;

namespace {

struct Opts {
  std::string mode = "nearest", ctm = "half_pixel", nearest = "round_prefer_floor";
  double a = -0.75;
  bool exclude = false, antialias = false;
  double extrap = 0;
  std::vector<double> roi;  // start..., end... over all axes
};

double to_source(const Opts& o, size_t ax, int64_t x, int64_t in, int64_t out, double scale) {
  const double X = double(x), L = double(in);
  if (o.ctm == "align_corners") return out == 1 ? 0 : X * (L - 1) / (scale * L - 1);
  if (o.ctm == "asymmetric") return X / scale;
  if (o.ctm == "pytorch_half_pixel") return out > 1 ? (X + 0.5) / scale - 0.5 : 0;
  if (o.ctm == "half_pixel_symmetric") {
    const double adj = double(out) / (scale * L);
    return L / 2 * (1 - adj) + (X + 0.5) / scale - 0.5;
  }
  if (o.ctm == "tf_crop_and_resize") {
    const size_t r = o.roi.size() / 2;
    const double s = o.roi[ax], e = o.roi[r + ax];
    return out > 1 ? s * (L - 1) + X * (e - s) * (L - 1) / double(out - 1) : 0.5 * (s + e) * (L - 1);
  }
  return (X + 0.5) / scale - 0.5;
}

double cubic(double d, double A) {
  d = std::fabs(d);
  if (d < 1) return (A + 2) * d * d * d - (A + 3) * d * d + 1;
  if (d < 2) return A * d * d * d - 5 * A * d * d + 8 * A * d - 4 * A;
  return 0;
}

struct Tap {
  int64_t i;
  double w;
};

// Taps of one output coordinate: nearest picks by rounding mode; linear/cubic
// weigh every integer position within the kernel's reach, clamped to the edge.
std::vector<Tap> taps_for(const Opts& o, double xs, int64_t in, double scale) {
  auto clampi = [&](int64_t i) { return std::min(std::max<int64_t>(i, 0), in - 1); };
  if (o.mode == "nearest") {
    double fl = std::floor(xs), fr = xs - fl;
    int64_t pick = int64_t(fl);
    if (fr > 0) {
      if (o.nearest == "ceil" || (o.nearest == "round_prefer_ceil" && fr >= 0.5) ||
          (o.nearest == "round_prefer_floor" && fr > 0.5))
        pick += 1;
    }
    return {{clampi(pick), 1.0}};
  }
  const double s = o.antialias ? std::min(scale, 1.0) : 1.0;
  const double reach = (o.mode == "cubic" ? 2.0 : 1.0) / s;
  std::vector<Tap> t;
  double sum = 0;
  for (int64_t i = int64_t(std::floor(xs - reach)); i <= int64_t(std::ceil(xs + reach)); ++i) {
    const double d = (double(i) - xs) * s;
    double w = o.mode == "cubic" ? cubic(d, o.a) : std::max(0.0, 1 - std::fabs(d));
    if (o.exclude && (i < 0 || i >= in)) w = 0;
    if (w == 0) continue;
    t.push_back({clampi(i), w});
    sum += w;
  }
  if (o.antialias || o.exclude)
    for (auto& tp : t) tp.w /= sum;
  return t;
}

std::vector<double> reference(const Tensor& x, const Dims& out, const std::vector<double>& scales, const Opts& o) {
  const Dims& in = x.dims();
  const size_t r = in.size();
  auto xv = x.to_double();
  int64_t total = 1;
  for (int64_t d : out) total *= d;
  std::vector<double> y(static_cast<size_t>(total));
  for (int64_t f = 0; f < total; ++f) {
    std::vector<int64_t> oi(r);
    for (size_t d = r, rem = size_t(f); d-- > 0;) {
      oi[d] = int64_t(rem % size_t(out[d]));
      rem /= size_t(out[d]);
    }
    std::vector<std::vector<Tap>> taps(r);
    bool outside = false;
    for (size_t d = 0; d < r; ++d) {
      const double xs = to_source(o, d, oi[d], in[d], out[d], scales[d]);
      if (o.ctm == "tf_crop_and_resize" && (xs < 0 || xs > double(in[d] - 1))) outside = true;
      taps[d] = taps_for(o, xs, in[d], scales[d]);
    }
    if (outside) {
      y[size_t(f)] = o.extrap;
      continue;
    }
    // Sum over every combination of taps (odometer over the per-axis lists).
    std::vector<size_t> pick(r, 0);
    double acc = 0;
    for (;;) {
      double w = 1;
      int64_t src = 0;
      for (size_t d = 0; d < r; ++d) {
        w *= taps[d][pick[d]].w;
        src = src * in[d] + taps[d][pick[d]].i;
      }
      acc += w * xv[size_t(src)];
      size_t d = r;
      while (d-- > 0 && ++pick[d] == taps[d].size()) pick[d] = 0;
      if (d == size_t(-1)) break;
    }
    y[size_t(f)] = acc;
  }
  return y;
}

std::map<std::string, ir::Attribute> attrs_of(const Opts& o) {
  return {{"mode", attr_s(o.mode)},
          {"coordinate_transformation_mode", attr_s(o.ctm)},
          {"nearest_mode", attr_s(o.nearest)},
          {"cubic_coeff_a", attr_f(float(o.a))},
          {"exclude_outside", attr_i(o.exclude)},
          {"antialias", attr_i(o.antialias)},
          {"extrapolation_value", attr_f(float(o.extrap))}};
}

Tensor floats(const std::vector<double>& v) {
  std::vector<float> f(v.begin(), v.end());
  return Tensor::from_float(f, {int64_t(f.size())});
}

// Runs Resize with constant scales and checks against the reference.
void check_scales(const Tensor& x, const std::vector<double>& scales, const Opts& o, double tol,
                  const std::string& want_tactic = "") {
  Dims out;
  for (size_t d = 0; d < scales.size(); ++d) out.push_back(int64_t(std::floor(double(x.dims()[d]) * float(scales[d]))));
  std::vector<double> sc32;
  for (double s : scales) sc32.push_back(double(float(s)));  // the kernel sees fp32 scales
  std::vector<OpInput> ins = {in(x), o.roi.empty() ? none() : cin(floats(o.roi)), cin(floats(scales))};
  std::string tactic;
  auto res = run_op("Resize", ins, attrs_of(o), 1, &tactic);
  ASSERT_EQ(res[0].dims(), out) << o.mode << "/" << o.ctm;
  auto want = reference(x, out, sc32, o);
  auto got = res[0].to_double();
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * std::max(1.0, std::fabs(want[i]))) << o.mode << "/" << o.ctm << "/" << o.nearest
                                                                          << " at " << i << " tactic " << tactic;
  if (!want_tactic.empty()) EXPECT_EQ(tactic, want_tactic);
}


const char* kCoordModes[] = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"};

}  // namespace

TEST(ResizeOps, BilinearNCHWFastPath) {
  Tensor x = random_tensor(DataType::kFloat32, {2, 3, 5, 7}, 1);
  for (const char* ctm : kCoordModes) {
    Opts o;
    o.mode = "linear";
    o.ctm = ctm;
    check_scales(x, {1, 1, 2, 2}, o, 1e-5, "resize_bilinear2d_fp32");
    check_scales(x, {1, 1, 0.6, 2.3}, o, 1e-5, "resize_bilinear2d_fp32");
    check_scales(x, {1, 1, 1, 0.2}, o, 1e-5);  // one output column
  }
}

TEST(ResizeOps, NearestEveryRoundingModeAnyDtype) {
  for (DataType dt : {DataType::kFloat32, DataType::kInt8, DataType::kFloat16}) {
    Tensor x = random_tensor(dt, {1, 2, 4, 6}, 2, -100, 100);
    for (const char* ctm : kCoordModes)
      for (const char* nm : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}) {
        Opts o;
        o.ctm = ctm;
        o.nearest = nm;
        check_scales(x, {1, 1, 2, 3}, o, 0, "resize_nearest_gather");
        check_scales(x, {1, 1, 0.5, 0.7}, o, 0);
        check_scales(x, {1, 1, 1.5, 1}, o, 0);
      }
  }
}

TEST(ResizeOps, CubicWithCoefficientAndExcludeOutside) {
  Tensor x = random_tensor(DataType::kFloat32, {1, 2, 6, 5}, 3);
  for (const char* ctm : kCoordModes)
    for (double a : {-0.75, -0.5})
      for (bool ex : {false, true}) {
        Opts o;
        o.mode = "cubic";
        o.ctm = ctm;
        o.a = a;
        o.exclude = ex;
        check_scales(x, {1, 1, 2, 1.6}, o, 1e-5, "resize_separable_cubic");
        check_scales(x, {1, 1, 0.5, 0.8}, o, 1e-5);
      }
}

TEST(ResizeOps, AntialiasMatchesOnnxReference) {
  Tensor x = Tensor::from_float({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, {1, 1, 4, 4});
  Opts o;
  o.mode = "linear";
  o.antialias = true;
  auto res = run_op("Resize", {in(x), none(), cin(floats({1, 1, 0.6, 0.6}))}, attrs_of(o));
  const std::vector<double> lin = {2.875, 4.5, 9.375, 11.0};
  for (size_t i = 0; i < lin.size(); ++i) EXPECT_NEAR(res[0].to_double()[i], lin[i], 1e-5);
  o.mode = "cubic";
  res = run_op("Resize", {in(x), none(), none(), cin(Tensor::from_int64({1, 1, 3, 3}, {4}))}, attrs_of(o));
  const std::vector<double> cub = {1.775009, 3.120007, 4.465005, 7.155002, 8.5, 9.844998, 12.53499, 13.87999, 15.22499};
  for (size_t i = 0; i < cub.size(); ++i) EXPECT_NEAR(res[0].to_double()[i], cub[i], 1e-5);
  // Random data, both kernels, against the reference sum.
  Tensor y = random_tensor(DataType::kFloat32, {1, 1, 9, 11}, 4);
  for (const char* mode : {"linear", "cubic"}) {
    Opts a;
    a.mode = mode;
    a.antialias = true;
    check_scales(y, {1, 1, 0.35, 0.5}, a, 1e-5);
    check_scales(y, {1, 1, 1.5, 0.7}, a, 1e-5);
  }
}

TEST(ResizeOps, TrilinearAndChannelsLast) {
  Tensor x = random_tensor(DataType::kFloat32, {1, 2, 3, 4, 5}, 5);
  Opts o;
  o.mode = "linear";
  check_scales(x, {1, 1, 2, 1.5, 0.5}, o, 1e-5, "resize_separable_linear");
  Tensor nhwc = random_tensor(DataType::kFloat32, {2, 5, 6, 3}, 6);  // resize H, W with C innermost
  o.ctm = "align_corners";
  check_scales(nhwc, {1, 2, 0.5, 1}, o, 1e-5, "resize_separable_linear");
  check_scales(nhwc, {1, 1, 1, 1}, o, 0, "resize_copy");
}

TEST(ResizeOps, LinearOnHalfAndIntegerTypes) {
  Opts o;
  o.mode = "linear";
  Tensor h = random_tensor(DataType::kFloat16, {1, 3, 4, 4}, 7, -4, 4);
  check_scales(h, {1, 1, 1.75, 2.5}, o, 2e-3);
  // Integers round half to even; the result is within 0.5 of the exact value.
  Tensor u = random_tensor(DataType::kUInt8, {1, 1, 5, 6}, 8, 0, 255);
  Tensor q = random_tensor(DataType::kInt32, {1, 1, 5, 6}, 9, -1000, 1000);
  for (const Tensor* t : {&u, &q}) {
    auto res = run_op("Resize", {in(*t), none(), cin(floats({1, 1, 1.6, 0.5}))}, attrs_of(o));
    auto want = reference(*t, res[0].dims(), {1, 1, double(1.6f), 0.5}, o);
    auto got = res[0].to_double();
    for (size_t i = 0; i < want.size(); ++i) ASSERT_LE(std::fabs(got[i] - want[i]), 0.5 + 1e-3) << i;
  }
}

TEST(ResizeOps, TfCropAndResizeExtrapolates) {
  Tensor x = random_tensor(DataType::kFloat32, {1, 1, 5, 6}, 10);
  for (const char* mode : {"linear", "nearest", "cubic"}) {
    Opts o;
    o.mode = mode;
    o.ctm = "tf_crop_and_resize";
    o.extrap = 7.5;
    o.roi = {0, 0, 0.4, -0.2, 1, 1, 1.3, 0.9};
    Dims out = {1, 1, 4, 7};
    auto res = run_op("Resize", {in(x), cin(floats(o.roi)), none(), cin(Tensor::from_int64(out, {4}))}, attrs_of(o));
    ASSERT_EQ(res[0].dims(), out);
    std::vector<double> sc = {1, 1, 4.0 / 5, 7.0 / 6};
    auto want = reference(x, out, sc, o);
    auto got = res[0].to_double();
    int extrapolated = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-5) << mode << " at " << i;
      extrapolated += want[i] == 7.5;
    }
    EXPECT_GT(extrapolated, 0);
  }
}

TEST(ResizeOps, SizesWithAxesAndAspectPolicy) {
  Tensor x = random_tensor(DataType::kFloat32, {1, 2, 4, 8}, 11);
  struct Case {
    std::string policy;
    std::vector<int64_t> axes, sizes;
    Dims out;
  };
  const std::vector<Case> cases = {{"stretch", {3, 2}, {5, 7}, {1, 2, 7, 5}},
                                   {"not_larger", {2, 3}, {6, 6}, {1, 2, 3, 6}},   // scale min(1.5, 0.75)
                                   {"not_smaller", {2, 3}, {6, 6}, {1, 2, 6, 12}},  // scale max(1.5, 0.75)
                                   {"stretch", {-1}, {3}, {1, 2, 4, 3}}};
  for (const Case& c : cases) {
    Opts o;
    auto attrs = attrs_of(o);
    attrs["keep_aspect_ratio_policy"] = attr_s(c.policy);
    attrs["axes"] = attr_ints(c.axes);
    auto res = run_op("Resize", {in(x), none(), none(), cin(Tensor::from_int64(c.sizes, {int64_t(c.sizes.size())}))},
                      attrs);
    ASSERT_EQ(res[0].dims(), c.out) << c.policy;
    std::vector<double> sc(4, 1.0);
    if (c.policy == "stretch") {
      for (size_t d = 0; d < 4; ++d) sc[d] = double(c.out[d]) / double(x.dims()[d]);
    } else {
      sc[2] = sc[3] = c.policy == "not_larger" ? 0.75 : 1.5;
    }
    auto want = reference(x, c.out, sc, o);
    EXPECT_EQ(res[0].to_double(), want) << c.policy;
  }
}

TEST(ResizeOps, RejectsBadInputs) {
  Tensor x = random_tensor(DataType::kFloat32, {1, 1, 2, 2}, 12);
  Opts o;
  EXPECT_EQ(code_of([&] { run_op("Resize", {in(x), none(), in(floats({1, 1, 2, 2}))}, attrs_of(o)); }),
            ErrorCode::kUnsupported);
  EXPECT_EQ(code_of([&] {
              run_op("Resize", {in(x), none(), cin(floats({1, 1, 2, 2})), cin(Tensor::from_int64({1, 1, 4, 4}, {4}))},
                     attrs_of(o));
            }),
            ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("Resize", {in(x), none(), cin(floats({1, 1, -2, 2}))}, attrs_of(o)); }),
            ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("Resize", {in(x), none(), cin(floats({1, 2, 2}))}, attrs_of(o)); }),
            ErrorCode::kBadInput);
  auto bad = attrs_of(o);
  bad["mode"] = attr_s("area");
  EXPECT_EQ(code_of([&] { run_op("Resize", {in(x), none(), cin(floats({1, 1, 2, 2}))}, bad); }),
            ErrorCode::kUnsupported);
}
