// CUDA data-movement kernels (Transpose, Slice, Expand, Tile, Concat, Split,
// DepthToSpace/SpaceToDepth, the reshaping ops, Gather, Pad) against the CPU
// kernels through the parity harness, in fp32/fp16 and linear/channels-last,
// plus integer data where the copy moves other element sizes.
#include <gtest/gtest.h>

#include <algorithm>

#include "backends/cuda/parity.h"

using namespace kiln;
using namespace kiln::test;
using ir::Dims;
using ir::Tensor;

namespace {

Tensor ints(const std::vector<int64_t>& v) { return Tensor::from_int64(v, {int64_t(v.size())}); }
Tensor rnd(Dims d, uint32_t seed, DataType dt = DataType::kFloat32) { return random_tensor(dt, d, seed, -10, 10); }

bool has(const ParityReport& r, const std::string& name) {
  return std::find(r.tactics.begin(), r.tactics.end(), name) != r.tactics.end();
}

ParityReport parity(const std::string& op, const std::vector<OpInput>& ins,
                    const std::map<std::string, ir::Attribute>& attrs = {}, int outputs = 1,
                    const std::string& tactic = "") {
  ParityReport r = check_cuda_parity(op, ins, attrs, outputs);
  EXPECT_GT(r.checked, 0) << op;
  if (!tactic.empty()) {
    EXPECT_TRUE(has(r, tactic)) << op << " did not offer " << tactic;
  }
  return r;
}

}  // namespace

TEST(CudaTensor, TransposeTiledAndStrided) {
  KILN_REQUIRE_GPU();
  struct Case { Dims d; std::vector<int64_t> perm; const char* tactic; };
  const Case cases[] = {
      {{2, 3, 5, 7}, {0, 2, 3, 1}, "transpose_tiled"},
      {{2, 37, 9, 13}, {0, 3, 1, 2}, "transpose_tiled"},
      {{2, 3, 5, 7}, {3, 2, 1, 0}, "transpose_strided"},
      {{4, 33, 65}, {0, 2, 1}, "transpose_tiled"},
      {{67, 129}, {1, 0}, "transpose_tiled"},
      {{2, 3, 4, 5, 6}, {0, 1, 2, 3, 4}, "transpose_memcpy"},
      {{2, 3, 4, 5, 6}, {4, 0, 3, 1, 2}, "transpose_strided"},
  };
  uint32_t seed = 1;
  for (const Case& c : cases) {
    SCOPED_TRACE(shape_str(c.d) + " perm " + shape_str(c.perm));
    parity("Transpose", {in(rnd(c.d, seed++))}, {{"perm", attr_ints(c.perm)}}, 1, c.tactic);
  }
  parity("Transpose", {in(rnd({3, 4, 5}, seed++))});  // default: reversed axes
  for (DataType dt : {DataType::kInt8, DataType::kInt64})
    parity("Transpose", {in(rnd({2, 17, 6, 5}, seed++, dt))}, {{"perm", attr_ints({0, 2, 3, 1})}});
}

TEST(CudaTensor, SliceWithStepsAxesAndClamping) {
  KILN_REQUIRE_GPU();
  const Tensor x = rnd({5, 7, 9, 4}, 1);
  struct Case { std::vector<int64_t> starts, ends, axes, steps; };
  const Case cases[] = {
      {{1, 2}, {4, 100}, {1, 2}, {1, 2}},
      {{-1}, {-1000}, {2}, {-2}},
      {{0, 1, 0, 0}, {5, 6, 9, 4}, {0, 1, 2, 3}, {2, 1, 3, 1}},
      {{3}, {-1}, {-1}, {1}},
      {{4, 6}, {0, 0}, {0, 1}, {-1, -3}},
      {{0}, {2}, {3}, {1}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("starts " + shape_str(c.starts) + " axes " + shape_str(c.axes) + " steps " + shape_str(c.steps));
    parity("Slice", {in(x), cin(ints(c.starts)), cin(ints(c.ends)), cin(ints(c.axes)), cin(ints(c.steps))});
  }
  parity("Slice", {in(rnd({6, 40}, 2, DataType::kInt32)), cin(ints({0, 8})), cin(ints({6, 40}))});  // rows
}

TEST(CudaTensor, ExpandAndTile) {
  KILN_REQUIRE_GPU();
  parity("Expand", {in(rnd({3, 1, 5}, 1)), cin(ints({2, 3, 4, 5}))});
  parity("Expand", {in(rnd({1, 8, 1, 1}, 2)), cin(ints({2, 8, 3, 3}))});
  parity("Expand", {in(rnd({1}, 3)), cin(ints({2, 3, 4, 5}))});
  parity("Expand", {in(rnd({2, 3, 4, 5}, 4)), cin(ints({1, 1, 1}))}, {}, 1, "expand_memcpy");
  parity("Tile", {in(rnd({2, 3, 1, 4}, 5)), cin(ints({2, 1, 3, 2}))});
  parity("Tile", {in(rnd({3, 5}, 6, DataType::kInt64)), cin(ints({4, 3}))});
  parity("Tile", {in(rnd({2, 3, 5}, 7)), cin(ints({1, 1, 1}))});
}

TEST(CudaTensor, ConcatAxesAndManyInputs) {
  KILN_REQUIRE_GPU();
  // Channel concat of feature maps (one launch of several jobs; channels-last too).
  parity("Concat", {in(rnd({2, 3, 5, 5}, 1)), in(rnd({2, 8, 5, 5}, 2)), in(rnd({2, 1, 5, 5}, 3))},
         {{"axis", attr_i(1)}});
  // Five inputs: more than one launch's worth of jobs; 16-float rows widen.
  std::vector<OpInput> five;
  for (int k = 0; k < 5; ++k) five.push_back(in(rnd({4, 16 * (k + 1)}, uint32_t(10 + k))));
  parity("Concat", five, {{"axis", attr_i(-1)}}, 1, "concat_strided");
  parity("Concat", {in(rnd({2, 3, 4}, 4)), in(rnd({5, 3, 4}, 5))}, {{"axis", attr_i(0)}}, 1, "concat_memcpy");
  parity("Concat", {in(rnd({2, 3, 4, 5}, 6, DataType::kInt64)), in(rnd({2, 3, 4, 2}, 7, DataType::kInt64))},
         {{"axis", attr_i(3)}});
  parity("Concat", {in(rnd({1, 4, 3, 3}, 8)), in(rnd({1, 0, 3, 3}, 9)), in(rnd({1, 2, 3, 3}, 10))},
         {{"axis", attr_i(1)}});
}

TEST(CudaTensor, SplitSizesAndEvenParts) {
  KILN_REQUIRE_GPU();
  parity("Split", {in(rnd({2, 12, 5, 3}, 1)), cin(ints({2, 7, 3}))}, {{"axis", attr_i(1)}}, 3);
  parity("Split", {in(rnd({7, 6}, 2))}, {{"axis", attr_i(0)}, {"num_outputs", attr_i(3)}}, 3);
  std::vector<int64_t> five(5, 4);
  parity("Split", {in(rnd({3, 20}, 3, DataType::kInt32)), cin(ints(five))}, {{"axis", attr_i(1)}}, 5);
}

TEST(CudaTensor, ReshapingOpsFollowLogicalOrder) {
  KILN_REQUIRE_GPU();
  const Tensor x = rnd({2, 4, 3, 5}, 1);
  parity("Reshape", {in(x), cin(ints({2, 60}))});
  parity("Reshape", {in(x), cin(ints({2, 6, 2, 5}))});  // rank 4 to rank 4: channels-last on both sides
  parity("Reshape", {in(rnd({8, 15}, 2)), cin(ints({2, 4, 3, 5}))});
  parity("Flatten", {in(x)}, {{"axis", attr_i(2)}});
  parity("Squeeze", {in(rnd({2, 1, 3, 1}, 3)), cin(ints({1, 3}))});
  parity("Unsqueeze", {in(rnd({2, 3, 5}, 4)), cin(ints({1}))});
  parity("Identity", {in(x)}, {}, 1, "reshape_memcpy");
  parity("Identity", {in(rnd({3, 7}, 5, DataType::kUInt8))});
}

TEST(CudaTensor, DepthToSpaceAndBack) {
  KILN_REQUIRE_GPU();
  const Tensor x = rnd({2, 12, 3, 5}, 1);
  parity("DepthToSpace", {in(x)}, {{"blocksize", attr_i(2)}, {"mode", attr_s("DCR")}});
  parity("DepthToSpace", {in(x)}, {{"blocksize", attr_i(2)}, {"mode", attr_s("CRD")}});
  parity("SpaceToDepth", {in(rnd({2, 3, 6, 4}, 2))}, {{"blocksize", attr_i(2)}});
}

TEST(CudaTensor, GatherConstantAndRuntimeIndices) {
  KILN_REQUIRE_GPU();
  const Tensor x = rnd({5, 4, 3, 6}, 1);
  parity("Gather", {in(x), cin(ints({4, -1, 0, 2}))}, {{"axis", attr_i(0)}}, 1, "gather");
  parity("Gather", {in(x), in(tensor_of(DataType::kInt32, {2, 2}, {3, -4, 1, 0}))}, {{"axis", attr_i(1)}});
  parity("Gather", {in(x), in(tensor_of(DataType::kInt64, {3}, {5, -6, 2}))}, {{"axis", attr_i(-1)}});
  parity("Gather", {in(x), cin(tensor_of(DataType::kInt64, {}, {2}))}, {{"axis", attr_i(2)}});  // scalar index
  parity("Gather", {in(rnd({10, 7}, 2, DataType::kInt64)), in(tensor_of(DataType::kInt64, {1, 3, 2, 2},
                                                                        {9, 0, 1, 2, 3, 4, 5, 6, 7, 8, -1, -10}))});
}

TEST(CudaTensor, PadModes) {
  KILN_REQUIRE_GPU();
  const Tensor x = rnd({2, 3, 5, 4}, 1);
  const Tensor pads = ints({0, 1, 2, 3, 1, 0, 1, 2});
  parity("Pad", {in(x), cin(pads)}, {}, 1, "pad_constant");
  parity("Pad", {in(x), cin(pads), cin(Tensor::from_float({1.5f}, {}))});
  for (const char* mode : {"reflect", "edge", "wrap"}) {
    SCOPED_TRACE(mode);
    parity("Pad", {in(x), cin(ints({0, 0, 3, 2, 0, 0, 2, 3}))}, {{"mode", attr_s(mode)}}, 1,
           std::string("pad_") + mode);
  }
  parity("Pad", {in(x), cin(ints({0, -1, 1, -1, 0, 0, -2, 2}))});  // negative pads crop
  parity("Pad", {in(rnd({2, 3, 4, 1}, 3)), cin(ints({0, 1, 0, 0, 0, 0, 1, 1}))});  // rows of 2: packs span rows
  parity("Pad", {in(rnd({3, 5}, 2, DataType::kInt64)), cin(ints({1, 2, 0, 1}))});
}
