// Gemm and MatMul through cuBLASLt. Node semantics: src/ir/ops/gemm.cpp
// (Y = act(alpha * op(A) op(B) + beta * C), C broadcast onto [M, N]).
//
// kiln's matrices are row-major; cuBLASLt's are column-major, so each call
// computes Y^T = op(B)^T op(A)^T: B is passed as cuBLASLt's A and A as its
// B, and Y^T (N x M, ld N) is exactly Y in row-major order.
//
// C goes where it costs least: a full [M, N] C is cuBLASLt's C (scaled by
// beta); a constant row vector (or scalar) becomes cuBLASLt's bias, scaled by
// beta at load, so bias and ReLU run in the GEMM's own epilogue; anything else
// (a runtime vector, a column [M, 1]) and every other activation runs in one
// launch of the shared epilogue (epilogue.h). MatMul folds its batch into M
// when B is shared, uses a strided batch when each operand is either shared
// or full, and otherwise issues one GEMM per batch.
//
// Tactics "cublaslt:<i>": the i-th algorithm of cuBLASLt's heuristic for the
// exact descriptors (the builder times them).
#include <cstring>
#include <mutex>
#include <numeric>

#include "backends/cuda/common.h"
#include "backends/cuda/epilogue.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/libraries.h"
#include "kiln/error.h"

namespace kiln::cuda {

namespace {

constexpr size_t kWorkspaceCap = size_t(32) << 20;
constexpr int kMaxAlgos = 6;
// Alignment the engine's buffers are assumed to have; cuBLASLt is told so,
// which keeps it from choosing kernels that need 256-byte-aligned operands.
constexpr int64_t kBaseAlign = 16;

struct LtPlan {
  bool half = false;
  bool ta = false, tb = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.f, beta = 0.f;
  int64_t batch = 1, stride_a = 0, stride_b = 0;  // strided batch (elements)
  std::vector<int64_t> a_off, b_off;               // one GEMM per entry when not empty (elements)
  bool c_matrix = false;                           // C is cuBLASLt's C, scaled by beta
  std::vector<uint8_t> bias;                       // cuBLASLt bias [N] in the node's dtype (beta applied)
  Epilogue epi;                                    // runs after the GEMM when need_epi
  bool need_epi = false;
  bool tf32 = false;
  int64_t align = kBaseAlign;                      // bytes every operand pointer is aligned to
};

cudaDataType_t cuda_type(const LtPlan& p) { return p.half ? CUDA_R_16F : CUDA_R_32F; }

struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;  // cuBLASLt's roles
  cublasLtMatmulPreference_t pref = nullptr;

  LtDescs(const LtPlan& p, const void* bias_ptr) {
    try {
      KILN_CUBLAS_CHECK(cublasLtMatmulDescCreate(
          &op, p.tf32 && !p.half ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F));
      // cuBLASLt's A is our B: op T exactly when B is stored transposed.
      const cublasOperation_t opa = p.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = p.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
      KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
      KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
      const bool relu = !p.need_epi && p.epi.act.kind == Activation::kRelu;
      const bool has_bias = !p.bias.empty();
      cublasLtEpilogue_t e = has_bias ? (relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                      : (relu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_DEFAULT);
      KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)));
      if (has_bias && bias_ptr)
        KILN_CUBLAS_CHECK(
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr)));
      const cudaDataType_t t = cuda_type(p);
      const uint64_t n = uint64_t(p.n), m = uint64_t(p.m), k = uint64_t(p.k);
      if (p.tb) KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a, t, k, n, int64_t(k)));
      else KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a, t, n, k, int64_t(n)));
      if (p.ta) KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b, t, m, k, int64_t(m)));
      else KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b, t, k, m, int64_t(k)));
      KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c, t, n, m, int64_t(n)));
      KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d, t, n, m, int64_t(n)));
      if (p.batch > 1) {
        const int32_t count = int32_t(p.batch);
        const int64_t sd = p.m * p.n;
        auto batched = [&](cublasLtMatrixLayout_t l, int64_t stride) {
          KILN_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
          KILN_CUBLAS_CHECK(
              cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
        };
        batched(a, p.stride_b);
        batched(b, p.stride_a);
        batched(c, sd);
        batched(d, sd);
      }
      KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
      const uint64_t cap = kWorkspaceCap;
      KILN_CUBLAS_CHECK(
          cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &cap, sizeof(cap)));
      const uint32_t al = uint32_t(p.align);
      for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
        KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al)));
    } catch (...) {
      release();
      throw;
    }
  }
  ~LtDescs() { release(); }
  LtDescs(const LtDescs&) = delete;
  LtDescs& operator=(const LtDescs&) = delete;

 private:
  void release() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    for (cublasLtMatrixLayout_t l : {a, b, c, d})
      if (l) cublasLtMatrixLayoutDestroy(l);
    if (op) cublasLtMatmulDescDestroy(op);
    pref = nullptr, a = b = c = d = nullptr, op = nullptr;
  }
};

float value_at(const ir::Tensor& t, int64_t i) {
  return t.dtype() == DataType::kFloat16 ? half_to_float(t.data<uint16_t>()[i]) : t.data<float>()[i];
}

// Gemm's C: where it goes, and the epilogue that finishes the node.
void plan_c(const ir::Node& n, LtPlan& p) {
  p.epi.dtype = p.half ? DataType::kFloat16 : DataType::kFloat32;
  const int64_t dims[4] = {1, 1, p.m, p.n}, st[4] = {0, 0, p.n, 1};
  for (int a = 0; a < 4; ++a) {
    p.epi.dims[a] = p.epi.src_dims[a] = dims[a];
    p.epi.src_strides[a] = p.epi.dst_strides[a] = st[a];
  }
  p.epi.act = Activation::from_node(n);
  const ir::Value* c = n.in(2);
  if (c && p.beta != 0.f) {
    const int64_t cr = c->dims.size() == 2 ? c->dims[0] : 1, cc = c->dims.empty() ? 1 : c->dims.back();
    const ir::Tensor* ct = constant_input(n, 2);
    if (cr == p.m && cc == p.n) {
      p.c_matrix = true;
    } else if (cr == 1 && ct && p.k > 0) {
      const size_t es = p.half ? 2 : 4;
      p.bias.resize(size_t(p.n) * es);
      for (int64_t j = 0; j < p.n; ++j) {
        const float v = p.beta * value_at(*ct, cc == 1 ? 0 : j);
        if (p.half) {
          const uint16_t h = float_to_half(v);
          std::memcpy(&p.bias[size_t(j) * es], &h, es);
        } else {
          std::memcpy(&p.bias[size_t(j) * es], &v, es);
        }
      }
    } else {
      p.epi.has_z = true;
      p.epi.z_scale = p.beta;
      p.epi.z_strides[2] = cr == 1 ? 0 : cc;
      p.epi.z_strides[3] = cc == 1 ? 0 : 1;
    }
  }
  // cuBLASLt fuses ReLU; everything else runs in the shared epilogue.
  const Activation::Kind k = p.epi.act.kind;
  p.need_epi = p.epi.has_z || (k != Activation::kNone && k != Activation::kRelu) || p.k == 0;
  if (p.k == 0 && p.c_matrix) {  // no GEMM runs: the epilogue adds C itself
    p.c_matrix = false;
    p.epi.has_z = true;
    p.epi.z_scale = p.beta;
    p.epi.z_strides[2] = p.n;
    p.epi.z_strides[3] = 1;
  }
}

// MatMul's batch: folded into M, strided, or one GEMM per batch.
void plan_batch(const ir::Dims& ad, const ir::Dims& bd, LtPlan& p) {
  ir::Dims a = ad, b = bd;
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  p.m = a[a.size() - 2];
  p.k = a.back();
  p.n = b.back();
  const size_t ra = a.size() - 2, rb = b.size() - 2, r = std::max(ra, rb);
  ir::Dims ab(r, 1), bb(r, 1), ob(r, 1);
  for (size_t i = 0; i < ra; ++i) ab[r - ra + i] = a[i];
  for (size_t i = 0; i < rb; ++i) bb[r - rb + i] = b[i];
  int64_t batches = 1, na = 1, nb = 1;
  for (size_t i = 0; i < r; ++i) {
    ob[i] = ab[i] == 0 || bb[i] == 0 ? 0 : std::max(ab[i], bb[i]);
    batches *= ob[i];
    na *= ab[i];
    nb *= bb[i];
  }
  const bool a_full = ab == ob, b_full = bb == ob;
  if (batches <= 1 || (nb == 1 && a_full)) {
    p.m *= batches;  // B shared: the batches are just more rows of A
    return;
  }
  if ((a_full || na == 1) && (b_full || nb == 1) && batches <= INT32_MAX) {
    p.batch = batches;
    p.stride_a = na == 1 ? 0 : p.m * p.k;
    p.stride_b = nb == 1 ? 0 : p.k * p.n;
    return;
  }
  for (int64_t t = 0; t < batches; ++t) {
    int64_t rem = t, ao = 0, bo = 0, as = 1, bs = 1;
    for (size_t i = r; i-- > 0;) {
      const int64_t idx = rem % ob[i];
      rem /= ob[i];
      ao += (ab[i] == 1 ? 0 : idx) * as;
      bo += (bb[i] == 1 ? 0 : idx) * bs;
      as *= ab[i];
      bs *= bb[i];
    }
    p.a_off.push_back(ao * p.m * p.k);
    p.b_off.push_back(bo * p.k * p.n);
  }
}

std::mutex& query_mutex() {
  static std::mutex m;
  return m;
}

cublasLtHandle_t query_handle() {
  static cublasLtHandle_t h = [] {
    cublasLtHandle_t c = nullptr;
    KILN_CUBLAS_CHECK(cublasLtCreate(&c));
    return c;
  }();
  return h;
}

class LtKernel : public Kernel {
 public:
  LtKernel(const LtPlan& p, const cublasLtMatmulAlgo_t* algo, size_t ws)
      : p_(p), ws_(ws), has_algo_(algo != nullptr) {
    if (algo) algo_ = *algo;
    if (!p_.bias.empty()) bias_ = upload(p_.bias.data(), p_.bias.size());
    if (has_algo_) d_.reset(new LtDescs(p_, bias_.get()));
  }
  size_t workspace_bytes() const override { return ws_; }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    const auto* a = static_cast<const uint8_t*>(in[0]);
    const auto* b = static_cast<const uint8_t*>(in[1]);
    const void* c = in.size() > 2 ? in[2] : nullptr;
    auto* y = static_cast<uint8_t*>(out[0]);
    const size_t es = p_.half ? 2 : 4;
    if (p_.k == 0) {  // no products: Y = act(beta * C)
      KILN_CUDA_CHECK(cudaMemsetAsync(y, 0, size_t(p_.m * p_.n) * es, l.stream));
    } else {
      for (const void* q : {static_cast<const void*>(a), static_cast<const void*>(b), c, static_cast<const void*>(y)})
        if (q && reinterpret_cast<uintptr_t>(q) % uintptr_t(kBaseAlign) != 0)
          throw_internal("cuBLASLt GEMM: an operand buffer is not " + std::to_string(kBaseAlign) +
                         "-byte aligned; the memory plan must align every buffer");
      const float beta = p_.c_matrix ? p_.beta : 0.f;
      const size_t calls = p_.a_off.empty() ? 1 : p_.a_off.size();
      for (size_t t = 0; t < calls; ++t) {
        const uint8_t* at = a + (p_.a_off.empty() ? 0 : size_t(p_.a_off[t]) * es);
        const uint8_t* bt = b + (p_.b_off.empty() ? 0 : size_t(p_.b_off[t]) * es);
        uint8_t* yt = y + t * size_t(p_.m * p_.n) * es;
        const void* ct = p_.c_matrix ? c : yt;
        KILN_CUBLAS_CHECK(cublasLtMatmul(l.libs->lt, d_->op, &p_.alpha, bt, d_->a, at, d_->b, &beta, ct, d_->c, yt,
                                         d_->d, &algo_, l.workspace, ws_, l.stream));
      }
    }
    if (p_.need_epi) p_.epi.launch(y, y, bias_.get(), c, l.stream);
  }

 private:
  LtPlan p_;
  size_t ws_;
  bool has_algo_;
  cublasLtMatmulAlgo_t algo_{};
  DevicePtr bias_;
  std::unique_ptr<LtDescs> d_;
};

class EmptyKernel : public Kernel {
 public:
  void enqueue(const std::vector<const void*>&, const std::vector<void*>&, const Launch&) const override {}
};

std::vector<Tactic> gemm_tactics(const ir::Node& n, std::string* why) {
  auto no = [&](const std::string& m) {
    if (why) *why = m;
    return std::vector<Tactic>{};
  };
  const ir::Value* a = n.in(0);
  const ir::Value* b = n.in(1);
  const ir::Value* y = n.outputs.empty() ? nullptr : n.outputs[0];
  if (!a || !b || !y) return no("missing input or output");
  if (a->dtype != DataType::kFloat32 && a->dtype != DataType::kFloat16) return no("cuBLASLt takes fp32 / fp16 only");
  for (const ir::Value* v : {n.in(1), n.in(2)})
    if (v && v->dtype != a->dtype) return no("inputs differ in dtype");
  LtPlan p;
  p.half = a->dtype == DataType::kFloat16;
  p.tf32 = n.i("allow_tf32", 0) != 0;
  if (n.op_type == "Gemm") {
    p.ta = n.i("transA", 0) != 0;
    p.tb = n.i("transB", 0) != 0;
    p.alpha = n.f("alpha", 1.f);
    p.beta = n.f("beta", 1.f);
    p.m = y->dims[0];
    p.n = y->dims[1];
    p.k = p.ta ? a->dims[0] : a->dims[1];
  } else {
    plan_batch(a->dims, b->dims, p);
  }
  if (ir::numel_of(y->dims) == 0)
    return {Tactic{"empty", [] { return std::unique_ptr<Kernel>(new EmptyKernel()); }}};
  plan_c(n, p);
  if (p.k == 0)
    return {Tactic{"zero_k", [p] { return std::unique_ptr<Kernel>(new LtKernel(p, nullptr, 0)); }}};
  // Per-batch offsets lower the alignment cuBLASLt may assume.
  const int64_t es = p.half ? 2 : 4;
  for (size_t t = 0; t < p.a_off.size(); ++t)
    p.align = std::gcd(p.align, std::gcd(p.a_off[t] * es, std::gcd(p.b_off[t] * es, int64_t(t) * p.m * p.n * es)));

  std::lock_guard<std::mutex> lock(query_mutex());
  LtDescs d(p, nullptr);
  cublasLtMatmulHeuristicResult_t res[kMaxAlgos];
  int count = 0;
  const cublasStatus_t s =
      cublasLtMatmulAlgoGetHeuristic(query_handle(), d.op, d.a, d.b, d.c, d.d, d.pref, kMaxAlgos, res, &count);
  if (s != CUBLAS_STATUS_SUCCESS) count = 0;
  std::vector<Tactic> out;
  for (int i = 0; i < count; ++i) {
    if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
    const cublasLtMatmulAlgo_t algo = res[i].algo;
    const size_t ws = res[i].workspaceSize;
    out.push_back({"cublaslt:" + std::to_string(i),
                   [p, algo, ws] { return std::unique_ptr<Kernel>(new LtKernel(p, &algo, ws)); }});
  }
  if (out.empty())
    return no("cuBLASLt has no algorithm for M=" + std::to_string(p.m) + " N=" + std::to_string(p.n) +
              " K=" + std::to_string(p.k) + " (status " + std::to_string(int(s)) + ")");
  return out;
}

}  // namespace

void register_gemm_kernels(Registry& r) {
  OpTraits gemm;
  gemm.fp16_inputs = {0, 1, 2};
  r.add("Gemm", gemm_tactics, gemm);
  OpTraits matmul;
  matmul.fp16_inputs = {0, 1};
  r.add("MatMul", gemm_tactics, matmul);
}

}  // namespace kiln::cuda
