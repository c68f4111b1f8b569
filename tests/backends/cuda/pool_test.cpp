// CUDA pooling tactics against the CPU reference kernels (parity.h): every
// tactic, fp32 and fp16, linear and channels-last, on odd sizes, asymmetric
// pads, dilation, ceil_mode and count_include_pad.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backends/cuda/kernel.h"
#include "backends/cuda/parity.h"
#include "ir/op_registry.h"
#include "kiln/error.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using ir::Attribute;
using ir::Dims;
using test::attr_i;
using test::attr_ints;
using test::in;
using test::random_tensor;

using Attrs = std::map<std::string, Attribute>;

// The run compared something, with every named tactic among those run.
void expect_ran(const test::ParityReport& r, int checked, const std::vector<std::string>& tactics) {
  EXPECT_EQ(r.checked, checked);
  for (const std::string& t : tactics)
    EXPECT_NE(std::find(r.tactics.begin(), r.tactics.end(), t), r.tactics.end()) << "tactic " << t << " did not run";
}

Attrs window(Dims k, Dims s, Dims pads, Dims d = {}, int64_t ceil = 0) {
  Attrs a{{"kernel_shape", attr_ints(k)}, {"strides", attr_ints(s)}, {"pads", attr_ints(pads)}};
  if (!d.empty()) a["dilations"] = attr_ints(d);
  if (ceil) a["ceil_mode"] = attr_i(1);
  return a;
}

TEST(CudaPool, MaxPool2dPadsStrides) {
  KILN_REQUIRE_GPU();
  auto x = random_tensor(DataType::kFloat32, {2, 5, 9, 11}, 1);
  auto r = test::check_cuda_parity("MaxPool", {in(x)}, window({3, 3}, {2, 2}, {1, 1, 1, 1}));
  expect_ran(r, 8, {"pool_nchw", "pool_nhwc"});
}

TEST(CudaPool, MaxPoolCeilDilationAsymmetricPads) {
  KILN_REQUIRE_GPU();
  auto x = random_tensor(DataType::kFloat32, {1, 3, 10, 13}, 2);
  auto r = test::check_cuda_parity("MaxPool", {in(x)}, window({3, 2}, {2, 3}, {1, 0, 2, 1}, {2, 1}, 1));
  expect_ran(r, 8, {"pool_nchw", "pool_nhwc"});
}

TEST(CudaPool, MaxPoolNegativeInputsNeverLoseToPadding) {
  KILN_REQUIRE_GPU();
  // All values negative: a window half in the padding must still report the real max.
  auto x = random_tensor(DataType::kFloat32, {1, 5, 6, 7}, 3, -5.0, -1.0);
  auto r = test::check_cuda_parity("MaxPool", {in(x)}, window({3, 3}, {1, 1}, {2, 2, 2, 2}));
  expect_ran(r, 8, {"pool_nchw", "pool_nhwc"});
}

TEST(CudaPool, WindowsEntirelyInPadding) {
  KILN_REQUIRE_GPU();
  // Dilation 3 with pads 2 on a 1x1 image: no window tap lands inside.
  auto x = random_tensor(DataType::kFloat32, {1, 3, 1, 1}, 4);
  for (const char* op : {"MaxPool", "AveragePool"}) {
    auto r = test::check_cuda_parity(op, {in(x)}, window({2, 2}, {1, 1}, {2, 2, 2, 2}, {3, 3}));
    expect_ran(r, 8, {"pool_nchw", "pool_nhwc"});
  }
}

TEST(CudaPool, AveragePoolCountIncludePadAndCeil) {
  KILN_REQUIRE_GPU();
  auto x = random_tensor(DataType::kFloat32, {2, 7, 8, 9}, 5);
  for (int64_t cip : {0, 1})
    for (int64_t ceil : {0, 1}) {
      Attrs a = window({3, 3}, {2, 2}, {1, 1, 1, 1}, {}, ceil);
      a["count_include_pad"] = attr_i(cip);
      auto r = test::check_cuda_parity("AveragePool", {in(x)}, a);
      expect_ran(r, 8, {"pool_nchw", "pool_nhwc"});
    }
}

TEST(CudaPool, AveragePoolAsymmetricPadsDilation) {
  KILN_REQUIRE_GPU();
  auto x = random_tensor(DataType::kFloat32, {1, 6, 11, 10}, 6);
  Attrs a = window({2, 3}, {3, 2}, {0, 2, 1, 1}, {2, 1}, 1);
  a["count_include_pad"] = attr_i(1);
  auto r = test::check_cuda_parity("AveragePool", {in(x)}, a);
  expect_ran(r, 8, {"pool_nchw", "pool_nhwc"});
}

TEST(CudaPool, ChannelsLastVectorTactic) {
  KILN_REQUIRE_GPU();
  // C = 24: whole 16-byte groups in fp32 (4) and fp16 (8); offered for NHWC only.
  auto x = random_tensor(DataType::kFloat32, {2, 24, 9, 11}, 15);
  for (const char* op : {"MaxPool", "AveragePool", "LpPool"}) {
    SCOPED_TRACE(op);
    Attrs a = window({3, 3}, {2, 2}, {1, 0, 1, 1}, {}, 1);
    if (std::string(op) == "AveragePool") a["count_include_pad"] = attr_i(1);
    auto r = test::check_cuda_parity(op, {in(x)}, a);
    expect_ran(r, 2 + 2 + 3 + 3, {"pool_nchw", "pool_nhwc", "pool_nhwc_vec"});
  }
  // C = 12: fp32 only (three float groups; not a whole number of half groups).
  auto y = random_tensor(DataType::kFloat32, {1, 12, 7, 7}, 16);
  auto r = test::check_cuda_parity("AveragePool", {in(y)}, window({2, 2}, {1, 1}, {1, 1, 0, 0}, {2, 2}));
  expect_ran(r, 2 + 2 + 3 + 2, {"pool_nhwc_vec"});
}

TEST(CudaPool, OneAndThreeSpatialAxes) {
  KILN_REQUIRE_GPU();
  auto x1 = random_tensor(DataType::kFloat32, {2, 3, 17}, 7);
  auto x3 = random_tensor(DataType::kFloat32, {1, 2, 5, 6, 7}, 8);
  for (const char* op : {"MaxPool", "AveragePool"}) {
    auto r1 = test::check_cuda_parity(op, {in(x1)}, window({4}, {3}, {2, 1}, {}, 1));
    expect_ran(r1, 4, {"pool_nchw", "pool_nhwc"});  // rank 3: linear only
    auto r3 = test::check_cuda_parity(op, {in(x3)}, window({2, 3, 2}, {2, 2, 1}, {1, 0, 1, 0, 1, 1}));
    expect_ran(r3, 4, {"pool_nchw", "pool_nhwc"});
  }
}

TEST(CudaPool, LpPool) {
  KILN_REQUIRE_GPU();
  auto x = random_tensor(DataType::kFloat32, {2, 3, 8, 7}, 9);
  for (int64_t p : {1, 2, 3}) {
    Attrs a = window({3, 2}, {2, 2}, {1, 0, 1, 1});
    a["p"] = attr_i(p);
    auto r = test::check_cuda_parity("LpPool", {in(x)}, a);
    expect_ran(r, 8, {"pool_nchw", "pool_nhwc"});
  }
}

TEST(CudaPool, GlobalPoolsSmallPlanes) {
  KILN_REQUIRE_GPU();
  auto x = random_tensor(DataType::kFloat32, {2, 40, 7, 7}, 10);
  for (const char* op : {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}) {
    auto r = test::check_cuda_parity(op, {in(x)});
    // The vector tactic runs channels-last (40 channels: 10 float, 5 half groups).
    expect_ran(r, 10, {"global_warp", "global_channels", "global_channels_vec"});
  }
}

TEST(CudaPool, GlobalPoolsLargePlanes) {
  KILN_REQUIRE_GPU();
  // 37x41 = 1517 elements per plane: the block-per-plane tactic is offered too.
  auto x = random_tensor(DataType::kFloat32, {1, 3, 37, 41}, 11);
  for (const char* op : {"GlobalAveragePool", "GlobalMaxPool"}) {
    auto r = test::check_cuda_parity(op, {in(x)});
    expect_ran(r, 12, {"global_warp", "global_block", "global_channels"});
  }
}

TEST(CudaPool, GlobalPoolsOtherRanksAndManyChannels) {
  KILN_REQUIRE_GPU();
  auto x3 = random_tensor(DataType::kFloat32, {2, 5, 33}, 12);
  auto r3 = test::check_cuda_parity("GlobalAveragePool", {in(x3)});
  expect_ran(r3, 4, {"global_warp", "global_channels"});
  auto x5 = random_tensor(DataType::kFloat32, {1, 3, 4, 5, 6}, 13);
  auto r5 = test::check_cuda_parity("GlobalMaxPool", {in(x5)});
  expect_ran(r5, 4, {"global_warp", "global_channels"});
  // 70 channels: the channel tiles of 32 have a ragged end.
  auto xc = random_tensor(DataType::kFloat32, {3, 70, 5, 3}, 14);
  auto rc = test::check_cuda_parity("GlobalAveragePool", {in(xc)});
  expect_ran(rc, 8, {"global_warp", "global_channels"});
}

TEST(CudaPool, MaxPoolIndicesOutputIsRefused) {
  // Tactic selection needs no device: the Indices output has no CUDA kernel.
  ir::Graph g;
  ir::Value* x = g.add_value("x");
  x->dims = {1, 2, 4, 4};
  x->has_shape = true;
  g.inputs.push_back(x);
  ir::Value* y = g.add_value("y");
  ir::Value* idx = g.add_value("idx");
  ir::Node* n = g.add_node("MaxPool", "mp", {x}, {y, idx});
  n->attrs = window({2, 2}, {2, 2}, {0, 0, 0, 0});
  g.outputs = {y, idx};
  ir::infer_shapes(g, nullptr);
  EXPECT_EQ(test::code_of([&] { cuda::Registry::global().tactics(*n); }), ErrorCode::kUnsupported);
}

}  // namespace
}  // namespace kiln
