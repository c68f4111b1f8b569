// CUDA Resize against the CPU reference kernel (parity.h): nearest modes,
// linear and cubic under each coordinate transformation, sizes and scales,
// the axes attribute, tf_crop_and_resize extrapolation, antialias, other ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backends/cuda/parity.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using ir::Attribute;
using ir::Dims;
using ir::Tensor;
using test::attr_f;
using test::attr_i;
using test::attr_ints;
using test::attr_s;
using test::cin;
using test::in;
using test::none;
using test::random_tensor;

using Attrs = std::map<std::string, Attribute>;

Tensor floats(const std::vector<double>& v) { return test::tensor_of(DataType::kFloat32, {int64_t(v.size())}, v); }
Tensor ints(const std::vector<int64_t>& v) { return Tensor::from_int64(v, {int64_t(v.size())}); }

// Both tactics ran in every variant (rank 4: fp32/fp16 x linear/nhwc).
void expect_both(const test::ParityReport& r) {
  EXPECT_EQ(r.checked, 8);
  for (const char* t : {"resize_nchw", "resize_nhwc"})
    EXPECT_NE(std::find(r.tactics.begin(), r.tactics.end(), t), r.tactics.end()) << t;
}

TEST(CudaResize, NearestModesUpAndDown) {
  KILN_REQUIRE_GPU();
  Tensor x = random_tensor(DataType::kFloat32, {2, 3, 5, 7}, 1);
  for (const char* coord : {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"})
    for (const char* nm : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"})
      for (const auto& sc : {std::vector<double>{1, 1, 2, 1.5}, std::vector<double>{1, 1, 0.5, 0.6}}) {
        SCOPED_TRACE(std::string(coord) + " " + nm + " scale " + std::to_string(sc[2]));
        Attrs a{{"mode", attr_s("nearest")}, {"coordinate_transformation_mode", attr_s(coord)},
                {"nearest_mode", attr_s(nm)}};
        expect_both(test::check_cuda_parity("Resize", {in(x), none(), cin(floats(sc))}, a));
      }
}

TEST(CudaResize, LinearCoordinateModesWithSizes) {
  KILN_REQUIRE_GPU();
  Tensor x = random_tensor(DataType::kFloat32, {2, 3, 6, 5}, 2);
  for (const char* coord : {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"})
    for (const auto& sz : {std::vector<int64_t>{2, 3, 9, 13}, std::vector<int64_t>{2, 3, 4, 3},
                           std::vector<int64_t>{2, 3, 1, 7}}) {
      SCOPED_TRACE(std::string(coord) + " to " + std::to_string(sz[2]) + "x" + std::to_string(sz[3]));
      Attrs a{{"mode", attr_s("linear")}, {"coordinate_transformation_mode", attr_s(coord)}};
      expect_both(test::check_cuda_parity("Resize", {in(x), none(), none(), cin(ints(sz))}, a));
    }
}

TEST(CudaResize, CubicExcludeOutside) {
  KILN_REQUIRE_GPU();
  Tensor x = random_tensor(DataType::kFloat32, {1, 4, 7, 6}, 3);
  for (int64_t excl : {0, 1})
    for (float coeff : {-0.75f, -0.5f}) {
      Attrs a{{"mode", attr_s("cubic")}, {"exclude_outside", attr_i(excl)}, {"cubic_coeff_a", attr_f(coeff)}};
      expect_both(test::check_cuda_parity("Resize", {in(x), none(), cin(floats({1, 1, 1.7, 0.8}))}, a));
    }
}

TEST(CudaResize, AxesAttributeAndAspectPolicy) {
  KILN_REQUIRE_GPU();
  Tensor x = random_tensor(DataType::kFloat32, {1, 5, 8, 11}, 4);
  Attrs a{{"mode", attr_s("linear")}, {"axes", attr_ints({2, 3})}};
  expect_both(test::check_cuda_parity("Resize", {in(x), none(), cin(floats({2.5, 0.75}))}, a));
  for (const char* policy : {"not_larger", "not_smaller"}) {
    Attrs b{{"mode", attr_s("nearest")}, {"axes", attr_ints({3, 2})}, {"keep_aspect_ratio_policy", attr_s(policy)}};
    expect_both(test::check_cuda_parity("Resize", {in(x), none(), none(), cin(ints({20, 12}))}, b));
  }
}

TEST(CudaResize, CropAndResizeExtrapolates) {
  KILN_REQUIRE_GPU();
  Tensor x = random_tensor(DataType::kFloat32, {1, 3, 8, 9}, 5);
  for (const char* mode : {"nearest", "linear"}) {
    SCOPED_TRACE(mode);
    // The crop box reaches past the image on both sides of H and W.
    Attrs a{{"mode", attr_s(mode)}, {"coordinate_transformation_mode", attr_s("tf_crop_and_resize")},
            {"extrapolation_value", attr_f(10.f)}};
    Tensor roi = floats({0, 0, -0.2, 0.3, 1, 1, 0.8, 1.4});
    expect_both(test::check_cuda_parity("Resize", {in(x), cin(roi), none(), cin(ints({1, 3, 7, 10}))}, a));
  }
}

TEST(CudaResize, AntialiasDownscale) {
  KILN_REQUIRE_GPU();
  Tensor x = random_tensor(DataType::kFloat32, {1, 2, 17, 23}, 6);
  for (const char* mode : {"linear", "cubic"}) {
    Attrs a{{"mode", attr_s(mode)}, {"antialias", attr_i(1)}};
    expect_both(test::check_cuda_parity("Resize", {in(x), none(), cin(floats({1, 1, 0.4, 0.3}))}, a));
  }
}

TEST(CudaResize, OtherRanksAndIdentity) {
  KILN_REQUIRE_GPU();
  // Rank 3: one resampled axis; linear layout only.
  Tensor x3 = random_tensor(DataType::kFloat32, {2, 5, 11}, 7);
  auto r3 = test::check_cuda_parity("Resize", {in(x3), none(), cin(floats({1, 1, 1.7}))}, {{"mode", attr_s("linear")}});
  EXPECT_EQ(r3.checked, 2);
  // Rank 5: three resampled axes (the general tap loop).
  Tensor x5 = random_tensor(DataType::kFloat32, {1, 2, 3, 4, 5}, 8);
  auto r5 = test::check_cuda_parity("Resize", {in(x5), none(), cin(floats({1, 1, 2, 0.5, 1.3}))},
                                    {{"mode", attr_s("linear")}});
  EXPECT_EQ(r5.checked, 2);
  // Scale 1 everywhere: every axis reads straight through.
  Tensor x4 = random_tensor(DataType::kFloat32, {2, 3, 4, 5}, 9);
  expect_both(test::check_cuda_parity("Resize", {in(x4), none(), cin(floats({1, 1, 1, 1}))}, {{"mode", attr_s("linear")}}));
  // Resampling the channel axis of a rank-4 tensor.
  expect_both(test::check_cuda_parity("Resize", {in(x4), none(), cin(floats({1, 2, 1, 1}))}, {{"mode", attr_s("linear")}}));
}

TEST(CudaResize, NearestMovesIntegerData) {
  KILN_REQUIRE_GPU();
  // Integer data stays integer in every variant: nearest is a pure gather.
  Tensor x = random_tensor(DataType::kUInt8, {1, 3, 5, 6}, 10, 0.0, 255.0);
  auto r = test::check_cuda_parity("Resize", {in(x), none(), cin(floats({1, 1, 2, 2}))}, {{"mode", attr_s("nearest")}});
  EXPECT_GT(r.checked, 0);
  Tensor y = random_tensor(DataType::kInt64, {1, 2, 3, 4}, 11, -1000.0, 1000.0);
  Attrs crop{{"mode", attr_s("nearest")}, {"coordinate_transformation_mode", attr_s("tf_crop_and_resize")},
             {"extrapolation_value", attr_f(-7.f)}};
  auto c = test::check_cuda_parity("Resize", {in(y), cin(floats({0, 0, -0.5, 0, 1, 1, 1, 1.5})), none(),
                                              cin(ints({1, 2, 5, 6}))},
                                   crop);
  EXPECT_GT(c.checked, 0);
}

}  // namespace
}  // namespace kiln
