// Gemm / MatMul CPU kernels against float64 (or exact integer) loops written here.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/error.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using ir::Dims;
using ir::Tensor;
using test::attr_f;
using test::attr_i;

Tensor ref_gemm(const Tensor& a, const Tensor& b, const Tensor* c, bool ta, bool tb, double alpha, double beta) {
  int64_t m = ta ? a.dims()[1] : a.dims()[0], k = ta ? a.dims()[0] : a.dims()[1];
  int64_t n = tb ? b.dims()[0] : b.dims()[1];
  auto av = a.to_double(), bv = b.to_double();
  std::vector<double> cv = c ? c->to_double() : std::vector<double>();
  std::vector<float> y;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t q = 0; q < k; ++q)
        s += av[size_t(ta ? q * m + i : i * k + q)] * bv[size_t(tb ? j * k + q : q * n + j)];
      double cval = 0;
      if (c) {
        const Dims& cd = c->dims();
        int64_t ci = cd.size() == 2 && cd[0] != 1 ? i : 0;
        int64_t cj = !cd.empty() && cd.back() != 1 ? j : 0;
        int64_t cols = cd.empty() ? 1 : cd.back();
        cval = cv[size_t(ci * cols + cj)];
      }
      y.push_back(float(alpha * s + beta * cval));
    }
  return Tensor::from_float(y, {m, n});
}

TEST(GemmCpu, MatchesReference) {
  struct C { int64_t m, k, n; Dims c; };
  const C shapes[] = {{5, 7, 3, {}}, {4, 6, 9, {9}}, {3, 5, 4, {1, 4}}, {3, 5, 4, {3, 1}},
                      {3, 5, 4, {3, 4}}, {2, 3, 4, {1}}, {6, 2, 5, {0}}, {1, 33, 17, {17}}, {1, 8, 5, {1, 1}}};
  uint32_t seed = 1;
  for (const C& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int const_b = 0; const_b < 2; ++const_b) {
          bool has_c = !(s.c.size() == 1 && s.c[0] == 0);
          Dims cdims = s.c.empty() ? Dims{} : s.c;
          SCOPED_TRACE("m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) + " n=" + std::to_string(s.n) +
                       " C=" + shape_str(cdims) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
          Tensor a = test::random_tensor(DataType::kFloat32, ta ? Dims{s.k, s.m} : Dims{s.m, s.k}, seed++);
          Tensor b = test::random_tensor(DataType::kFloat32, tb ? Dims{s.n, s.k} : Dims{s.k, s.n}, seed++);
          Tensor c = test::random_tensor(DataType::kFloat32, cdims, seed++);
          float alpha = 0.75f, beta = ta ? 1.5f : 1.0f;
          std::vector<test::OpInput> ins{test::in(a), const_b ? test::cin(b) : test::in(b)};
          if (has_c) ins.push_back(test::cin(c));
          auto got = test::run_op("Gemm", ins,
                                  {{"transA", attr_i(ta)}, {"transB", attr_i(tb)}, {"alpha", attr_f(alpha)}, {"beta", attr_f(beta)}});
          Tensor want = ref_gemm(a, b, has_c ? &c : nullptr, ta, tb, alpha, beta);
          EXPECT_LT(test::max_rel_error(got[0], want), 1e-5);
        }
}

TEST(GemmCpu, LargeShapesSplitAcrossThreads) {
  // Big enough that blas_sgemm splits rows (tall) or columns (wide) into blocks.
  struct S { int64_t m, k, n; };
  uint32_t seed = 90;
  for (S s : {S{700, 300, 5}, S{3, 300, 900}, S{257, 129, 263}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        SCOPED_TRACE(std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n) + " ta=" +
                     std::to_string(ta) + " tb=" + std::to_string(tb));
        Tensor a = test::random_tensor(DataType::kFloat32, ta ? Dims{s.k, s.m} : Dims{s.m, s.k}, seed++);
        Tensor b = test::random_tensor(DataType::kFloat32, tb ? Dims{s.n, s.k} : Dims{s.k, s.n}, seed++);
        Tensor c = test::random_tensor(DataType::kFloat32, {s.n}, seed++);
        auto got = test::run_op("Gemm", {test::in(a), test::cin(b), test::cin(c)},
                                {{"transA", attr_i(ta)}, {"transB", attr_i(tb)}, {"beta", attr_f(0.5f)}});
        EXPECT_LT(test::max_rel_error(got[0], ref_gemm(a, b, &c, ta, tb, 1.0, 0.5)), 1e-4);
      }
}

TEST(GemmCpu, BetaZeroIgnoresC) {
  Tensor a = test::random_tensor(DataType::kFloat32, {3, 4}, 5);
  Tensor b = test::random_tensor(DataType::kFloat32, {4, 2}, 6);
  Tensor c = test::random_tensor(DataType::kFloat32, {3, 2}, 7);
  auto got = test::run_op("Gemm", {test::in(a), test::in(b), test::in(c)}, {{"beta", attr_f(0.f)}});
  EXPECT_LT(test::max_rel_error(got[0], ref_gemm(a, b, nullptr, false, false, 1, 0)), 1e-5);
}

// Fused activations (attribute `activation`) applied after alpha * A * B +
// beta * C, against float64; every C broadcast form, the one-row (sgemv)
// path and shapes large enough to be split into blocks across threads.
TEST(GemmCpu, FusedActivationAfterC) {
  struct A { const char* name; std::vector<float> params; double (*f)(double); };
  const A acts[] = {
      {"Relu", {}, [](double v) { return std::max(v, 0.0); }},
      {"Clip", {-0.5f, 0.75f}, [](double v) { return std::min(std::max(v, -0.5), 0.75); }},
      {"LeakyRelu", {0.1f}, [](double v) { return v < 0 ? 0.1 * v : v; }},
      {"Sigmoid", {}, [](double v) { return 1 / (1 + std::exp(-v)); }},
      {"HardSigmoid", {0.2f, 0.5f}, [](double v) { return std::min(std::max(0.2 * v + 0.5, 0.0), 1.0); }},
      {"HardSwish", {}, [](double v) { return v * std::min(std::max(v + 3, 0.0), 6.0) / 6; }},
      {"Tanh", {}, [](double v) { return std::tanh(v); }},
      {"SiLU", {}, [](double v) { return v / (1 + std::exp(-v)); }},
  };
  struct S { int64_t m, k, n; Dims c; int ta, tb; };
  const S shapes[] = {{5, 7, 3, {3}, 0, 0},       {4, 6, 9, {4, 9}, 1, 0},   {3, 5, 4, {3, 1}, 0, 1},
                      {6, 4, 5, {}, 1, 1},         {3, 5, 4, {0}, 0, 0},      {1, 33, 17, {17}, 0, 1},
                      {257, 129, 263, {263}, 0, 1}, {700, 64, 5, {700, 5}, 0, 0}, {3, 300, 900, {1, 900}, 1, 0}};
  uint32_t seed = 400;
  for (const S& s : shapes) {
    const bool has_c = !(s.c.size() == 1 && s.c[0] == 0);
    Tensor a = test::random_tensor(DataType::kFloat32, s.ta ? Dims{s.k, s.m} : Dims{s.m, s.k}, seed++);
    Tensor b = test::random_tensor(DataType::kFloat32, s.tb ? Dims{s.n, s.k} : Dims{s.k, s.n}, seed++);
    Tensor c = test::random_tensor(DataType::kFloat32, has_c ? s.c : Dims{1}, seed++, -2, 2);
    const double alpha = 0.75, beta = 1.5;
    auto plain = ref_gemm(a, b, has_c ? &c : nullptr, s.ta, s.tb, alpha, beta).to_double();
    for (const A& act : acts) {
      SCOPED_TRACE(std::string(act.name) + " m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                   " C=" + (has_c ? shape_str(s.c) : "none"));
      std::vector<float> want;
      for (double v : plain) want.push_back(float(act.f(v)));
      std::vector<test::OpInput> ins{test::in(a), test::cin(b)};
      if (has_c) ins.push_back(test::cin(c));
      std::string tactic;
      auto got = test::run_op("Gemm", ins,
                              {{"transA", attr_i(s.ta)}, {"transB", attr_i(s.tb)}, {"alpha", attr_f(float(alpha))},
                               {"beta", attr_f(float(beta))}, {"activation", test::attr_s(act.name)},
                               {"activation_params", test::attr_floats(act.params)}},
                              1, &tactic);
      std::string lower = act.name;
      for (char& ch : lower) ch = char(std::tolower(ch));
      EXPECT_EQ(tactic, "cpu.gemm.blas+" + lower);
      EXPECT_LT(test::max_rel_error(got[0], Tensor::from_float(want, {s.m, s.n})), 1e-4);
    }
  }
}

ErrorCode error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::kInternal;
}

TEST(GemmCpu, RejectsBadShapes) {
  Tensor a(DataType::kFloat32, {3, 4}), b(DataType::kFloat32, {5, 2}), c(DataType::kFloat32, {2, 2});
  EXPECT_EQ(error_of([&] { test::run_op("Gemm", {test::in(a), test::in(b)}); }), ErrorCode::kBadInput);
  Tensor b2(DataType::kFloat32, {4, 2});
  EXPECT_EQ(error_of([&] { test::run_op("Gemm", {test::in(a), test::in(b2), test::in(c)}); }), ErrorCode::kBadInput);
  Tensor a3(DataType::kFloat32, {1, 3, 4});
  EXPECT_EQ(error_of([&] { test::run_op("Gemm", {test::in(a3), test::in(b2)}); }), ErrorCode::kBadInput);
  // Fused activation: a known name with the right number of parameters.
  EXPECT_EQ(error_of([&] { test::run_op("Gemm", {test::in(a), test::in(b2)}, {{"activation", test::attr_s("Gelu")}}); }),
            ErrorCode::kUnsupported);
  EXPECT_EQ(error_of([&] {
              test::run_op("Gemm", {test::in(a), test::in(b2)},
                           {{"activation", test::attr_s("Clip")}, {"activation_params", test::attr_floats({0.f})}});
            }),
            ErrorCode::kBadInput);
  Tensor ai(DataType::kInt32, {3, 4}), bi(DataType::kInt32, {4, 2});
  EXPECT_EQ(error_of([&] { test::run_op("Gemm", {test::in(ai), test::in(bi)}); }), ErrorCode::kUnsupported);
}

// numpy matmul in float64 / exact int64 over broadcast batches.
std::vector<double> ref_matmul(const Tensor& a, const Tensor& b, Dims& out) {
  Dims da = a.dims(), db = b.dims();
  bool va = da.size() == 1, vb = db.size() == 1;
  if (va) da.insert(da.begin(), 1);
  if (vb) db.push_back(1);
  int64_t m = da[da.size() - 2], k = da.back(), n = db.back();
  size_t r = std::max(da.size(), db.size()) - 2;
  Dims ba(r, 1), bb(r, 1), bo(r);
  for (size_t i = 0; i < da.size() - 2; ++i) ba[r - (da.size() - 2) + i] = da[i];
  for (size_t i = 0; i < db.size() - 2; ++i) bb[r - (db.size() - 2) + i] = db[i];
  int64_t batches = 1;
  for (size_t i = 0; i < r; ++i) batches *= (bo[i] = std::max(ba[i], bb[i]));
  out = bo;
  if (!va) out.push_back(m);
  if (!vb) out.push_back(n);
  auto av = a.to_double(), bv = b.to_double();
  std::vector<double> y;
  for (int64_t t = 0; t < batches; ++t) {
    int64_t rem = t, ia = 0, ib = 0, sa = 1, sb = 1;
    for (size_t i = r; i-- > 0;) {
      int64_t idx = rem % bo[i];
      rem /= bo[i];
      ia += (ba[i] == 1 ? 0 : idx) * sa;
      ib += (bb[i] == 1 ? 0 : idx) * sb;
      sa *= ba[i];
      sb *= bb[i];
    }
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t q = 0; q < k; ++q) s += av[size_t(ia * m * k + i * k + q)] * bv[size_t(ib * k * n + q * n + j)];
        y.push_back(s);
      }
  }
  return y;
}

TEST(MatMulCpu, NumpySemanticsFp32) {
  struct C { Dims a, b; const char* tactic; };
  const C cases[] = {
      {{3, 4}, {4, 5}, "cpu.matmul.blas_folded"},
      {{1, 7}, {7, 9}, "cpu.matmul.blas_folded"},
      {{4}, {4, 3}, "cpu.matmul.blas_folded"},
      {{3, 4}, {4}, "cpu.matmul.blas_folded"},
      {{6}, {6}, "cpu.matmul.blas_folded"},
      {{2, 3, 4, 5}, {5, 6}, "cpu.matmul.blas_folded"},
      {{5, 4}, {2, 4, 3}, "cpu.matmul.blas"},
      {{2, 3, 4}, {2, 4, 3}, "cpu.matmul.blas"},
      {{2, 1, 3, 4}, {1, 5, 4, 2}, "cpu.matmul.blas"},
      {{3, 1, 4}, {4, 5}, "cpu.matmul.blas_folded"},
      {{1, 2, 3, 4}, {1, 2, 4, 3}, "cpu.matmul.blas"},
      {{2, 0, 4}, {4, 3}, "cpu.matmul.blas_folded"},
  };
  uint32_t seed = 50;
  for (const C& c : cases)
    for (int const_b = 0; const_b < 2; ++const_b) {
      SCOPED_TRACE(shape_str(c.a) + " x " + shape_str(c.b));
      Tensor a = test::random_tensor(DataType::kFloat32, c.a, seed++);
      Tensor b = test::random_tensor(DataType::kFloat32, c.b, seed++);
      std::string tactic;
      auto got = test::run_op("MatMul", {test::in(a), const_b ? test::cin(b) : test::in(b)}, {}, 1, &tactic);
      Dims od;
      auto want = ref_matmul(a, b, od);
      EXPECT_EQ(tactic, c.tactic);
      EXPECT_LT(test::max_rel_error(got[0], Tensor::from_float(std::vector<float>(want.begin(), want.end()), od)), 1e-5);
    }
}

template <typename T> Tensor int_tensor(DataType dt, Dims d, std::vector<int64_t> v) {
  Tensor t(dt, std::move(d));
  for (size_t i = 0; i < v.size(); ++i) t.data<T>()[i] = T(v[i]);
  return t;
}

TEST(MatMulCpu, IntegerTypesExact) {
  for (DataType dt : {DataType::kInt32, DataType::kInt64}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor a = test::random_tensor(dt, {2, 3, 5}, 7, -100, 100);
    Tensor b = test::random_tensor(dt, {5, 4}, 8, -100, 100);
    auto got = test::run_op("MatMul", {test::in(a), test::in(b)});
    Dims od;
    auto want = ref_matmul(a, b, od);
    ASSERT_EQ(got[0].dims(), od);
    ASSERT_EQ(got[0].dtype(), dt);
    auto g = got[0].to_int64();
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(g[i], int64_t(want[i])) << i;
  }
  // int32 products wrap modulo 2^32 like the ONNX reference (numpy) does.
  Tensor a = int_tensor<int32_t>(DataType::kInt32, {1, 2}, {65536, 3});
  Tensor b = int_tensor<int32_t>(DataType::kInt32, {2, 1}, {65536, 4});
  auto got = test::run_op("MatMul", {test::in(a), test::in(b)});
  EXPECT_EQ(got[0].data<int32_t>()[0], 12);
}

TEST(MatMulIntegerCpu, ZeroPointsPerTensorRowAndColumn) {
  // test_matmulinteger from the ONNX suite.
  Tensor a(DataType::kUInt8, {4, 3}), b(DataType::kUInt8, {3, 2});
  const uint8_t av[] = {11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0}, bv[] = {1, 4, 2, 5, 3, 6};
  std::copy(av, av + 12, a.data<uint8_t>());
  std::copy(bv, bv + 6, b.data<uint8_t>());
  Tensor az(DataType::kUInt8, {1}), bz(DataType::kUInt8, {1});
  az.data<uint8_t>()[0] = 12;
  auto got = test::run_op("MatMulInteger", {test::in(a), test::in(b), test::in(az), test::in(bz)});
  EXPECT_EQ(got[0].to_int64(), (std::vector<int64_t>{-38, -83, -44, -98, -50, -113, -56, -128}));
  // Per-row A and per-column B zero points, batched int8 A.
  Tensor a3 = test::random_tensor(DataType::kInt8, {2, 3, 5}, 9, -128, 127);
  Tensor b2 = test::random_tensor(DataType::kUInt8, {5, 4}, 10, 0, 255);
  Tensor azr(DataType::kInt8, {3}), bzc(DataType::kUInt8, {4});
  for (int i = 0; i < 3; ++i) azr.data<int8_t>()[i] = int8_t(i * 7 - 5);
  for (int i = 0; i < 4; ++i) bzc.data<uint8_t>()[i] = uint8_t(100 + i);
  got = test::run_op("MatMulInteger", {test::in(a3), test::in(b2), test::in(azr), test::in(bzc)});
  auto ai = a3.to_int64(), bi = b2.to_int64();
  std::vector<int64_t> want;
  for (int t = 0; t < 2; ++t)
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j) {
        int64_t s = 0;
        for (int q = 0; q < 5; ++q) s += (ai[size_t(t * 15 + i * 5 + q)] - (i * 7 - 5)) * (bi[size_t(q * 4 + j)] - (100 + j));
        want.push_back(s);
      }
  ASSERT_EQ(got[0].dims(), (Dims{2, 3, 4}));
  EXPECT_EQ(got[0].to_int64(), want);
}

TEST(GemmCpu, Fp16ThroughFp32) {
  Tensor a = test::random_tensor(DataType::kFloat16, {3, 5}, 31);
  Tensor b = test::random_tensor(DataType::kFloat16, {5, 4}, 32);
  auto got = test::run_op("MatMul", {test::in(a), test::cin(b)});
  ASSERT_EQ(got[0].dtype(), DataType::kFloat16);
  Dims od;
  auto want = ref_matmul(a, b, od);
  auto g = got[0].to_double();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], want[i], 1e-2 * std::max(1.0, std::fabs(want[i])));
}

TEST(MatMulCpu, RejectsBadInputs) {
  Tensor a(DataType::kFloat32, {3, 4}), b(DataType::kFloat32, {5, 2});
  EXPECT_EQ(error_of([&] { test::run_op("MatMul", {test::in(a), test::in(b)}); }), ErrorCode::kBadInput);
  Tensor c(DataType::kFloat32, {2, 3, 4}), d(DataType::kFloat32, {3, 4, 2});
  EXPECT_EQ(error_of([&] { test::run_op("MatMul", {test::in(c), test::in(d)}); }), ErrorCode::kBadInput);
  Tensor e(DataType::kInt8, {3, 4}), f(DataType::kInt8, {4, 2});
  EXPECT_EQ(error_of([&] { test::run_op("MatMul", {test::in(e), test::in(f)}); }), ErrorCode::kUnsupported);
  Tensor g(DataType::kInt32, {4, 2});
  EXPECT_EQ(error_of([&] { test::run_op("MatMul", {test::in(a), test::in(g)}); }), ErrorCode::kBadInput);
}

}  // namespace
}  // namespace kiln
