// QuantizeLinear / DequantizeLinear against references written here
// (float64 arithmetic, ties to even, saturation), plus the refusals.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/error.h"
#include "support/op_test.h"

using namespace kiln;
using namespace kiln::test;
using ir::Tensor;

namespace {

// ONNX QuantizeLinear for one element, in float64. Exact for the test data:
// every x / scale below is exactly representable, so float32 and float64
// division agree and ties are real ties.
double ref_quantize(double x, double scale, double zp, double lo, double hi) {
  double r = x / scale;
  double f = std::floor(r);
  double q = (r - f == 0.5) ? (std::fmod(f, 2.0) == 0 ? f : f + 1) : std::round(r);
  return std::min(std::max(q + zp, lo), hi);
}

TEST(QuantizeLinear, PerTensorInt8RoundsHalfToEvenAndSaturates) {
  std::vector<double> x = {0, 0.25, 0.75, 1.25, -0.25, -0.75, -1.25, 3.0, 100.0, -100.0, 63.5, -64.25};
  const double s = 0.5;
  auto out = run_op("QuantizeLinear",
                    {in(tensor_of(DataType::kFloat32, {int64_t(x.size())}, x)), cin(Tensor::from_float({0.5f}, {})),
                     cin(tensor_of(DataType::kInt8, {}, {0}))});
  ASSERT_EQ(out[0].dtype(), DataType::kInt8);
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_EQ(out[0].data<int8_t>()[i], ref_quantize(x[i], s, 0, -128, 127)) << "x=" << x[i];
}

TEST(QuantizeLinear, Uint8WithZeroPointAndAbsentZeroPoint) {
  std::vector<double> x = {-3, -1, 0, 1.5, 2.5, 40, 300};
  Tensor xt = tensor_of(DataType::kFloat32, {7}, x);
  auto with_zp = run_op("QuantizeLinear", {in(xt), cin(Tensor::from_float({1.f}, {})),
                                           cin(tensor_of(DataType::kUInt8, {}, {128}))});
  ASSERT_EQ(with_zp[0].dtype(), DataType::kUInt8);
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_EQ(with_zp[0].data<uint8_t>()[i], ref_quantize(x[i], 1, 128, 0, 255)) << "x=" << x[i];
  // No zero point: uint8, zero point 0 (ONNX default).
  auto no_zp = run_op("QuantizeLinear", {in(xt), cin(Tensor::from_float({1.f}, {}))});
  ASSERT_EQ(no_zp[0].dtype(), DataType::kUInt8);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(no_zp[0].data<uint8_t>()[i], ref_quantize(x[i], 1, 0, 0, 255));
  // Opset 21 output_dtype=int8 without a zero point.
  auto int8_out = run_op("QuantizeLinear", {in(xt), cin(Tensor::from_float({1.f}, {}))}, {{"output_dtype", attr_i(3)}});
  ASSERT_EQ(int8_out[0].dtype(), DataType::kInt8);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(int8_out[0].data<int8_t>()[i], ref_quantize(x[i], 1, 0, -128, 127));
}

TEST(QuantizeLinear, PerAxisOnEachAxis) {
  const ir::Dims dims = {2, 3, 4};
  Tensor x = random_tensor(DataType::kFloat32, dims, 5, -4, 4);
  for (int64_t axis : {0, 1, 2, -1}) {
    const int64_t a = axis < 0 ? axis + 3 : axis;
    std::vector<float> scales;
    std::vector<double> zps;
    for (int64_t c = 0; c < dims[size_t(a)]; ++c) {
      scales.push_back(0.03125f * float(c + 1));  // powers-of-two multiples keep x / s exact enough
      zps.push_back(double(c) - 1);
    }
    const int64_t ch = dims[size_t(a)];
    auto out = run_op("QuantizeLinear", {in(x), cin(Tensor::from_float(scales, {ch})),
                                         cin(tensor_of(DataType::kInt8, {ch}, zps))},
                      {{"axis", attr_i(axis)}});
    for (int64_t i = 0; i < x.numel(); ++i) {
      const int64_t c = unravel(i, dims)[size_t(a)];
      const double r = double(x.data<float>()[i]) / double(scales[size_t(c)]);
      // Far from ties the float32 division rounds the same way as float64.
      if (std::fabs(r - std::floor(r) - 0.5) < 1e-3) continue;
      EXPECT_EQ(out[0].data<int8_t>()[i], ref_quantize(x.data<float>()[i], scales[size_t(c)], zps[size_t(c)], -128, 127))
          << "axis " << axis << " i " << i;
    }
  }
}

TEST(QuantizeLinear, ScalesGivenAtRunTime) {
  // The ONNX node tests feed scale and zero point as graph inputs.
  auto out = run_op("QuantizeLinear", {in(tensor_of(DataType::kFloat32, {3}, {1, 2, -2})),
                                       in(Tensor::from_float({2.f}, {})), in(tensor_of(DataType::kInt8, {}, {1}))});
  EXPECT_EQ(out[0].data<int8_t>()[0], 1);  // round(0.5) = 0, + 1
  EXPECT_EQ(out[0].data<int8_t>()[1], 2);
  EXPECT_EQ(out[0].data<int8_t>()[2], 0);
}

TEST(DequantizeLinear, PerTensorAndPerAxis) {
  Tensor q = tensor_of(DataType::kInt8, {2, 3}, {-128, -1, 0, 1, 64, 127});
  auto per_tensor = run_op("DequantizeLinear", {in(q), cin(Tensor::from_float({0.25f}, {})),
                                                cin(tensor_of(DataType::kInt8, {}, {-2}))});
  ASSERT_EQ(per_tensor[0].dtype(), DataType::kFloat32);
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_EQ(per_tensor[0].data<float>()[i], float((q.data<int8_t>()[i] + 2) * 0.25)) << i;

  std::vector<float> s = {0.5f, 0.125f, 2.f};
  auto per_axis = run_op("DequantizeLinear", {in(q), cin(Tensor::from_float(s, {3}))}, {{"axis", attr_i(1)}});
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(per_axis[0].data<float>()[i], float(q.data<int8_t>()[i] * s[size_t(i % 3)]));

  Tensor u = tensor_of(DataType::kUInt8, {4}, {0, 10, 128, 255});
  auto uout = run_op("DequantizeLinear", {in(u), cin(Tensor::from_float({0.5f}, {})), cin(tensor_of(DataType::kUInt8, {}, {128}))});
  const double want[] = {-64, -59, 0, 63.5};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(uout[0].data<float>()[i], want[i]);

  Tensor i32 = tensor_of(DataType::kInt32, {2}, {-1000, 123456});
  auto iout = run_op("DequantizeLinear", {in(i32), cin(Tensor::from_float({0.5f}, {}))});
  EXPECT_EQ(iout[0].data<float>()[0], -500.f);
  EXPECT_EQ(iout[0].data<float>()[1], 61728.f);
}

TEST(DequantizeLinear, Fp16ScaleGivesFp16) {
  Tensor q = tensor_of(DataType::kInt8, {3}, {-4, 0, 6});
  Tensor s(DataType::kFloat16, {});
  s.data<uint16_t>()[0] = float_to_half(0.5f);
  auto out = run_op("DequantizeLinear", {in(q), cin(s)});
  ASSERT_EQ(out[0].dtype(), DataType::kFloat16);
  EXPECT_EQ(half_to_float(out[0].data<uint16_t>()[0]), -2.f);
  EXPECT_EQ(half_to_float(out[0].data<uint16_t>()[2]), 3.f);
}

TEST(QuantizeLinear, RefusesWhatKilnCannotRepresent) {
  Tensor x = tensor_of(DataType::kFloat32, {2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
  // Blocked quantization (opset 21).
  EXPECT_EQ(code_of([&] {
              run_op("QuantizeLinear", {in(x), cin(Tensor::from_float({1, 1, 1, 1}, {2, 2})),
                                        cin(tensor_of(DataType::kInt8, {2, 2}, {0, 0, 0, 0}))},
                     {{"axis", attr_i(1)}, {"block_size", attr_i(2)}});
            }),
            ErrorCode::kUnsupported);
  // int4 output.
  EXPECT_EQ(code_of([&] { run_op("QuantizeLinear", {in(x), cin(Tensor::from_float({1.f}, {}))}, {{"output_dtype", attr_i(22)}}); }),
            ErrorCode::kUnsupported);
  // Per-axis scale of the wrong length.
  EXPECT_EQ(code_of([&] {
              run_op("QuantizeLinear", {in(x), cin(Tensor::from_float({1, 2, 3}, {3}))}, {{"axis", attr_i(1)}});
            }),
            ErrorCode::kBadInput);
  // Zero point shape differing from the scale's.
  EXPECT_EQ(code_of([&] {
              run_op("DequantizeLinear", {in(tensor_of(DataType::kInt8, {2, 4}, {1, 2, 3, 4, 5, 6, 7, 8})),
                                          cin(Tensor::from_float({1, 2}, {2})), cin(tensor_of(DataType::kInt8, {}, {0}))},
                     {{"axis", attr_i(0)}});
            }),
            ErrorCode::kBadInput);
  // Zero point dtype differing from the input's.
  EXPECT_EQ(code_of([&] {
              run_op("DequantizeLinear", {in(tensor_of(DataType::kInt8, {2}, {1, 2})), cin(Tensor::from_float({1.f}, {})),
                                          cin(tensor_of(DataType::kUInt8, {}, {0}))});
            }),
            ErrorCode::kBadInput);
}

}  // namespace
