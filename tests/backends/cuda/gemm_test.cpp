// CUDA Gemm / MatMul (cuBLASLt) against the CPU kernel through the parity
// harness: every transpose combination, each C shape (constant and runtime),
// fused activations, and MatMul's batch forms (folded, strided, broadcast).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "backends/cuda/parity.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using ir::Dims;
using test::attr_f;
using test::attr_floats;
using test::attr_i;
using test::attr_s;
using test::check_cuda_parity;
using test::cin;
using test::in;
using test::random_tensor;

using Attrs = std::map<std::string, ir::Attribute>;

bool has_tactic(const test::ParityReport& r, const std::string& name) {
  return std::find(r.tactics.begin(), r.tactics.end(), name) != r.tactics.end();
}

test::ParityReport gemm(int64_t m, int64_t n, int64_t k, bool ta, bool tb, const Dims* c, bool c_const, Attrs a,
                        uint32_t seed) {
  a["transA"] = attr_i(ta);
  a["transB"] = attr_i(tb);
  std::vector<test::OpInput> ins{in(random_tensor(DataType::kFloat32, ta ? Dims{k, m} : Dims{m, k}, seed)),
                                 cin(random_tensor(DataType::kFloat32, tb ? Dims{n, k} : Dims{k, n}, seed + 1))};
  if (c) {
    ir::Tensor t = random_tensor(DataType::kFloat32, *c, seed + 2);
    ins.push_back(c_const ? cin(t) : in(t));
  }
  test::ParityReport rep = check_cuda_parity("Gemm", ins, a);
  EXPECT_GT(rep.checked, 0);
  EXPECT_TRUE(has_tactic(rep, "cublaslt:0"));
  return rep;
}

TEST(CudaGemm, EveryTransposeCombination) {
  KILN_REQUIRE_GPU();
  const Dims c{7};
  uint32_t seed = 1;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) gemm(5, 7, 3, ta, tb, &c, true, {{"alpha", attr_f(0.5f)}, {"beta", attr_f(2.f)}}, seed += 3);
  // A classifier head: [1, 2048] x [1000, 2048]^T + bias.
  const Dims head{1000};
  gemm(1, 1000, 2048, false, true, &head, true, {}, 20);
}

TEST(CudaGemm, EveryBiasShape) {
  KILN_REQUIRE_GPU();
  const int64_t m = 6, n = 10, k = 17;
  uint32_t seed = 30;
  for (const Dims& c : {Dims{n}, Dims{1, n}, Dims{m, n}, Dims{m, 1}, Dims{}, Dims{1}, Dims{1, 1}})
    for (bool c_const : {true, false}) {
      SCOPED_TRACE(shape_str(c) + (c_const ? " constant" : " runtime"));
      gemm(m, n, k, false, true, &c, c_const, {{"beta", attr_f(0.75f)}}, seed += 3);
    }
  gemm(m, n, k, true, false, nullptr, false, {{"alpha", attr_f(-1.5f)}}, 60);
}

TEST(CudaGemm, FusedActivations) {
  KILN_REQUIRE_GPU();
  const Dims c{9};
  uint32_t seed = 70;
  for (const auto& [name, params] : std::vector<std::pair<std::string, std::vector<float>>>{
           {"Relu", {}}, {"Sigmoid", {}}, {"HardSwish", {}}, {"Clip", {-0.2f, 0.4f}}, {"LeakyRelu", {0.2f}}})
    for (bool c_const : {true, false}) {
      SCOPED_TRACE(name);
      gemm(4, 9, 33, false, false, &c, c_const,
           {{"activation", attr_s(name)}, {"activation_params", attr_floats(params)}}, seed += 3);
    }
}

test::ParityReport matmul(const Dims& a, const Dims& b, bool b_const, uint32_t seed) {
  SCOPED_TRACE(shape_str(a) + " x " + shape_str(b));
  ir::Tensor bt = random_tensor(DataType::kFloat32, b, seed + 1);
  test::ParityReport rep =
      check_cuda_parity("MatMul", {in(random_tensor(DataType::kFloat32, a, seed)), b_const ? cin(bt) : in(bt)});
  EXPECT_GT(rep.checked, 0);
  EXPECT_TRUE(has_tactic(rep, "cublaslt:0"));
  return rep;
}

TEST(CudaMatMul, TwoDimensionalAndVectors) {
  KILN_REQUIRE_GPU();
  matmul({5, 3}, {3, 7}, true, 100);
  matmul({64, 96}, {96, 33}, false, 101);
  matmul({3}, {3, 7}, false, 102);
  matmul({5, 3}, {3}, true, 103);
  matmul({8}, {8}, false, 104);
}

TEST(CudaMatMul, BatchedForms) {
  KILN_REQUIRE_GPU();
  matmul({2, 3, 5, 4}, {4, 6}, true, 110);          // B shared: folded into M
  matmul({4, 5, 7}, {4, 7, 3}, false, 111);         // strided batch, both full
  matmul({1, 5, 7}, {3, 7, 3}, false, 112);         // A broadcast over the batch (stride 0)
  matmul({3, 5, 7}, {1, 7, 3}, false, 113);         // B broadcast
  matmul({2, 1, 5, 4}, {3, 4, 6}, false, 114);      // general broadcast: one GEMM per batch
  matmul({2, 3, 9, 8}, {2, 3, 8, 16}, false, 115);  // attention-like
}

}  // namespace
}  // namespace kiln
