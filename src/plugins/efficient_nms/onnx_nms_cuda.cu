// kiln_NonMaxSuppression on CUDA, last step: the EfficientNMS stage leaves
// each image's detections in selection order with their class and rank
// within the class; ONNX rows go by image, then class, then that rank. One
// block per image counts its detections per class, turns the counts into
// class offsets and scatters every detection straight to its row.
#include <cuda_runtime.h>

#include <string>

#include "kiln/error.h"
#include "plugins/efficient_nms/onnx_nms.h"

namespace kiln::plugins::efficient_nms {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    compact_kernel(int64_t classes, int64_t k, const int32_t* num, const int32_t* cls, const int32_t* box_index,
                   const int32_t* class_rank, int32_t* class_start, int64_t* selected, int64_t* count, int batch) {
  const int n = blockIdx.x;
  __shared__ int64_t offset;
  int32_t* start = class_start + int64_t(n) * classes;
  for (int64_t c = threadIdx.x; c < classes; c += kThreads) start[c] = 0;
  if (threadIdx.x == 0) {
    int64_t off = 0;
    for (int i = 0; i < n; ++i) off += num[i];
    offset = off;
  }
  __syncthreads();
  const int32_t kept = num[n];
  const int32_t* ic = cls + int64_t(n) * k;
  for (int32_t j = threadIdx.x; j < kept; j += kThreads) atomicAdd(&start[ic[j]], 1);
  __syncthreads();
  if (threadIdx.x == 0) {  // exclusive scan; classes are few (tens to thousands)
    int32_t run = 0;
    for (int64_t c = 0; c < classes; ++c) {
      const int32_t h = start[c];
      start[c] = run;
      run += h;
    }
  }
  __syncthreads();
  for (int32_t j = threadIdx.x; j < kept; j += kThreads) {
    const int32_t c = ic[j];
    int64_t* row = selected + (offset + start[c] + class_rank[int64_t(n) * k + j]) * 3;
    row[0] = n;
    row[1] = c;
    row[2] = box_index[int64_t(n) * k + j];
  }
  if (n == batch - 1) {  // the last image knows the total: clear the rows past it
    const int64_t total = offset + kept, rows = int64_t(batch) * k;
    if (threadIdx.x == 0) *count = total;
    for (int64_t r = total * 3 + threadIdx.x; r < rows * 3; r += kThreads) selected[r] = 0;
  }
}

}  // namespace

void compact_onnx_cuda(int64_t batch, int64_t classes, int64_t k, const int32_t* num, const int32_t* cls,
                       const int32_t* box_index, const int32_t* class_rank, int32_t* class_start, int64_t* selected,
                       int64_t* count, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  cudaError_t e = cudaSuccess;
  if (batch <= 0 || k <= 0) {
    e = cudaMemsetAsync(count, 0, sizeof(int64_t), s);
  } else {
    if (batch > 65535)
      throw_unsupported("NonMaxSuppression on CUDA handles up to 65535 images per batch, got " +
                        std::to_string(batch) + ": build for the CPU");
    compact_kernel<<<unsigned(batch), kThreads, 0, s>>>(classes, k, num, cls, box_index, class_rank, class_start,
                                                       selected, count, int(batch));
    e = cudaGetLastError();
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(ErrorCode::kInternal, std::string("NonMaxSuppression (CUDA): ") + cudaGetErrorString(e));
  }
}

}  // namespace kiln::plugins::efficient_nms
