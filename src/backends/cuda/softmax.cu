// CUDA Softmax, LogSoftmax and Hardmax along one axis (opset-13 semantics,
// as src/backends/cpu/softmax.cpp): rows are shifted by their max before
// exp, sums are fp32. Tactics, all correct for any layout:
//   softmax_thread  one thread per row: coalesced when the axis is not the
//                   innermost (channel softmax on NCHW, or NHWC over H/W)
//   softmax_warp    one warp per row: coalesced along a contiguous axis
//   softmax_block   one block per row: long rows
#include <cuda_fp16.h>

#include "backends/cuda/common.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/reduce_common.cuh"
#include "ir/op_registry.h"

namespace kiln::cuda {

void register_softmax_kernels(Registry& r);

namespace {

enum class Mode : int { kSoftmax, kLog, kHard };

struct Params {
  red::Geometry g;   // rows: every axis but `axis`
  int64_t A = 1;     // extent of the axis
  int64_t xa = 0, ya = 0;  // its strides in x and y
  Mode mode = Mode::kSoftmax;
};

// Lane `lane` of `width` handles j = lane, lane + width, ...; `all` combines
// a float across the group, `arg` an (value, index) pair.
template <typename T, typename All, typename Arg>
__device__ __forceinline__ void softmax_row(const T* __restrict__ x, T* __restrict__ y, int64_t xo, int64_t yo,
                                            const Params& p, int lane, int width, All all, Arg arg) {
  const T* xr = x + xo;
  T* yr = y + yo;
  if (p.mode == Mode::kHard) {
    float best = NAN;
    int64_t bi = -1;
    for (int64_t j = lane; j < p.A; j += width) {
      const float v = red::ld(xr + j * p.xa);
      if (bi < 0 || red::arg_better(v, j, best, bi, true, false)) {
        best = v;
        bi = j;
      }
    }
    bi = arg(best, bi);
    for (int64_t j = lane; j < p.A; j += width) red::st(yr + j * p.ya, j == bi ? 1.f : 0.f);
    return;
  }
  float m = -INFINITY;
  for (int64_t j = lane; j < p.A; j += width) m = red::nan_max(m, red::ld(xr + j * p.xa));
  m = all(m, [](float a, float b) { return red::nan_max(a, b); });
  float s = 0.f;
  for (int64_t j = lane; j < p.A; j += width) s += expf(red::ld(xr + j * p.xa) - m);
  s = all(s, [](float a, float b) { return a + b; });
  if (p.mode == Mode::kSoftmax) {
    const float inv = 1.f / s;
    for (int64_t j = lane; j < p.A; j += width) red::st(yr + j * p.ya, expf(red::ld(xr + j * p.xa) - m) * inv);
  } else {
    // (x - m) first: subtracting m + log(s) at once would round at m's scale.
    const float ls = logf(s);
    for (int64_t j = lane; j < p.A; j += width) red::st(yr + j * p.ya, (red::ld(xr + j * p.xa) - m) - ls);
  }
}

template <typename T> __global__ void softmax_thread(const T* __restrict__ x, T* __restrict__ y, Params p) {
  auto all = [](float v, auto) { return v; };
  auto arg = [](float, int64_t i) { return i; };
  for (int64_t o = red::global_thread(); o < p.g.outputs; o += red::grid_threads()) {
    int64_t xo, yo;
    red::kept_offsets(p.g, o, xo, yo);
    softmax_row(x, y, xo, yo, p, 0, 1, all, arg);
  }
}

template <typename T> __global__ void softmax_warp(const T* __restrict__ x, T* __restrict__ y, Params p) {
  const int lane = threadIdx.x & 31;
  auto all = [](float v, auto f) { return red::warp_all(v, f); };
  auto arg = [](float v, int64_t i) {
    red::warp_arg(v, i, true, false);
    return i;
  };
  for (int64_t o = int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5); o < p.g.outputs; o += int64_t(gridDim.x) * 8) {
    int64_t xo, yo;
    red::kept_offsets(p.g, o, xo, yo);
    softmax_row(x, y, xo, yo, p, lane, 32, all, arg);
  }
}

template <typename T> __global__ void softmax_block(const T* __restrict__ x, T* __restrict__ y, Params p) {
  __shared__ float sh[32];
  __shared__ float shv[32];
  __shared__ long long shi[32];
  auto all = [&](float v, auto f) { return red::block_all(v, f, sh); };
  auto arg = [&](float v, int64_t i) {
    red::block_arg(v, i, true, false, shv, shi);
    return i;
  };
  for (int64_t o = blockIdx.x; o < p.g.outputs; o += gridDim.x) {
    int64_t xo, yo;
    red::kept_offsets(p.g, o, xo, yo);
    softmax_row(x, y, xo, yo, p, threadIdx.x, blockDim.x, all, arg);
  }
}

class SoftmaxKernel : public Kernel {
 public:
  SoftmaxKernel(Params p, bool half, int shape) : p_(p), half_(half), shape_(shape) {}
  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (p_.g.outputs == 0 || p_.A == 0) return;
    if (half_) go(static_cast<const __half*>(in[0]), static_cast<__half*>(out[0]), l.stream);
    else go(static_cast<const float*>(in[0]), static_cast<float*>(out[0]), l.stream);
  }

 private:
  template <typename T> void go(const T* x, T* y, cudaStream_t s) const {
    const int64_t n = p_.g.outputs;
    if (shape_ == 0) softmax_thread<T><<<grid_for(n, 256), 256, 0, s>>>(x, y, p_);
    else if (shape_ == 1) softmax_warp<T><<<grid_for(n, 8), 256, 0, s>>>(x, y, p_);
    else softmax_block<T><<<grid_for(n, 1), 256, 0, s>>>(x, y, p_);
    KILN_CUDA_LAUNCHED("softmax kernel");
  }
  Params p_;
  bool half_;
  int shape_;
};

std::vector<Tactic> softmax_tactics(const ir::Node& n, std::string* why) {
  const ir::Value* x = n.in(0);
  const ir::Value* yv = n.outputs.empty() ? nullptr : n.outputs[0];
  if (!x || !yv || (x->dtype != DataType::kFloat32 && x->dtype != DataType::kFloat16) || yv->dtype != x->dtype) {
    if (why) *why = "input must be fp32 or fp16";
    return {};
  }
  const TensorDesc xd = desc_of(n, *x), yd = desc_of(n, *yv);
  const int r = xd.rank;
  if (r == 0 || yd.rank != r) {
    if (why) *why = "scalar input";
    return {};
  }
  const int64_t axis = ir::normalize_axis(n, n.i("axis", -1), r);
  std::vector<bool> reduced(size_t(r), false);
  reduced[size_t(axis)] = true;
  std::vector<int> y_axis(static_cast<size_t>(r), 0);
  for (int a = 0; a < r; ++a) y_axis[size_t(a)] = a;
  Params p;
  p.g = red::make_geometry(xd, yd, reduced, y_axis);
  p.A = xd.dims[axis];
  p.xa = xd.strides[axis];
  p.ya = yd.strides[axis];
  p.mode = n.op_type == "Softmax" ? Mode::kSoftmax : n.op_type == "LogSoftmax" ? Mode::kLog : Mode::kHard;
  const bool half = x->dtype == DataType::kFloat16;
  std::vector<Tactic> t;
  auto add = [&](const char* name, int shape) {
    t.push_back({name, [p, half, shape] { return std::make_unique<SoftmaxKernel>(p, half, shape); }});
  };
  if (p.g.outputs >= 128 || p.A <= 64) add("softmax_thread", 0);
  if (p.A > 1) add("softmax_warp", 1);
  if (p.A >= 1024) add("softmax_block", 2);
  return t;
}

}  // namespace

void register_softmax_kernels(Registry& r) {
  OpTraits traits;
  traits.fp16_inputs = {0};
  traits.any_layout = true;
  traits.out_layout = OpTraits::kLikeInput0;
  for (const char* op : {"Softmax", "LogSoftmax", "Hardmax"}) r.add(op, softmax_tactics, traits);
}

}  // namespace kiln::cuda
