// Test-only ops in domain "kiln.test" (Relu, Add, Conv, NoKernel) so engine
// and builder tests do not depend on which built-in kernels exist yet. Their
// own domain keeps them from replacing the built-in ops of the same names.
#pragma once

#include <memory>
#include <vector>

#include "ir/graph.h"

namespace kiln::test {

constexpr const char* kTestDomain = "kiln.test";

// Registers the test ops in ir::OpRegistry and cpu::KernelRegistry (once).
void register_test_ops();

// The graph most engine tests use, shapes inferred, tactics empty:
//   inputs  X fp32[2,2,5,5] (batch axis 0), Y fp32[2,3,5,5]
//   conv = Conv(X, W[3,2,3,3], B[3]) pads 1     -> C[2,3,5,5]
//   relu = Relu(C)                              -> R
//   add  = Add(R, Y)                            -> Z
//   proj = Conv(Z, W2[3,3,1,1], <omitted bias>) -> Q
//   outputs Z, Q, R, K (an int64 constant), Y (a graph input)
// `domain` picks the test ops ("kiln.test") or the built-in ones ("").
std::unique_ptr<ir::Graph> make_test_graph(const std::string& domain = kTestDomain);

// float64 reference of the graph above: outputs Z, Q, R for inputs x, y.
struct Reference {
  std::vector<double> z, q, r;
};
Reference reference(const ir::Graph& g, const std::vector<float>& x, const std::vector<float>& y);

}  // namespace kiln::test
