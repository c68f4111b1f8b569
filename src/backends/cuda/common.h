// Helpers every CUDA kernel file uses: error checks that throw kiln::Error,
// device memory owned by RAII handles, constant upload with FP32->FP16
// conversion, and grid sizing.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ir/graph.h"
#include "kiln/error.h"

namespace kiln::cuda {

// Throws kInternal "<what>: <cuda error string>" unless e is cudaSuccess.
void check(cudaError_t e, const char* what);
#define KILN_CUDA_CHECK(call) ::kiln::cuda::check((call), #call)
// After a launch: reports a bad configuration (grid, shared memory) at once.
#define KILN_CUDA_LAUNCHED(what) ::kiln::cuda::check(cudaGetLastError(), what)

// "cuda:sm_90:NVIDIA H100 80GB HBM3": the current GPU as plans name their target.
// Throws kUnsupported when no GPU is visible.
std::string device_string();

// Device memory, freed when the last owner goes.
using DevicePtr = std::shared_ptr<void>;
DevicePtr device_alloc(size_t bytes);  // at least 256 bytes, never null

// Copies a constant to the device as `as` (kFloat16 converts an FP32
// constant; otherwise the dtype must match).
DevicePtr upload(const ir::Tensor& t, DataType as);
// Device copies of host data. Kernels only read them: while a profile plan
// loads, uploads of equal bytes share one copy (upload_sharing.h).
DevicePtr upload(const void* host, size_t bytes);

// Blocks of `threads` covering n items, capped so a grid-stride loop covers the rest.
inline unsigned grid_for(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535LL * 32) b = 65535LL * 32;
  return unsigned(b);
}

// Device time of `enqueue` (which must only launch work on `s`): `per_graph`
// calls captured into one CUDA graph, replayed `runs` times and timed with
// events; returns the median milliseconds per call. Being graph replays, the
// times exclude host launch overhead, as in an engine's CUDA graph. Throws
// what enqueue throws, or kInternal if the work cannot be captured.
double graph_replay_ms(const std::function<void()>& enqueue, cudaStream_t s, int runs, int per_graph = 8);

// Constant input k of n as a host tensor (nullptr if absent or not constant).
const ir::Tensor* constant_input(const ir::Node& n, size_t k);

// For a persistent kernel `fn` of `threads` threads and `smem` bytes of
// dynamic shared memory: how many of its CTAs are resident on the current
// GPU at once. Raises fn's shared-memory limit to the device's maximum, not
// to `smem`: the limit belongs to the function, shared by every node that
// launches it, and a later, smaller node must not lower it under an earlier
// one. Throws kInternal naming `what` when one CTA does not fit an SM.
int resident_ctas(const void* fn, int threads, int smem, const char* what);

// Whether the current GPU runs sm_90a machine code (compute capability 9.0
// exactly); otherwise false with the reason in `why`.
bool current_device_is_sm90(std::string& why);

}  // namespace kiln::cuda
