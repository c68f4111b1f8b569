// CUDA Reduce*, ArgMax/ArgMin, Softmax/LogSoftmax/Hardmax against the CPU
// reference kernels (parity.h): every tactic, fp32 and fp16, linear and
// channels-last, several axes sets, keepdims, empty reductions.
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
using test::attr_i;
using test::attr_ints;
using test::cin;
using test::in;
using test::random_tensor;

using Attrs = std::map<std::string, Attribute>;

bool ran(const test::ParityReport& r, const std::string& t) {
  return std::find(r.tactics.begin(), r.tactics.end(), t) != r.tactics.end();
}

Tensor axes_of(const std::vector<int64_t>& a) { return Tensor::from_int64(a, {int64_t(a.size())}); }

// Values k/16 for small integers k: exact in fp16, with many ties, so
// arg-reductions have one right answer in both precisions.
Tensor exact_values(Dims dims, uint32_t seed) {
  Tensor r = random_tensor(DataType::kFloat32, dims, seed, -6.0, 6.0);
  std::vector<double> v = r.to_double();
  for (double& e : v) e = double(int(e * 2.0)) / 16.0;
  return test::tensor_of(DataType::kFloat32, dims, v);
}

const char* const kReduceOps[] = {"ReduceSum", "ReduceMean",      "ReduceMax",     "ReduceMin",
                                  "ReduceProd", "ReduceL1",       "ReduceL2",      "ReduceSumSquare",
                                  "ReduceLogSum", "ReduceLogSumExp"};

// Inputs each op is defined on: LogSum wants positive sums; Prod takes
// 15/16, 1 and 17/16 (exact in fp16, so long products agree in both precisions).
Tensor input_for(const std::string& op, Dims dims, uint32_t seed) {
  if (op == "ReduceLogSum") return random_tensor(DataType::kFloat32, dims, seed, 0.1, 2.0);
  if (op == "ReduceProd") {
    std::vector<double> v = random_tensor(DataType::kFloat32, dims, seed, -1.5, 1.5).to_double();
    for (double& e : v) e = (16.0 + double(int(e))) / 16.0;
    return test::tensor_of(DataType::kFloat32, dims, v);
  }
  return random_tensor(DataType::kFloat32, dims, seed, -2.0, 2.0);
}

TEST(CudaReduce, AllOpsSeveralAxesSets) {
  KILN_REQUIRE_GPU();
  const std::vector<std::vector<int64_t>> axes_sets = {{1}, {2, 3}, {0, 2}, {-1}, {1, 3}, {0, 1, 2, 3}};
  uint32_t seed = 100;
  for (const char* op : kReduceOps)
    for (const auto& axes : axes_sets)
      for (int64_t keep : {0, 1}) {
        SCOPED_TRACE(std::string(op) + " keepdims " + std::to_string(keep) + " axes[0] " + std::to_string(axes[0]) +
                     " n " + std::to_string(axes.size()));
        Tensor x = input_for(op, {3, 5, 7, 9}, seed++);
        auto r = test::check_cuda_parity(op, {in(x), cin(axes_of(axes))}, {{"keepdims", attr_i(keep)}});
        EXPECT_GT(r.checked, 0);
        EXPECT_TRUE(ran(r, "reduce_warp"));
      }
}

TEST(CudaReduce, ManyShortRowsUseThreadTactic) {
  KILN_REQUIRE_GPU();
  Tensor x = random_tensor(DataType::kFloat32, {2, 300, 7}, 1);
  for (const char* op : {"ReduceSum", "ReduceMax", "ReduceLogSumExp"}) {
    auto r = test::check_cuda_parity(op, {in(x), cin(axes_of({2}))});
    EXPECT_EQ(r.checked, 4);  // rank 3: linear only; thread + warp
    EXPECT_TRUE(ran(r, "reduce_thread"));
    EXPECT_TRUE(ran(r, "reduce_warp"));
    auto c = test::check_cuda_parity(op, {in(x), cin(axes_of({0}))});  // column reduction
    EXPECT_TRUE(ran(c, "reduce_thread"));
  }
}

TEST(CudaReduce, LongRowsUseBlockTactic) {
  KILN_REQUIRE_GPU();
  Tensor x = random_tensor(DataType::kFloat32, {3, 4, 1111}, 2);
  for (const char* op : {"ReduceMean", "ReduceMin", "ReduceL2", "ReduceLogSumExp"}) {
    auto r = test::check_cuda_parity(op, {in(x), cin(axes_of({0, 2}))}, {{"keepdims", attr_i(0)}});
    EXPECT_TRUE(ran(r, "reduce_warp"));
    EXPECT_TRUE(ran(r, "reduce_block"));
    EXPECT_GT(r.checked, 0);
  }
  // Everything into one value.
  Tensor big = random_tensor(DataType::kFloat32, {5, 3, 17, 19}, 3);
  auto all = test::check_cuda_parity("ReduceSum", {in(big)});
  EXPECT_EQ(all.checked, 2 * 2 * 2);  // fp32/fp16 x linear/nhwc x warp, block
}

TEST(CudaReduce, VeryLongReductionsSplitAcrossBlocks) {
  KILN_REQUIRE_GPU();
  Tensor x = random_tensor(DataType::kFloat32, {3, 70001}, 12);
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceLogSumExp", "ReduceL2"}) {
    SCOPED_TRACE(op);
    auto r = test::check_cuda_parity(op, {in(x), cin(axes_of({1}))});
    EXPECT_EQ(r.checked, 2 * 3);  // fp32/fp16 x warp, block, split
    EXPECT_TRUE(ran(r, "reduce_split"));
  }
  // N, H, W of an NCHW tensor: two reduced axis groups in linear layout, one in NHWC.
  Tensor y = random_tensor(DataType::kFloat32, {4, 8, 130, 130}, 13);
  for (const char* op : {"ReduceMean", "ReduceMin", "ReduceLogSumExp"}) {
    SCOPED_TRACE(op);
    auto r = test::check_cuda_parity(op, {in(y), cin(axes_of({0, 2, 3}))});
    EXPECT_EQ(r.checked, 4 * 3);
    EXPECT_TRUE(ran(r, "reduce_split"));
  }
}

TEST(CudaReduce, NoopAndAttributeAxes) {
  KILN_REQUIRE_GPU();
  Tensor x = random_tensor(DataType::kFloat32, {2, 3, 4, 5}, 4);
  // No axes with noop_with_empty_axes: a copy, even for ops that map values.
  for (const char* op : {"ReduceSum", "ReduceL1", "ReduceLogSumExp"}) {
    auto r = test::check_cuda_parity(op, {in(x)}, {{"noop_with_empty_axes", attr_i(1)}});
    EXPECT_GT(r.checked, 0);
  }
  // No axes at all: reduce everything.
  auto all = test::check_cuda_parity("ReduceMax", {in(x)}, {{"keepdims", attr_i(0)}});
  EXPECT_GT(all.checked, 0);
  // The older attribute form of axes.
  auto attr = test::check_cuda_parity("ReduceSum", {in(x)}, {{"axes", attr_ints({1, -1})}});
  EXPECT_GT(attr.checked, 0);
}

TEST(CudaReduce, EmptyReducedAxisGivesIdentityValues) {
  KILN_REQUIRE_GPU();
  Tensor x(DataType::kFloat32, {3, 0, 4});
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceLogSumExp"}) {
    SCOPED_TRACE(op);
    auto r = test::check_cuda_parity(op, {in(x), cin(axes_of({1}))});
    EXPECT_GT(r.checked, 0);
  }
  // Empty kept axes: nothing to write.
  Tensor e(DataType::kFloat32, {0, 5});
  auto r = test::check_cuda_parity("ReduceSum", {in(e), cin(axes_of({1}))});
  EXPECT_GT(r.checked, 0);
}

TEST(CudaArg, AxesTiesAndSelectLast) {
  KILN_REQUIRE_GPU();
  Tensor x = exact_values({4, 6, 5, 7}, 5);
  for (const char* op : {"ArgMax", "ArgMin"})
    for (int64_t axis : {0, 1, -1, 2})
      for (int64_t last : {0, 1})
        for (int64_t keep : {0, 1}) {
          SCOPED_TRACE(std::string(op) + " axis " + std::to_string(axis) + " last " + std::to_string(last));
          Attrs a{{"axis", attr_i(axis)}, {"select_last_index", attr_i(last)}, {"keepdims", attr_i(keep)}};
          auto r = test::check_cuda_parity(op, {in(x)}, a);
          EXPECT_EQ(r.checked, 8);
          EXPECT_TRUE(ran(r, "arg_thread"));
          EXPECT_TRUE(ran(r, "arg_warp"));
        }
}

TEST(CudaArg, LongAxis) {
  KILN_REQUIRE_GPU();
  Tensor x = exact_values({3, 2000}, 6);
  for (int64_t last : {0, 1}) {
    auto r = test::check_cuda_parity("ArgMax", {in(x)}, {{"axis", attr_i(1)}, {"select_last_index", attr_i(last)}});
    EXPECT_EQ(r.checked, 4);
  }
}

TEST(CudaSoftmax, AxesAndModes) {
  KILN_REQUIRE_GPU();
  Tensor x = random_tensor(DataType::kFloat32, {2, 9, 5, 13}, 7, -4.0, 4.0);
  for (const char* op : {"Softmax", "LogSoftmax"})
    for (int64_t axis : {-1, 1, 2, 0}) {
      SCOPED_TRACE(std::string(op) + " axis " + std::to_string(axis));
      auto r = test::check_cuda_parity(op, {in(x)}, {{"axis", attr_i(axis)}});
      EXPECT_GT(r.checked, 0);
      EXPECT_TRUE(ran(r, "softmax_warp"));
    }
  Tensor h = exact_values({2, 9, 5, 13}, 8);
  for (int64_t axis : {-1, 1}) {
    auto r = test::check_cuda_parity("Hardmax", {in(h)}, {{"axis", attr_i(axis)}});
    EXPECT_GT(r.checked, 0);
  }
}

TEST(CudaSoftmax, RowShapes) {
  KILN_REQUIRE_GPU();
  // Many short rows: one thread per row is offered.
  Tensor rows = random_tensor(DataType::kFloat32, {300, 10}, 9, -3.0, 3.0);
  auto a = test::check_cuda_parity("Softmax", {in(rows)});
  EXPECT_TRUE(ran(a, "softmax_thread"));
  EXPECT_TRUE(ran(a, "softmax_warp"));
  // Long rows: one block per row; large logits check the max shift.
  Tensor longrow = random_tensor(DataType::kFloat32, {3, 2500}, 10, 50.0, 90.0);
  for (const char* op : {"Softmax", "LogSoftmax"}) {
    auto b = test::check_cuda_parity(op, {in(longrow)});
    EXPECT_TRUE(ran(b, "softmax_block"));
    EXPECT_EQ(b.checked, 4);
  }
  auto hb = test::check_cuda_parity("Hardmax", {in(exact_values({3, 2500}, 12))});
  EXPECT_TRUE(ran(hb, "softmax_block"));
  EXPECT_EQ(hb.checked, 4);
  // An axis of extent 1.
  Tensor one = random_tensor(DataType::kFloat32, {4, 1, 3, 3}, 11);
  auto c = test::check_cuda_parity("LogSoftmax", {in(one)}, {{"axis", attr_i(1)}});
  EXPECT_GT(c.checked, 0);
}

}  // namespace
}  // namespace kiln
