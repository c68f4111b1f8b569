// CPU Gemm and MatMul. FP32 goes through OpenBLAS (blas_sgemm: sgemm, or
// sgemv for a single row, split across kiln's pool). Gemm adds beta * C and
// applies its fused activation (attribute `activation`, see
// src/ir/ops/gemm.cpp) in one epilogue on each block of Y right after the
// block is computed, while it is still in cache. MatMul folds the batch
// into M when B is shared by all batches, so one large GEMM replaces many
// small ones. Integer MatMul (int32/int64) and MatMulInteger use plain loops
// with wrap-around arithmetic, parallel over output rows.
#include <algorithm>
#include <type_traits>

#include "backends/cpu/conv_common.h"
#include "backends/cpu/conv_gemm.h"
#include "backends/cpu/parallel.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

// Y (m x n, row-major, ldy = n) = alpha * op(A) * op(B) + beta * Y.
void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* y) {
  blas_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, y, n);
}

class GemmKernel : public Kernel {
 public:
  explicit GemmKernel(const ir::Node& n) {
    require_dtype(n, "input", n.in(0)->dtype, {DataType::kFloat32});
    ta_ = n.i("transA", 0) != 0;
    tb_ = n.i("transB", 0) != 0;
    alpha_ = n.f("alpha", 1.f);
    beta_ = n.f("beta", 1.f);
    b_ = constant_f32(n, 1);
    c_ = constant_f32(n, 2);
    ldb_ = n.in(1)->dims[1];
    act_ = Activation::from_node(n);
    for (int64_t d : n.in(0)->dims) check_blas_dim(n, d);
    for (int64_t d : n.in(1)->dims) check_blas_dim(n, d);
  }
  std::string tactic() const override {
    return act_.kind == Activation::kNone ? "cpu.gemm.blas" : "cpu.gemm.blas+" + act_.name();
  }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& a = *in[0];
    const float* bp = b_ ? b_->data<float>() : in[1]->data<float>();
    const ir::Tensor* c = c_ ? c_.get() : (in.size() > 2 ? in[2] : nullptr);
    ir::Tensor& y = *out[0];
    const int64_t m = y.dims()[0], n = y.dims()[1];
    const int64_t k = ta_ ? a.dims()[0] : a.dims()[1];
    float* yp = y.data<float>();
    // C broadcasts onto [M, N] one way: per row a scalar (cc == 1) or a row.
    const float* cp = c && beta_ != 0.f ? c->data<float>() : nullptr;
    const int64_t cr = cp && c->rank() == 2 ? c->dims()[0] : 1, cc = cp && c->rank() >= 1 ? c->dims().back() : 1;
    BlockEpilogue epi;
    if (cp || act_.kind != Activation::kNone)
      epi = [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
        for (int64_t i = i0; i < i1; ++i) {
          float* row = yp + i * n + j0;
          const float* crow = cp ? cp + (cr == 1 ? 0 : i) * cc : nullptr;
          if (!crow) epilogue(row, j1 - j0, 0.f, nullptr, act_);
          else if (cc == 1) epilogue(row, j1 - j0, beta_ * crow[0], nullptr, act_);
          else epilogue(row, j1 - j0, 0.f, crow + j0, act_, beta_);
        }
      };
    blas_sgemm(ta_, tb_, m, n, k, alpha_, a.data<float>(), a.dims()[1], bp, ldb_, 0.f, yp, n, epi);
  }

 private:
  bool ta_ = false, tb_ = false;
  float alpha_ = 1.f, beta_ = 1.f;
  int64_t ldb_ = 0;
  Activation act_;
  std::shared_ptr<const ir::Tensor> b_, c_;
};

// Batch geometry of a numpy matmul: operands padded to matrices, batch offsets
// of A and B for every output batch.
struct MatMulPlan {
  int64_t m = 1, k = 1, n = 1;
  std::vector<int64_t> a_off, b_off;  // in matrices
  bool fold = false;                  // B shared and A batches contiguous: one GEMM with M * batch rows
};

MatMulPlan plan_matmul(const ir::Dims& ad, const ir::Dims& bd) {
  ir::Dims a = ad, b = bd;
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  MatMulPlan p;
  p.m = a[a.size() - 2];
  p.k = a.back();
  p.n = b.back();
  size_t ra = a.size() - 2, rb = b.size() - 2, r = std::max(ra, rb);
  ir::Dims ab(r, 1), bb(r, 1), ob(r, 1);
  for (size_t i = 0; i < ra; ++i) ab[r - ra + i] = a[i];
  for (size_t i = 0; i < rb; ++i) bb[r - rb + i] = b[i];
  int64_t batches = 1, b_batches = 1;
  for (size_t i = 0; i < r; ++i) {
    ob[i] = std::max(ab[i], bb[i]);
    if (ab[i] == 0 || bb[i] == 0) ob[i] = 0;
    batches *= ob[i];
    b_batches *= bb[i];
  }
  bool a_full = true;
  for (size_t i = 0; i < r; ++i) a_full = a_full && ab[i] == ob[i];
  p.fold = b_batches == 1 && a_full;
  p.a_off.resize(size_t(batches));
  p.b_off.resize(size_t(batches));
  for (int64_t t = 0; t < batches; ++t) {
    int64_t rem = t, ao = 0, bo = 0, as = 1, bs = 1;
    for (size_t i = r; i-- > 0;) {
      int64_t idx = rem % ob[i];
      rem /= ob[i];
      ao += (ab[i] == 1 ? 0 : idx) * as;
      bo += (bb[i] == 1 ? 0 : idx) * bs;
      as *= ab[i];
      bs *= bb[i];
    }
    p.a_off[size_t(t)] = ao;
    p.b_off[size_t(t)] = bo;
  }
  return p;
}

class MatMulF32 : public Kernel {
 public:
  explicit MatMulF32(const ir::Node& n)
      : plan_(plan_matmul(n.in(0)->dims, n.in(1)->dims)), a_dims_(n.in(0)->dims), b_dims_(n.in(1)->dims) {
    b_ = constant_f32(n, 1);
    check_blas_dim(n, plan_.m * int64_t(plan_.a_off.size()));
    check_blas_dim(n, plan_.k);
    check_blas_dim(n, plan_.n);
  }
  std::string tactic() const override { return plan_.fold ? "cpu.matmul.blas_folded" : "cpu.matmul.blas"; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    // Shapes differing from the build get a plan of their own (run stays const-safe).
    MatMulPlan replanned;
    const bool same = in[0]->dims() == a_dims_ && in[1]->dims() == b_dims_;
    if (!same) replanned = plan_matmul(in[0]->dims(), in[1]->dims());
    const MatMulPlan& plan = same ? plan_ : replanned;
    const float* a = in[0]->data<float>();
    const float* b = b_ ? b_->data<float>() : in[1]->data<float>();
    float* y = out[0]->data<float>();
    const int64_t m = plan.m, k = plan.k, n = plan.n, batches = int64_t(plan.a_off.size());
    if (plan.fold) {
      sgemm(false, false, m * batches, n, k, 1.f, a, k, b, n, 0.f, y);
      return;
    }
    for (int64_t t = 0; t < batches; ++t)
      sgemm(false, false, m, n, k, 1.f, a + plan.a_off[size_t(t)] * m * k, k, b + plan.b_off[size_t(t)] * k * n,
            n, 0.f, y + t * m * n);
  }

 private:
  MatMulPlan plan_;
  ir::Dims a_dims_, b_dims_;
  std::shared_ptr<const ir::Tensor> b_;
};

// Integer matmul over a plan; products wrap like the ONNX reference (numpy).
template <typename T> void int_matmul(const MatMulPlan& plan, const T* a, const T* b, T* y) {
  using U = std::make_unsigned_t<T>;  // wrap-around on overflow, no UB
  const int64_t m = plan.m, k = plan.k, n = plan.n, rows = int64_t(plan.a_off.size()) * m;
  parallel_for(rows, [&](int64_t s, int64_t e) {
    std::vector<U> acc(static_cast<size_t>(n));
    for (int64_t r = s; r < e; ++r) {
      int64_t t = r / m, i = r % m;
      const T* ar = a + plan.a_off[size_t(t)] * m * k + i * k;
      const T* bm = b + plan.b_off[size_t(t)] * k * n;
      std::fill(acc.begin(), acc.end(), U(0));
      for (int64_t q = 0; q < k; ++q) {
        U av = U(ar[q]);
        const T* br = bm + q * n;
        for (int64_t j = 0; j < n; ++j) acc[size_t(j)] += av * U(br[j]);
      }
      for (int64_t j = 0; j < n; ++j) y[r * n + j] = T(acc[size_t(j)]);
    }
  }, std::max<int64_t>(1, 4096 / std::max<int64_t>(k * n, 1)));
}

template <typename T> class MatMulInt : public Kernel {
 public:
  explicit MatMulInt(const ir::Node& n) : plan_(plan_matmul(n.in(0)->dims, n.in(1)->dims)) {}
  std::string tactic() const override { return "cpu.matmul.int_loop"; }
  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    int_matmul<T>(plan_, in[0]->data<T>(), in[1]->data<T>(), out[0]->data<T>());
  }

 private:
  MatMulPlan plan_;
};

// MatMulInteger: (A - a_zero_point) x (B - b_zero_point) in int32. Zero points
// are per tensor, per row of A or per column of B.
class MatMulInteger : public Kernel {
 public:
  explicit MatMulInteger(const ir::Node& n) : plan_(plan_matmul(n.in(0)->dims, n.in(1)->dims)) {}
  std::string tactic() const override { return "cpu.matmulinteger.int_loop"; }
  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const int64_t m = plan_.m, n = plan_.n;
    auto shifted = [](const ir::Tensor& t, const ir::Tensor* zp, int64_t period, int64_t stride) {
      std::vector<int64_t> v = t.to_int64(), z = zp && zp->numel() ? zp->to_int64() : std::vector<int64_t>{0};
      std::vector<int32_t> o(v.size());
      for (size_t i = 0; i < v.size(); ++i)
        o[i] = int32_t(v[i] - (z.size() == 1 ? z[0] : z[size_t((int64_t(i) / stride) % period)]));
      return o;
    };
    const ir::Tensor* az = in.size() > 2 ? in[2] : nullptr;
    const ir::Tensor* bz = in.size() > 3 ? in[3] : nullptr;
    std::vector<int32_t> a = shifted(*in[0], az, m, plan_.k);  // row index of A: (i / K) % M
    std::vector<int32_t> b = shifted(*in[1], bz, n, 1);        // column index of B: i % N
    int_matmul<int32_t>(plan_, a.data(), b.data(), out[0]->data<int32_t>());
  }

 private:
  MatMulPlan plan_;
};

}  // namespace

void register_gemm_kernels(KernelRegistry& r) {
  r.add("Gemm", [](const ir::Node& n) {
    return with_fp16_adapter(n, [](const ir::Node& m) -> std::unique_ptr<Kernel> {
      return std::make_unique<GemmKernel>(m);
    });
  });
  r.add("MatMul", [](const ir::Node& n) {
    return with_fp16_adapter(n, [](const ir::Node& m) -> std::unique_ptr<Kernel> {
      DataType t = m.in(0)->dtype;
      require_dtype(m, "input", t, {DataType::kFloat32, DataType::kInt32, DataType::kInt64});
      if (t == DataType::kInt32) return std::make_unique<MatMulInt<int32_t>>(m);
      if (t == DataType::kInt64) return std::make_unique<MatMulInt<int64_t>>(m);
      return std::make_unique<MatMulF32>(m);
    });
  });
  r.add("MatMulInteger", [](const ir::Node& n) -> std::unique_ptr<Kernel> { return std::make_unique<MatMulInteger>(n); });
}

}  // namespace kiln::cpu
