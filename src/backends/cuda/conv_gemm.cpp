// 1x1 convolutions as one cuBLASLt GEMM (tactics "lt1x1:<i>").
//
// A 1x1, stride-1, unpadded, ungrouped Conv on channels-last tensors is a
// plain matrix product: Y[pixels, K] = X[pixels, C] * W[K, C]^T, with pixels
// = N*H*W rows of C contiguous channels. cuBLASLt (column-major) computes the
// same bytes as Y^T[K, pixels] = W^T^T * X^T: its A is W (C x K, ld C,
// transposed), its B is X (C x pixels, ld C), its C and D are Z and Y
// (K x pixels, ld K). Bias (per K: cuBLASLt's per-row bias) and ReLU run in
// cuBLASLt's epilogue and the residual Z enters as C with beta = 1, which is
// exactly act(conv + B + Z); other activations run in the shared epilogue
// launch afterwards. On Hopper this reaches the library's tensor-core GEMMs,
// which the legacy cuDNN convolution path does not for these shapes.
#include <cublasLt.h>

#include <mutex>

#include "backends/cuda/common.h"
#include "backends/cuda/epilogue.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/libraries.h"
#include "kiln/error.h"

namespace kiln::cuda {

namespace {

constexpr size_t kWorkspace = size_t(32) << 20;
constexpr int kMaxAlgos = 4;

struct GemmConv {
  bool half = false;
  int64_t pixels = 0, c = 0, k = 0;
  bool has_bias = false, has_z = false;
  Activation act;
  bool lt_relu = false;  // ReLU in cuBLASLt's epilogue
  Epilogue post;         // other activations, after the GEMM (in place on Y)
  bool need_post = false;
};

cublasLtHandle_t query_handle() {
  static cublasLtHandle_t h = [] {
    cublasLtHandle_t q = nullptr;
    KILN_CUBLAS_CHECK(cublasLtCreate(&q));
    return q;
  }();
  return h;
}

std::mutex& query_mutex() {
  static std::mutex m;
  return m;
}

struct Descs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, cd = nullptr;
  Descs(const GemmConv& g, const void* bias) {
    const cudaDataType_t t = g.half ? CUDA_R_16F : CUDA_R_32F;
    KILN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtEpilogue_t e = g.has_bias ? (g.lt_relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                      : (g.lt_relu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_DEFAULT);
    KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e));
    if (g.has_bias)
      KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a, t, uint64_t(g.c), uint64_t(g.k), g.c));
    KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b, t, uint64_t(g.c), uint64_t(g.pixels), g.c));
    KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&cd, t, uint64_t(g.k), uint64_t(g.pixels), g.k));
  }
  ~Descs() {
    if (cd) cublasLtMatrixLayoutDestroy(cd);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
  Descs(const Descs&) = delete;
  Descs& operator=(const Descs&) = delete;
};

class GemmConvKernel : public Kernel {
 public:
  GemmConvKernel(const ir::Tensor& w, const ir::Tensor* bias, const GemmConv& g, const cublasLtMatmulAlgo_t& algo,
                 size_t ws)
      : g_(g), algo_(algo), ws_(ws) {
    const DataType dt = g.half ? DataType::kFloat16 : DataType::kFloat32;
    w_ = upload(w, dt);
    if (bias) bias_ = upload(*bias, dt);
    d_ = std::make_unique<Descs>(g, bias_.get());
  }
  size_t workspace_bytes() const override { return ws_; }
  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    const float alpha = 1.f, beta = g_.has_z ? 1.f : 0.f;
    const void* z = g_.has_z ? in[3] : out[0];
    KILN_CUBLAS_CHECK(cublasLtMatmul(l.libs->lt, d_->op, &alpha, w_.get(), d_->a, in[0], d_->b, &beta, z, d_->cd,
                                     out[0], d_->cd, &algo_, l.workspace, ws_, l.stream));
    if (g_.need_post) g_.post.launch(out[0], out[0], nullptr, nullptr, l.stream);
  }

 private:
  GemmConv g_;
  cublasLtMatmulAlgo_t algo_;
  size_t ws_;
  DevicePtr w_, bias_;
  std::unique_ptr<Descs> d_;
};

// The GEMM view of `n`, or false (with why) when it is not a dense 1x1 conv
// on channels-last data with constant weights.
bool plan_gemm(const ir::Node& n, GemmConv& g, std::string& why) {
  const ir::Value* x = n.in(0);
  const ir::Value* y = n.outputs.empty() ? nullptr : n.outputs[0];
  if (!x || !y || x->dims.size() != 4 || !constant_input(n, 1)) return why = "not a 2-D conv with constant weights", false;
  if (n.in(2) && !constant_input(n, 2)) return why = "runtime bias", false;
  const auto ks = n.ints("kernel_shape"), st = n.ints("strides"), dl = n.ints("dilations"), pads = n.ints("pads");
  for (int64_t v : ks) if (v != 1) return why = "kernel is not 1x1", false;
  for (int64_t v : st) if (v != 1) return why = "strided", false;
  for (int64_t v : dl) if (v != 1) return why = "dilated", false;
  for (int64_t v : pads) if (v != 0) return why = "padded", false;
  if (n.i("group", 1) != 1) return why = "grouped", false;
  // Channels-last means each pixel's channels are contiguous rows; a 1x1
  // spatial map is the same bytes either way.
  auto rows_ok = [](const ir::Value* v) {
    return v->layout == ir::Layout::kNHWC || v->dims[2] * v->dims[3] == 1 || v->dims[0] * v->dims[2] * v->dims[3] == 1;
  };
  const ir::Value* z = n.in(3);
  if (!rows_ok(x) || !rows_ok(y) || (z && (!rows_ok(z) || z->dims != y->dims)))
    return why = "not channels-last", false;
  if (x->dtype != DataType::kFloat16 || y->dtype != DataType::kFloat16)
    return why = "FP16 only (FP32 1x1 convolutions run on cuDNN)", false;
  g.half = true;
  g.c = x->dims[1];
  g.k = y->dims[1];
  g.pixels = y->dims[0] * y->dims[2] * y->dims[3];
  g.has_bias = n.in(2) != nullptr;
  g.has_z = z != nullptr;
  g.act = Activation::from_node(n);
  g.lt_relu = g.act.kind == Activation::kRelu;
  g.need_post = g.act.kind != Activation::kNone && !g.lt_relu;
  if (g.need_post) {
    g.post = Epilogue::for_value(n, *y);
    g.post.act = g.act;
  }
  return true;
}

std::vector<Tactic> gemm_conv_tactics(const ir::Node& n, std::string* why) {
  GemmConv g;
  std::string reason;
  if (!plan_gemm(n, g, reason)) {
    if (why) *why = reason;
    return {};
  }
  std::lock_guard<std::mutex> lock(query_mutex());
  Descs d(g, nullptr);
  cublasLtMatmulPreference_t pref = nullptr;
  KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  size_t cap = kWorkspace;
  KILN_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &cap, sizeof cap));
  // The engine's buffers are 64-byte aligned (arena regions) or cudaMalloc'd.
  uint32_t align = 64;
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof align));
  cublasLtMatmulHeuristicResult_t res[kMaxAlgos];
  int count = 0;
  if (cublasLtMatmulAlgoGetHeuristic(query_handle(), d.op, d.a, d.b, d.cd, d.cd, pref, kMaxAlgos, res, &count) !=
      CUBLAS_STATUS_SUCCESS)
    count = 0;
  cublasLtMatmulPreferenceDestroy(pref);
  std::vector<Tactic> out;
  for (int i = 0; i < count; ++i) {
    if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
    const cublasLtMatmulAlgo_t algo = res[i].algo;
    const size_t ws = res[i].workspaceSize;
    // The kernel outlives this call: it keeps the weight tensors, not the node.
    std::shared_ptr<const ir::Tensor> w = n.in(1)->constant, b = n.in(2) ? n.in(2)->constant : nullptr;
    out.push_back({"lt1x1:" + std::to_string(i), [w, b, g, algo, ws] {
                     return std::unique_ptr<Kernel>(new GemmConvKernel(*w, b.get(), g, algo, ws));
                   }});
  }
  if (out.empty() && why) *why = "cuBLASLt offers no algorithm";
  return out;
}

}  // namespace

void register_conv_gemm_kernels(Registry& r) { r.extend("Conv", gemm_conv_tactics); }

}  // namespace kiln::cuda
