// Library handles one execution context uses, bound to its stream. cuDNN and
// cuBLASLt handles are not safe to share between streams that run at once,
// so each context (and the builder's timer) owns a set.
#pragma once

#include <cublasLt.h>
#include <cudnn.h>
#include <cuda_runtime.h>

#include <string>

namespace kiln::cuda {

struct Libraries {
  cudnnHandle_t cudnn = nullptr;
  cublasLtHandle_t lt = nullptr;
  explicit Libraries(cudaStream_t stream);
  ~Libraries();
  Libraries(const Libraries&) = delete;
  Libraries& operator=(const Libraries&) = delete;
};

void check_cudnn(cudnnStatus_t s, const char* what);
void check_cublas(cublasStatus_t s, const char* what);
#define KILN_CUDNN_CHECK(call) ::kiln::cuda::check_cudnn((call), #call)
#define KILN_CUBLAS_CHECK(call) ::kiln::cuda::check_cublas((call), #call)

// "cudnn 9.19.0, cublasLt 13.1.0, cuda runtime 13000": part of the timing
// cache key, since a library update can change which tactic wins.
std::string library_versions();

}  // namespace kiln::cuda
