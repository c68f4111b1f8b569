// The GPU parity harness: one call runs an op through its CPU kernel (the
// reference) and through every CUDA tactic the registry offers for it, in each
// precision and layout the op's traits allow, on the same random inputs, and
// compares. Outputs are poisoned (NaN) before each run so an unwritten
// element fails. Without a GPU the calling test is skipped.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "backends/cuda/kernel.h"
#include "ir/graph.h"
#include "support/op_test.h"

namespace kiln::test {

bool cuda_available();
// The current GPU is sm_90 (the CUTLASS kernels are built for sm_90a only).
bool sm90_device();
// Skips the current test (visible in the skip count) when no GPU is present.
#define KILN_REQUIRE_GPU() \
  do { if (!::kiln::test::cuda_available()) GTEST_SKIP() << "no CUDA device"; } while (0)

struct ParityOptions {
  bool fp32 = true, fp16 = true;       // fp16 runs only if the op's traits list fp16 inputs
  bool linear = true, nhwc = true;     // nhwc runs only if the op takes it and some value has rank 4
  double tol_fp32 = 1e-4, tol_fp16 = 1e-2;  // max |gpu - cpu| / max(1, max |cpu|), per output
  std::string domain;                  // of the op ("" = ai.onnx)
};

struct ParityReport {
  int checked = 0;                     // (precision, layout, tactic) runs compared
  std::vector<std::string> tactics;    // names seen
};

// Adds a gtest failure per mismatching run (naming precision, layout, tactic).
ParityReport check_cuda_parity(const std::string& op_type, const std::vector<OpInput>& inputs,
                               const std::map<std::string, ir::Attribute>& attrs = {}, int num_outputs = 1,
                               const ParityOptions& opts = {});

// For tests with their own comparison rules (int8 outputs within one step):
// host bytes of row-major `t` laid out as value `v` (dtype, dims, layout)
// says, and back.
std::vector<uint8_t> to_layout(const ir::Tensor& t, const ir::Value& v);
ir::Tensor from_layout(const std::vector<uint8_t>& bytes, const ir::Value& v);

// Runs tactic `t` of node `n` once on the GPU: `in` follows n.inputs
// (row-major host tensors in each value's dtype, nullptr for omitted ones;
// constants too), outputs are filled with `poison` bytes first so unwritten
// elements show. Returns every output row-major. Throws what the kernel or a
// CUDA call throws. Uses one stream and library set shared by the process.
std::vector<ir::Tensor> run_tactic(const ir::Node& n, const cuda::Tactic& t, const std::vector<const ir::Tensor*>& in,
                                   uint8_t poison = 0xFF);

}  // namespace kiln::test
