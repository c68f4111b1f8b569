// CUDA ConvTranspose against the CPU kernel through the parity harness:
// decoder upsamplers (2x2 and 4x4 stride 2), strides that leave outputs no
// tap reaches, dilations, pads, output padding, groups, no bias, 1-D.
#include <gtest/gtest.h>

#include <string>

#include "backends/cuda/parity.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using ir::Dims;
using test::attr_i;
using test::attr_ints;
using test::cin;
using test::in;
using test::none;
using test::random_tensor;

struct Case {
  Dims x, w;  // X [N, C, (H,) W], W [C, M/group, (kh,) kw]
  Dims strides, pads, dils, out_pad;
  int64_t group = 1;
  bool bias = true;
};

test::ParityReport run_case(const Case& c, uint32_t seed) {
  std::map<std::string, ir::Attribute> a{{"strides", attr_ints(c.strides)},
                                         {"pads", attr_ints(c.pads)},
                                         {"dilations", attr_ints(c.dils)},
                                         {"group", attr_i(c.group)}};
  if (!c.out_pad.empty()) a["output_padding"] = attr_ints(c.out_pad);
  std::vector<test::OpInput> ins{in(random_tensor(DataType::kFloat32, c.x, seed)),
                                 cin(random_tensor(DataType::kFloat32, c.w, seed + 1, -0.5, 0.5))};
  ins.push_back(c.bias ? cin(random_tensor(DataType::kFloat32, {c.w[1] * c.group}, seed + 2)) : none());
  return test::check_cuda_parity("ConvTranspose", ins, a);
}

void expect_both_tactics(const test::ParityReport& r) {
  EXPECT_GT(r.checked, 0);
  for (const char* t : {"deconv_gather_nchw", "deconv_gather_nhwc"})
    EXPECT_NE(std::find(r.tactics.begin(), r.tactics.end(), t), r.tactics.end()) << t;
}

TEST(CudaConvTranspose, DecoderUpsamplers) {
  KILN_REQUIRE_GPU();
  // DBNet's head: 2x2 stride 2, C 16 -> 16; and a 4x4 stride 2 pad 1 (FCN style).
  expect_both_tactics(run_case({{2, 16, 10, 12}, {16, 16, 2, 2}, {2, 2}, {0, 0, 0, 0}, {1, 1}, {}}, 1));
  expect_both_tactics(run_case({{1, 8, 7, 9}, {8, 5, 4, 4}, {2, 2}, {1, 1, 1, 1}, {1, 1}, {}}, 2));
}

TEST(CudaConvTranspose, StridesPadsDilationsOutputPadding) {
  KILN_REQUIRE_GPU();
  // Stride 3 with a 2-wide kernel leaves output columns no tap reaches (bias only).
  expect_both_tactics(run_case({{1, 3, 5, 6}, {3, 4, 2, 2}, {3, 3}, {0, 0, 0, 0}, {1, 1}, {}}, 3));
  expect_both_tactics(run_case({{2, 4, 6, 5}, {4, 3, 3, 3}, {2, 1}, {1, 0, 2, 1}, {2, 1}, {1, 0}}, 4));
  expect_both_tactics(run_case({{1, 6, 4, 4}, {6, 2, 3, 3}, {2, 2}, {0, 0, 0, 0}, {1, 1}, {1, 1}, 3, false}, 5));
}

TEST(CudaConvTranspose, OneDimensional) {
  KILN_REQUIRE_GPU();
  const test::ParityReport r = run_case({{2, 5, 9}, {5, 3, 4}, {2}, {1, 1}, {1}, {}}, 6);
  EXPECT_GT(r.checked, 0);
}

}  // namespace
}  // namespace kiln
