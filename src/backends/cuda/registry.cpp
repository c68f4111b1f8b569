// The CUDA kernel registry and the helpers in common.h / libraries.h.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "backends/cuda/common.h"
#include "backends/cuda/upload_sharing.h"
#ifdef KILN_WITH_CUTLASS
#include "backends/cuda/cutlass/conv_cutlass.h"
#include "backends/cuda/cutlass/qconv_cutlass.h"
#endif
#include "backends/cuda/kernel.h"
#include "backends/cuda/libraries.h"
#include "backends/cuda/qconv.h"

namespace kiln::cuda {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear a sticky-free error so the next call starts clean
    throw_internal(std::string(what) + ": " + cudaGetErrorString(e));
  }
}

void check_cudnn(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS) throw_internal(std::string(what) + ": " + cudnnGetErrorString(s));
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw_internal(std::string(what) + ": cuBLAS status " + std::to_string(int(s)));
}

Libraries::Libraries(cudaStream_t stream) {
  KILN_CUDNN_CHECK(cudnnCreate(&cudnn));
  KILN_CUDNN_CHECK(cudnnSetStream(cudnn, stream));
  KILN_CUBLAS_CHECK(cublasLtCreate(&lt));
}

Libraries::~Libraries() {
  if (lt) cublasLtDestroy(lt);
  if (cudnn) cudnnDestroy(cudnn);
}

std::string library_versions() {
  auto dotted = [](size_t v, size_t major_div, size_t minor_div) {
    return std::to_string(v / major_div) + "." + std::to_string(v % major_div / minor_div) + "." +
           std::to_string(v % minor_div);
  };
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  return "cudnn " + dotted(cudnnGetVersion(), 10000, 100) + ", cublasLt " +
         dotted(cublasLtGetVersion(), 10000, 100) + ", cudart " + std::to_string(rt);
}

std::string device_string() {
  int dev = 0, count = 0;
  cudaDeviceProp p{};
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    throw_unsupported("no CUDA device is visible: use --device cpu, or run on a machine with an NVIDIA GPU");
  }
  KILN_CUDA_CHECK(cudaGetDevice(&dev));
  KILN_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  return "cuda:sm_" + std::to_string(p.major) + std::to_string(p.minor) + ":" + p.name;
}

DevicePtr device_alloc(size_t bytes) {
  void* p = nullptr;
  KILN_CUDA_CHECK(cudaMalloc(&p, bytes < 256 ? 256 : bytes));
  return DevicePtr(p, [](void* q) { cudaFree(q); });
}

DevicePtr upload(const void* host, size_t bytes) {
  if (DevicePtr shared = SharedUploads::find(host, bytes)) return shared;  // profile plans: equal bytes, one copy
  DevicePtr d = device_alloc(bytes);
  if (bytes) KILN_CUDA_CHECK(cudaMemcpy(d.get(), host, bytes, cudaMemcpyHostToDevice));
  SharedUploads::store(host, bytes, d);
  return d;
}

DevicePtr upload(const ir::Tensor& t, DataType as) {
  if (t.dtype() == as) return upload(t.raw(), t.nbytes());
  if (t.dtype() == DataType::kFloat32 && as == DataType::kFloat16) {
    std::vector<__half> h(size_t(t.numel()));
    const float* f = t.data<float>();
    for (size_t i = 0; i < h.size(); ++i) h[i] = __float2half_rn(f[i]);
    return upload(h.data(), h.size() * sizeof(__half));
  }
  throw_internal(std::string("upload: cannot convert a ") + dtype_name(t.dtype()) + " constant to " + dtype_name(as));
}

double graph_replay_ms(const std::function<void()>& enqueue, cudaStream_t s, int runs, int per_graph) {
  cudaGraph_t graph = nullptr;
  KILN_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  try {
    for (int i = 0; i < per_graph; ++i) enqueue();
  } catch (...) {
    cudaStreamEndCapture(s, &graph);
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  KILN_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  KILN_CUDA_CHECK(inst);
  std::unique_ptr<CUgraphExec_st, cudaError_t (*)(cudaGraphExec_t)> exec_guard(exec, cudaGraphExecDestroy);
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  KILN_CUDA_CHECK(cudaEventCreate(&e0));
  std::unique_ptr<CUevent_st, cudaError_t (*)(cudaEvent_t)> g0(e0, cudaEventDestroy);
  KILN_CUDA_CHECK(cudaEventCreate(&e1));
  std::unique_ptr<CUevent_st, cudaError_t (*)(cudaEvent_t)> g1(e1, cudaEventDestroy);
  KILN_CUDA_CHECK(cudaGraphLaunch(exec, s));  // first replay uploads the graph
  KILN_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<double> ms;
  for (int i = 0; i < std::max(runs, 1); ++i) {
    KILN_CUDA_CHECK(cudaEventRecord(e0, s));
    KILN_CUDA_CHECK(cudaGraphLaunch(exec, s));
    KILN_CUDA_CHECK(cudaEventRecord(e1, s));
    KILN_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    KILN_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(double(t) / per_graph);
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

const ir::Tensor* constant_input(const ir::Node& n, size_t k) {
  const ir::Value* v = n.in(k);
  return v && v->is_constant() ? v->constant.get() : nullptr;
}

int resident_ctas(const void* fn, int threads, int smem, const char* what) {
  int dev = 0, sms = 0, per_sm = 0, optin = 0;
  KILN_CUDA_CHECK(cudaGetDevice(&dev));
  KILN_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (smem > optin)
    throw_internal(std::string(what) + ": " + std::to_string(smem) + " bytes of shared memory needed, " +
                   std::to_string(optin) + " available");
  KILN_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
  KILN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  KILN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, threads, size_t(smem)));
  if (per_sm < 1) throw_internal(std::string(what) + ": one CTA does not fit an SM (" + std::to_string(smem) + " bytes)");
  return per_sm * sms;
}

bool current_device_is_sm90(std::string& why) {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    cudaGetLastError();
    return why = "no CUDA device to query", false;
  }
  if (major != 9 || minor != 0)
    return why = "the GPU is sm_" + std::to_string(major) + std::to_string(minor) + ", not sm_90", false;
  return true;
}

std::vector<int64_t> strides_of(const ir::Value& v) {
  const size_t r = v.dims.size();
  std::vector<int64_t> s(r, 1);
  if (v.layout == ir::Layout::kNHWC && r == 4) {
    const int64_t c = v.dims[1], h = v.dims[2], w = v.dims[3];
    s = {h * w * c, 1, w * c, c};
    return s;
  }
  for (size_t k = r; k-- > 1;) s[k - 1] = s[k] * v.dims[k];
  return s;
}

TensorDesc desc_of(const ir::Node& n, const ir::Value& v) {
  if (v.dims.size() > size_t(kMaxRank))
    throw_unsupported(n.label() + ": tensor '" + v.name + "' has rank " + std::to_string(v.dims.size()) +
                      "; CUDA kernels take at most " + std::to_string(kMaxRank) + " axes");
  TensorDesc d;
  d.rank = int(v.dims.size());
  std::vector<int64_t> s = strides_of(v);
  for (int k = 0; k < d.rank; ++k) {
    d.dims[k] = v.dims[size_t(k)];
    d.strides[k] = s[size_t(k)];
  }
  return d;
}

Registry& Registry::global() {
  static Registry* r = [] {
    auto* g = new Registry();
    register_conv_kernels(*g);
    register_conv_gemm_kernels(*g);
    register_conv_transpose_kernels(*g);
#ifdef KILN_WITH_CUTLASS
    register_conv_cutlass_kernels(*g);  // cutlass/conv_cutlass.h: sm_90a implicit GEMM (extends Conv)
#endif
    register_qconv_kernels(*g);  // qconv.h: kiln::QConv (INT8)
#ifdef KILN_WITH_CUTLASS
    register_qconv_cutlass_kernels(*g);  // cutlass/qconv_cutlass.h: sm_90a INT8 implicit GEMM (extends QConv)
#endif
    register_gemm_kernels(*g);
    register_elementwise_kernels(*g);
    register_pool_kernels(*g);
    register_reduce_kernels(*g);
    register_tensor_kernels(*g);
    register_resize_kernels(*g);
    register_plugin_kernels(*g);
    return g;
  }();
  return *r;
}

void Registry::add(const std::string& op_type, TacticFactory f, OpTraits traits, const std::string& domain) {
  entries_.push_back({domain, op_type, std::move(f), std::move(traits)});
}

void Registry::extend(const std::string& op_type, TacticFactory more, const std::string& domain) {
  for (Entry& e : entries_)
    if (e.op_type == op_type && e.domain == domain) {
      e.make = [first = std::move(e.make), more = std::move(more)](const ir::Node& n, std::string* why) {
        std::vector<Tactic> t = first(n, why);
        std::string why_more;
        for (Tactic& x : more(n, &why_more)) t.push_back(std::move(x));
        return t;
      };
      return;
    }
  throw_internal("Registry::extend: no kernels registered for " + op_type);
}

const Registry::Entry* Registry::entry(const ir::Node& n) const {
  for (const Entry& e : entries_)
    if (e.op_type == n.op_type && e.domain == n.domain) return &e;
  // op_type "*" serves every op of its domain (plugin types are only known at run time).
  for (const Entry& e : entries_)
    if (e.op_type == "*" && e.domain == n.domain) return &e;
  return nullptr;
}

const OpTraits* Registry::traits(const ir::Node& n) const {
  const Entry* e = entry(n);
  return e ? &e->traits : nullptr;
}

std::vector<Tactic> Registry::tactics(const ir::Node& n) const {
  const Entry* e = entry(n);
  if (!e)
    throw_unsupported(n.label() + ": op '" + n.op_type + "'" + (n.domain.empty() ? "" : " of domain '" + n.domain + "'") +
                      " has no CUDA kernel in this kiln; build for the CPU (--device cpu) or add a plugin "
                      "(docs/plugins.md)");
  std::string why;
  std::vector<Tactic> t = e->make(n, &why);
  if (t.empty())
    throw_unsupported(n.label() + ": no CUDA kernel can run it" + (why.empty() ? "" : ": " + why) +
                      "; build for the CPU (--device cpu)");
  return t;
}

Tactic Registry::find(const ir::Node& n, const std::string& name) const {
  std::string offered;
  for (Tactic& t : tactics(n)) {
    if (t.name == name) return t;
    offered += (offered.empty() ? "'" : ", '") + t.name + "'";
  }
  throw_bad_input("the plan chose tactic '" + name + "' for " + n.label() + ", which this kiln lacks (it offers " +
                  offered + "): rebuild the plan with this kiln");
}

}  // namespace kiln::cuda
