// GPU timing for `kiln bench`, like trtexec: inferences run on inputs already
// in device memory and are timed with CUDA events; host-to-device and
// device-to-host copies are timed apart and reported separately.
#include "bench_gpu.h"

#ifdef KILN_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>

namespace kiln::cli {

namespace {

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(ErrorCode::kInternal, std::string(what) + ": " + cudaGetErrorString(e));
}

struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  Events() {
    ck(cudaEventCreate(&a), "cudaEventCreate");
    ck(cudaEventCreate(&b), "cudaEventCreate");
  }
  ~Events() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  // Milliseconds of f's stream work.
  template <typename F> double time(cudaStream_t s, F f) {
    ck(cudaEventRecord(a, s), "cudaEventRecord");
    f();
    ck(cudaEventRecord(b, s), "cudaEventRecord");
    ck(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    ck(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    return ms;
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Bytes of `t` with `batch` rows along its batch axis (batch 0: as is).
size_t tensor_bytes(const TensorInfo& t, int64_t batch) {
  size_t n = dtype_size(t.dtype);
  for (size_t a = 0; a < t.shape.size(); ++a)
    n *= size_t(batch > 0 && int(a) == t.batch_axis ? batch : t.shape[a]);
  return n;
}

// Median time of copying every input in (or every output out) through pinned memory.
double copy_ms(ExecutionContext& ctx, const std::vector<TensorInfo>& tensors, int64_t batch, bool to_device,
               cudaStream_t s, Events& ev) {
  size_t total = 0;
  for (auto& t : tensors) total = std::max(total, tensor_bytes(t, batch));
  void* host = nullptr;
  ck(cudaMallocHost(&host, std::max<size_t>(total, 64)), "cudaMallocHost");
  std::vector<double> ms;
  for (int i = 0; i < 20; ++i)
    ms.push_back(ev.time(s, [&] {
      for (auto& t : tensors) {
        const size_t n = tensor_bytes(t, batch);
        void* dev = ctx.device_address(t.name);
        if (!dev || !n) continue;
        ck(to_device ? cudaMemcpyAsync(dev, host, n, cudaMemcpyHostToDevice, s)
                     : cudaMemcpyAsync(host, dev, n, cudaMemcpyDeviceToHost, s),
           "cudaMemcpyAsync");
      }
    }));
  cudaFreeHost(host);
  return median(ms);
}

}  // namespace

GpuTimes bench_gpu(const Engine& engine, ExecutionContext& ctx, const std::map<std::string, HostTensor>& inputs,
                   int64_t batch, int warmup, int iterations, bool cuda_graph) {
  ctx.set_cuda_graph(cuda_graph);
  ctx.run(inputs);  // puts the inputs in the device buffers enqueue then reads
  cudaStream_t s = nullptr;
  ck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  Events ev;
  GpuTimes r;
  for (int i = 0; i < warmup; ++i) ctx.enqueue(s);
  ck(cudaStreamSynchronize(s), "warm-up");
  for (int i = 0; i < iterations; ++i) r.latency_ms.push_back(ev.time(s, [&] { ctx.enqueue(s); }));
  // Back to back, as a serving loop would run them.
  r.throughput_ms = ev.time(s, [&] {
                      for (int i = 0; i < iterations; ++i) ctx.enqueue(s);
                    }) / iterations;
  r.h2d_ms = copy_ms(ctx, engine.inputs(), batch, true, s, ev);
  r.d2h_ms = copy_ms(ctx, engine.outputs(), batch, false, s, ev);
  cudaStreamDestroy(s);
  return r;
}

}  // namespace kiln::cli

#else

namespace kiln::cli {
GpuTimes bench_gpu(const Engine&, ExecutionContext&, const std::map<std::string, HostTensor>&, int64_t, int, int,
                   bool) {
  throw Error(ErrorCode::kUnsupported, "this kiln was built without the CUDA backend");
}
}  // namespace kiln::cli

#endif
