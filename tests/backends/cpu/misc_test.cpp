// Cast/CastLike, ConstantOfShape, Range and EyeLike against references
// written here (numpy astype semantics on x86 for Cast).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kiln/error.h"
#include "support/op_test.h"

using namespace kiln;
using namespace kiln::test;
using ir::Dims;
using ir::Tensor;

namespace {

const DataType kAll[] = {DataType::kFloat32, DataType::kFloat16, DataType::kInt8, DataType::kUInt8,
                         DataType::kInt32, DataType::kInt64, DataType::kBool};

int onnx_code(DataType t) {
  switch (t) {
    case DataType::kFloat32: return 1;
    case DataType::kUInt8: return 2;
    case DataType::kInt8: return 3;
    case DataType::kInt32: return 6;
    case DataType::kInt64: return 7;
    case DataType::kBool: return 9;
    case DataType::kFloat16: return 10;
  }
  return 0;
}

// Source tensor of dtype `dt` holding `v` as that dtype stores it.
Tensor make(DataType dt, const std::vector<double>& v) {
  Tensor t(dt, {int64_t(v.size())});
  for (size_t i = 0; i < v.size(); ++i) {
    double x = v[i];
    switch (dt) {
      case DataType::kFloat32: t.data<float>()[i] = float(x); break;
      case DataType::kFloat16: t.data<uint16_t>()[i] = float_to_half(float(x)); break;
      case DataType::kInt8: t.data<int8_t>()[i] = int8_t(int64_t(x)); break;
      case DataType::kUInt8: t.data<uint8_t>()[i] = uint8_t(int64_t(x)); break;
      case DataType::kBool: t.data<uint8_t>()[i] = x != 0; break;
      case DataType::kInt32: t.data<int32_t>()[i] = int32_t(int64_t(x)); break;
      case DataType::kInt64: t.data<int64_t>()[i] = int64_t(x); break;
    }
  }
  return t;
}

// Expected bits of casting element i of `src` to `to`, stored into `out`.
void expect_cast(const Tensor& src, int64_t i, DataType to, const Tensor& out) {
  const bool from_float = src.dtype() == DataType::kFloat32 || src.dtype() == DataType::kFloat16;
  const double f = src.to_double()[size_t(i)];
  const int64_t n = src.to_int64()[size_t(i)];
  std::string where = std::string(dtype_name(src.dtype())) + "->" + dtype_name(to) + " value " + std::to_string(f);
  // Integer value a float becomes on x86: truncated, or the int32/int64 minimum.
  auto trunc32 = [&]() -> int64_t {
    return (f >= -2147483648.0 && f < 2147483648.0) ? int64_t(std::trunc(f)) : std::numeric_limits<int32_t>::min();
  };
  auto trunc64 = [&]() -> int64_t {
    return (f >= -9223372036854775808.0 && f < 9223372036854775808.0) ? int64_t(std::trunc(f))
                                                                        : std::numeric_limits<int64_t>::min();
  };
  const int64_t as_int = from_float ? (to == DataType::kInt64 ? trunc64() : trunc32()) : n;
  switch (to) {
    case DataType::kBool: EXPECT_EQ(out.data<uint8_t>()[i], uint8_t(from_float ? f != 0 : n != 0)) << where; break;
    case DataType::kFloat32: {
      float want = from_float ? float(f) : float(n);
      if (std::isnan(want)) EXPECT_TRUE(std::isnan(out.data<float>()[i])) << where;
      else EXPECT_EQ(out.data<float>()[i], want) << where;
      break;
    }
    case DataType::kFloat16: {
      uint16_t want = float_to_half(from_float ? float(f) : float(n));
      uint16_t got = out.data<uint16_t>()[i];
      if ((want & 0x7c00) == 0x7c00 && (want & 0x3ff)) EXPECT_TRUE((got & 0x7c00) == 0x7c00 && (got & 0x3ff)) << where;
      else EXPECT_EQ(got, want) << where;
      break;
    }
    case DataType::kInt8: EXPECT_EQ(out.data<int8_t>()[i], int8_t(uint8_t(as_int & 0xff))) << where; break;
    case DataType::kUInt8: EXPECT_EQ(out.data<uint8_t>()[i], uint8_t(as_int & 0xff)) << where; break;
    case DataType::kInt32: EXPECT_EQ(out.data<int32_t>()[i], int32_t(uint32_t(uint64_t(as_int)))) << where; break;
    case DataType::kInt64: EXPECT_EQ(out.data<int64_t>()[i], as_int) << where; break;
  }
}

Tensor i64(std::vector<int64_t> v) { return Tensor::from_int64(v, {int64_t(v.size())}); }
Tensor scalar_i32(int32_t v) {
  Tensor t(DataType::kInt32, {});
  t.data<int32_t>()[0] = v;
  return t;
}

}  // namespace

TEST(CastKernels, AllPairsFollowNumpyAstype) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  std::vector<double> vals = {0, 1, -1, 2.5, -2.7, 127.9, 300.7, -129.2, 65504, 1e10, -3e9, nan, inf, -inf, 0.1};
  for (DataType from : kAll) {
    Tensor src = make(from, vals);
    for (DataType to : kAll) {
      std::string tactic;
      Tensor out = run_op("Cast", {in(src)}, {{"to", attr_i(onnx_code(to))}}, 1, &tactic)[0];
      ASSERT_EQ(out.dtype(), to);
      EXPECT_EQ(tactic, std::string("cpu.cast.") + dtype_name(from) + "_" + dtype_name(to));
      for (int64_t i = 0; i < src.numel(); ++i) expect_cast(src, i, to, out);
      Tensor like(to, {0});
      Tensor out2 = run_op("CastLike", {in(src), in(like)})[0];
      EXPECT_EQ(out2.dtype(), to);
      EXPECT_EQ(std::vector<uint8_t>(out.to_host().data), std::vector<uint8_t>(out2.to_host().data));
    }
  }
  // Large tensors take the threaded path.
  Tensor big = random_tensor(DataType::kFloat32, {100000}, 3, -1000, 1000);
  Tensor bi = run_op("Cast", {in(big)}, {{"to", attr_i(7)}})[0];
  for (int64_t i = 0; i < big.numel(); i += 997) EXPECT_EQ(bi.data<int64_t>()[i], int64_t(big.data<float>()[i]));
}

TEST(CastKernels, RejectsUnknownTargets) {
  Tensor x = random_tensor(DataType::kFloat32, {3}, 1);
  try {
    run_op("Cast", {in(x)}, {{"to", attr_i(11)}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("DOUBLE"), std::string::npos) << e.what();
  }
  EXPECT_THROW(run_op("Cast", {in(x)}), Error);
}

TEST(ConstantOfShapeKernel, FillsValue) {
  ir::Attribute value;
  value.kind = ir::Attribute::Kind::kTensor;
  value.t = Tensor(DataType::kInt32, {1});
  value.t.data<int32_t>()[0] = 7;
  Tensor y = run_op("ConstantOfShape", {cin(i64({2, 3}))}, {{"value", value}})[0];
  EXPECT_EQ(y.dtype(), DataType::kInt32);
  EXPECT_EQ(y.dims(), (Dims{2, 3}));
  EXPECT_EQ(y.to_int64(), std::vector<int64_t>(6, 7));
  Tensor z = run_op("ConstantOfShape", {cin(i64({4}))})[0];
  EXPECT_EQ(z.dtype(), DataType::kFloat32);
  EXPECT_EQ(z.to_double(), std::vector<double>(4, 0.0));
  EXPECT_EQ(run_op("ConstantOfShape", {cin(i64({0}))}, {{"value", value}})[0].dims(), (Dims{0}));
  EXPECT_EQ(run_op("ConstantOfShape", {cin(Tensor::from_int64({}, {0}))})[0].dims(), Dims{});  // scalar
  try {
    run_op("ConstantOfShape", {in(i64({2}))});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("ConstantOfShape 'node': input 'in0' must be a constant"), std::string::npos);
  }
  EXPECT_THROW(run_op("ConstantOfShape", {cin(i64({2, -1}))}), Error);
}

TEST(RangeKernel, CountsAndValues) {
  Tensor s = scalar_i32(10), l = scalar_i32(6), d = scalar_i32(-3);
  Tensor y = run_op("Range", {cin(s), cin(l), cin(d)})[0];
  EXPECT_EQ(y.dtype(), DataType::kInt32);
  EXPECT_EQ(y.to_int64(), (std::vector<int64_t>{10, 7}));
  auto f = [](float v) { return Tensor::from_float({v}, {}); };
  Tensor fy = run_op("Range", {cin(f(1)), cin(f(5)), cin(f(0.5f))})[0];
  ASSERT_EQ(fy.dims(), Dims{8});
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(fy.data<float>()[i], 1.0f + 0.5f * float(i));
  Tensor fz = run_op("Range", {cin(f(0)), cin(f(1)), cin(f(0.3f))})[0];
  EXPECT_EQ(fz.dims(), Dims{4});  // ceil(1/0.3)
  auto l64 = [](int64_t v) { return Tensor::from_int64({v}, {}); };
  Tensor big = run_op("Range", {cin(l64(int64_t(1) << 40)), cin(l64((int64_t(1) << 40) + 7)), cin(l64(3))})[0];
  EXPECT_EQ(big.to_int64(), (std::vector<int64_t>{int64_t(1) << 40, (int64_t(1) << 40) + 3, (int64_t(1) << 40) + 6}));
  EXPECT_EQ(run_op("Range", {cin(l64(5)), cin(l64(1)), cin(l64(2))})[0].dims(), Dims{0});
  EXPECT_THROW(run_op("Range", {cin(l64(0)), cin(l64(3)), cin(l64(0))}), Error);
  try {
    run_op("Range", {in(l64(0)), cin(l64(3)), cin(l64(1))});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
}

TEST(EyeLikeKernel, DiagonalsAndDtypes) {
  Tensor x(DataType::kInt32, {4, 5});
  for (int64_t k : {0, 1, -2, 7}) {
    Tensor y = run_op("EyeLike", {in(x)}, {{"k", attr_i(k)}, {"dtype", attr_i(1)}})[0];
    ASSERT_EQ(y.dtype(), DataType::kFloat32);
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 5; ++j) EXPECT_EQ(y.data<float>()[i * 5 + j], j - i == k ? 1.0f : 0.0f) << k;
  }
  Tensor same = run_op("EyeLike", {in(x)})[0];
  EXPECT_EQ(same.dtype(), DataType::kInt32);
  EXPECT_EQ(same.to_int64()[6], 1);
  Tensor h = run_op("EyeLike", {in(x)}, {{"dtype", attr_i(10)}})[0];
  EXPECT_EQ(h.data<uint16_t>()[0], float_to_half(1.0f));
  EXPECT_THROW(run_op("EyeLike", {in(Tensor(DataType::kFloat32, {3}))}), Error);
}
