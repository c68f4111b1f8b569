// Reshape-family kernels against references written here: flat copies for the
// reshape ops, explicit multi-index loops for Transpose and Expand.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <numeric>

#include "ir/op_registry.h"
#include "kiln/error.h"
#include "support/op_test.h"

using namespace kiln;
using namespace kiln::test;
using ir::Dims;
using ir::Tensor;

namespace {

Tensor ints(std::vector<int64_t> v) { return Tensor::from_int64(v, {int64_t(v.size())}); }



void expect_same_values(const Tensor& got, const Tensor& want_data, const Dims& want_dims) {
  ASSERT_EQ(got.dims(), want_dims);
  ASSERT_EQ(got.dtype(), want_data.dtype());
  ASSERT_EQ(got.nbytes(), want_data.nbytes());
  EXPECT_EQ(std::memcmp(got.raw(), want_data.raw(), got.nbytes()), 0);
}

}  // namespace

TEST(ShapeOps, ReshapeZeroCopiesAndMinusOneInfers) {
  Tensor x = random_tensor(DataType::kFloat32, {2, 3, 4}, 1);
  auto out = run_op("Reshape", {in(x), cin(ints({4, 0, -1}))});
  expect_same_values(out[0], x, {4, 3, 2});
  out = run_op("Reshape", {in(x), cin(ints({-1}))});
  expect_same_values(out[0], x, {24});
  out = run_op("Reshape", {in(x), cin(ints({0, 0, 2, -1}))});
  expect_same_values(out[0], x, {2, 3, 2, 2});
}

TEST(ShapeOps, ReshapeAllowZeroKeepsLiteralZero) {
  Tensor x(DataType::kFloat32, {0, 3, 4});
  auto out = run_op("Reshape", {in(x), cin(ints({3, 4, 0}))}, {{"allowzero", attr_i(1)}});
  EXPECT_EQ(out[0].dims(), (Dims{3, 4, 0}));
  // Without allowzero the 0 copies the input's dim 2 (4): 3*4*4 != 0 elements.
  EXPECT_EQ(code_of([&] { run_op("Reshape", {in(x), cin(ints({3, 4, 0}))}); }), ErrorCode::kBadInput);
}

TEST(ShapeOps, ReshapeRejectsBadShapes) {
  Tensor x = random_tensor(DataType::kFloat32, {2, 3, 4}, 2);
  EXPECT_EQ(code_of([&] { run_op("Reshape", {in(x), cin(ints({-1, -1}))}); }), ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("Reshape", {in(x), cin(ints({5, -1}))}); }), ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("Reshape", {in(x), cin(ints({7, 4}))}); }), ErrorCode::kBadInput);
  try {
    run_op("Reshape", {in(x), in(ints({24}))});
    FAIL() << "a runtime shape must be rejected";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("must be a constant"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("in1"), std::string::npos) << e.what();
  }
}

TEST(ShapeOps, FlattenAxes) {
  Tensor x = random_tensor(DataType::kInt8, {2, 3, 4, 5}, 3, -100, 100);
  const std::vector<std::pair<int64_t, Dims>> cases = {
      {0, {1, 120}}, {1, {2, 60}}, {2, {6, 20}}, {4, {120, 1}}, {-1, {24, 5}}, {-4, {1, 120}}};
  for (auto& [axis, dims] : cases) {
    auto out = run_op("Flatten", {in(x)}, {{"axis", attr_i(axis)}});
    expect_same_values(out[0], x, dims);
  }
  EXPECT_EQ(code_of([&] { run_op("Flatten", {in(x)}, {{"axis", attr_i(5)}}); }), ErrorCode::kBadInput);
}

TEST(ShapeOps, TransposeMatchesIndexPermutation) {
  struct Case {
    Dims dims;
    std::vector<int64_t> perm;
    DataType dt;
  };
  const std::vector<Case> cases = {
      {{2, 32, 17, 19}, {0, 2, 3, 1}, DataType::kFloat32},  // NCHW -> NHWC
      {{1, 20, 24, 33}, {0, 3, 1, 2}, DataType::kFloat32},  // NHWC -> NCHW
      {{3, 5, 7, 2}, {3, 2, 1, 0}, DataType::kFloat16},
      {{4, 6, 9}, {1, 0, 2}, DataType::kInt64},
      {{4, 6, 9}, {2, 0, 1}, DataType::kInt8},
      {{2, 3, 4, 5, 6}, {4, 1, 3, 0, 2}, DataType::kBool},
      {{64, 48}, {1, 0}, DataType::kInt32},
  };
  uint32_t seed = 10;
  for (const Case& c : cases) {
    Tensor x = random_tensor(c.dt, c.dims, seed++, -50, 50);
    std::string tactic;
    auto out = run_op("Transpose", {in(x)}, {{"perm", attr_ints(c.perm)}}, 1, &tactic);
    Dims od;
    for (int64_t p : c.perm) od.push_back(c.dims[size_t(p)]);
    ASSERT_EQ(out[0].dims(), od);
    auto xv = x.to_double(), yv = out[0].to_double();
    for (int64_t f = 0; f < out[0].numel(); ++f) {
      std::vector<int64_t> oi = unravel(f, od), ii(c.dims.size());
      for (size_t k = 0; k < c.perm.size(); ++k) ii[size_t(c.perm[k])] = oi[k];
      ASSERT_EQ(yv[size_t(f)], xv[size_t(ravel(ii, c.dims))]) << shape_str(c.dims) << " perm " << shape_str(c.perm);
    }
    if (c.dims == Dims{2, 32, 17, 19}) EXPECT_EQ(tactic, "transpose_tiled");
  }
}

TEST(ShapeOps, TransposeDefaultReversesAxes) {
  Tensor x = random_tensor(DataType::kFloat32, {2, 3, 4}, 20);
  auto out = run_op("Transpose", {in(x)});
  ASSERT_EQ(out[0].dims(), (Dims{4, 3, 2}));
  auto xv = x.to_double(), yv = out[0].to_double();
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(yv[size_t(c * 6 + b * 2 + a)], xv[size_t(a * 12 + b * 4 + c)]);
  EXPECT_EQ(code_of([&] { run_op("Transpose", {in(x)}, {{"perm", attr_ints({0, 0, 1})}}); }), ErrorCode::kBadInput);
}

TEST(ShapeOps, SqueezeAndUnsqueeze) {
  Tensor x = random_tensor(DataType::kFloat32, {1, 3, 1, 5}, 30);
  expect_same_values(run_op("Squeeze", {in(x), cin(ints({-2}))})[0], x, {1, 3, 5});
  expect_same_values(run_op("Squeeze", {in(x)})[0], x, {3, 5});
  EXPECT_EQ(code_of([&] { run_op("Squeeze", {in(x), cin(ints({1}))}); }), ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("Squeeze", {in(x), in(ints({0}))}); }), ErrorCode::kUnsupported);

  Tensor y = random_tensor(DataType::kInt32, {3, 4}, 31, -9, 9);
  expect_same_values(run_op("Unsqueeze", {in(y), cin(ints({-1, 0}))})[0], y, {1, 3, 4, 1});
  expect_same_values(run_op("Unsqueeze", {in(y), cin(ints({4, 1, 2}))})[0], y, {3, 1, 1, 4, 1});
  EXPECT_EQ(code_of([&] { run_op("Unsqueeze", {in(y), cin(ints({0, 0}))}); }), ErrorCode::kBadInput);
  Tensor s = Tensor::from_float({2.5f}, {});
  expect_same_values(run_op("Unsqueeze", {in(s), cin(ints({0}))})[0], s, {1});
}

TEST(ShapeOps, IdentityAndDropoutCopy) {
  Tensor s = Tensor::from_float({-3.25f}, {});  // rank 0
  expect_same_values(run_op("Identity", {in(s)})[0], s, {});
  Tensor x = random_tensor(DataType::kFloat16, {3, 4, 5}, 40);
  auto out = run_op("Dropout", {in(x), cin(Tensor::from_float({0.3f}, {}))}, {}, 2);
  expect_same_values(out[0], x, {3, 4, 5});
  ASSERT_EQ(out[1].dtype(), DataType::kBool);
  for (int64_t i = 0; i < out[1].numel(); ++i) ASSERT_EQ(out[1].data<uint8_t>()[i], 1);
  Tensor train(DataType::kBool, {});
  train.data<uint8_t>()[0] = 1;
  EXPECT_EQ(code_of([&] { run_op("Dropout", {in(x), none(), cin(train)}); }), ErrorCode::kUnsupported);
  EXPECT_EQ(code_of([&] { run_op("Dropout", {in(x), none(), in(train)}); }), ErrorCode::kUnsupported);
  // Training mode with a zero ratio drops nothing: still a copy.
  expect_same_values(run_op("Dropout", {in(x), cin(Tensor::from_float({0.f}, {})), cin(train)})[0], x, {3, 4, 5});
}

TEST(ShapeOps, ShapeSlicesAndClamps) {
  Tensor x(DataType::kFloat32, {3, 0, 5, 7});
  auto shape_of = [&](std::map<std::string, ir::Attribute> attrs) { return run_op("Shape", {in(x)}, attrs)[0].to_int64(); };
  EXPECT_EQ(shape_of({}), (std::vector<int64_t>{3, 0, 5, 7}));
  EXPECT_EQ(shape_of({{"start", attr_i(1)}, {"end", attr_i(-1)}}), (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(shape_of({{"start", attr_i(-10)}, {"end", attr_i(10)}}), (std::vector<int64_t>{3, 0, 5, 7}));
  EXPECT_EQ(shape_of({{"start", attr_i(-1)}}), (std::vector<int64_t>{7}));
  EXPECT_TRUE(shape_of({{"start", attr_i(3)}, {"end", attr_i(1)}}).empty());
  auto size = run_op("Size", {in(x)});
  EXPECT_EQ(size[0].dims(), Dims{});
  EXPECT_EQ(size[0].to_int64()[0], 0);
  EXPECT_EQ(run_op("Size", {in(random_tensor(DataType::kInt8, {2, 3}, 50))})[0].to_int64()[0], 6);
}

// Shape's output is known when the engine is built, so the shape arithmetic
// behind a Reshape folds even though the data is a runtime input.
TEST(ShapeOps, ShapeOutputIsAConstantForInference) {
  ir::Graph g;
  ir::Value* x = g.add_value("x");
  x->dims = {2, 3, 4};
  x->has_shape = true;
  g.inputs = {x};
  ir::Value* shp = g.add_value("shp");
  ir::Value* y = g.add_value("y");
  g.add_node("Shape", "s", {x}, {shp})->attrs["end"] = attr_i(2);
  g.add_node("Reshape", "r", {x, shp}, {y});
  g.outputs = {y};
  EXPECT_THROW(ir::infer_shapes(g, nullptr), Error);  // 2*3 != 24 elements: the shape was read as [2,3]
  ir::Graph g2;
  ir::Value* a = g2.add_value("a");
  a->dims = {6, 4};
  a->has_shape = true;
  ir::Value* b = g2.add_value("b");
  b->dims = {4, 6};
  b->has_shape = true;
  g2.inputs = {a, b};
  ir::Value* sb = g2.add_value("sb");
  ir::Value* o = g2.add_value("o");
  g2.add_node("Shape", "s", {b}, {sb});
  g2.add_node("Reshape", "r", {a, sb}, {o});
  g2.outputs = {o};
  ir::infer_shapes(g2, nullptr);
  EXPECT_EQ(o->dims, (Dims{4, 6}));
}

TEST(ShapeOps, ExpandBroadcastsBothWays) {
  struct Case {
    Dims in, shape, out;
  };
  const std::vector<Case> cases = {{{3, 1}, {2, 1, 6}, {2, 3, 6}},
                                   {{3, 1}, {3, 4}, {3, 4}},
                                   {{1, 4, 1, 1}, {2, 4, 5, 3}, {2, 4, 5, 3}},
                                   {{2, 1, 3}, {1}, {2, 1, 3}},
                                   {{}, {2, 0, 3}, {2, 0, 3}},
                                   {{5}, {2, 3, 1}, {2, 3, 5}}};
  uint32_t seed = 60;
  for (const Case& c : cases) {
    for (DataType dt : {DataType::kFloat32, DataType::kBool, DataType::kInt64}) {
      Tensor x = random_tensor(dt, c.in, seed++, -20, 20);
      auto out = run_op("Expand", {in(x), cin(ints(c.shape))});
      ASSERT_EQ(out[0].dims(), c.out);
      auto xv = x.to_double(), yv = out[0].to_double();
      for (int64_t f = 0; f < out[0].numel(); ++f) {
        std::vector<int64_t> oi = unravel(f, c.out), ii(c.in.size());
        for (size_t k = 0; k < c.in.size(); ++k) {
          const int64_t od = oi[k + c.out.size() - c.in.size()];
          ii[k] = c.in[k] == 1 ? 0 : od;
        }
        ASSERT_EQ(yv[size_t(f)], xv[size_t(ravel(ii, c.in))]);
      }
    }
  }
  Tensor x = random_tensor(DataType::kFloat32, {3, 2}, 70);
  EXPECT_EQ(code_of([&] { run_op("Expand", {in(x), cin(ints({3, 4}))}); }), ErrorCode::kBadInput);
}
