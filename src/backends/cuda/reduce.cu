// CUDA Reduce* and ArgMax/ArgMin (Softmax & co. live in softmax.cu and are
// registered from here). Axes resolve as in the CPU reference
// (src/backends/cpu/reduce.cpp); values accumulate in fp32 whatever the
// storage dtype. Tactics, all correct for any layout (see reduce_common.cuh):
//   reduce_thread  one thread per output: coalesced when the innermost kept
//                  axis is contiguous (column reductions, NHWC over H,W)
//   reduce_warp    one warp per output: coalesced along contiguous rows
//   reduce_block   one block per output: long reductions
//   reduce_split   several blocks per output and a second folding pass:
//                  few outputs over very long reductions
#include <cuda_fp16.h>

#include <cmath>
#include <limits>

#include "backends/cuda/common.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/reduce_common.cuh"
#include "ir/op_registry.h"

namespace kiln::cuda {

void register_softmax_kernels(Registry& r);  // softmax.cu

namespace {

using red::Geometry;

// How values combine; the op's pre-map and final step are runtime fields.
enum class Acc : int { kSum, kProd, kMax, kMin, kLse };
enum class Op : int { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kLogSum, kLogSumExp, kSumSquare };

struct OpDesc {
  const char* name;
  Op op;
  Acc acc;
};
constexpr OpDesc kOps[] = {
    {"ReduceSum", Op::kSum, Acc::kSum},       {"ReduceMean", Op::kMean, Acc::kSum},
    {"ReduceMax", Op::kMax, Acc::kMax},       {"ReduceMin", Op::kMin, Acc::kMin},
    {"ReduceProd", Op::kProd, Acc::kProd},    {"ReduceL1", Op::kL1, Acc::kSum},
    {"ReduceL2", Op::kL2, Acc::kSum},         {"ReduceLogSum", Op::kLogSum, Acc::kSum},
    {"ReduceLogSumExp", Op::kLogSumExp, Acc::kLse}, {"ReduceSumSquare", Op::kSumSquare, Acc::kSum}};

struct Params {
  Geometry g;
  Op op = Op::kSum;
  int pre = 0;  // kSum: 0 identity, 1 |x|, 2 x*x
  float inv_r = 1.f;
};

template <Acc A> __device__ __forceinline__ float init_of() {
  if (A == Acc::kProd) return 1.f;
  if (A == Acc::kMax || A == Acc::kLse) return -INFINITY;
  if (A == Acc::kMin) return INFINITY;
  return 0.f;
}

template <Acc A> __device__ __forceinline__ float comb(float a, float b) {
  if (A == Acc::kProd) return a * b;
  if (A == Acc::kMax || A == Acc::kLse) return red::nan_max(a, b);
  if (A == Acc::kMin) return red::nan_min(a, b);
  return a + b;
}

// The per-element map: pre for sums; LogSumExp's first pass takes the max
// of the finite values (infinities count as -inf), its second pass exp(x - m).
template <Acc A> __device__ __forceinline__ float tap(float v, const Params& p, float shift, bool second) {
  if (A == Acc::kSum) return p.pre == 0 ? v : p.pre == 1 ? fabsf(v) : v * v;
  if (A == Acc::kLse) return second ? expf(v - shift) : (fabsf(v) == INFINITY ? -INFINITY : v);
  return v;
}

__device__ __forceinline__ float finish(const Params& p, float acc, float shift) {
  if (p.g.R == 0) {
    switch (p.op) {
      case Op::kMean: return NAN;
      case Op::kMax: case Op::kLogSum: case Op::kLogSumExp: return -INFINITY;
      case Op::kMin: return INFINITY;
      case Op::kProd: return 1.f;
      default: return 0.f;
    }
  }
  switch (p.op) {
    case Op::kMean: return acc * p.inv_r;
    case Op::kL2: return sqrtf(acc);
    case Op::kLogSum: return logf(acc);
    case Op::kLogSumExp: return logf(acc) + shift;
    default: return acc;
  }
}

// LogSumExp shifts by the largest finite value (0 when there is none).
__device__ __forceinline__ float lse_shift(float m) { return fabsf(m) == INFINITY ? 0.f : m; }

// Accumulates the reduced elements of one slab that this lane owns: every
// outer reduced index, and inner indices j0, j0 + jstep, ...
template <Acc A, typename T>
__device__ __forceinline__ float accumulate(const T* x, int64_t base, const Params& p, int64_t j0, int64_t jstep,
                                            float shift, bool second) {
  const Geometry& g = p.g;
  const int64_t outer = g.r_inner ? g.R / g.r_inner : 0, sx = red::inner_stride(g);
  float acc = (A == Acc::kLse && second) ? 0.f : init_of<A>();
  for (int64_t q = 0; q < outer; ++q) {
    const T* row = x + base + red::outer_offset(g, q);
    for (int64_t j = j0; j < g.r_inner; j += jstep) {
      const float v = tap<A>(red::ld(row + j * sx), p, shift, second);
      acc = (A == Acc::kLse && second) ? acc + v : comb<A>(acc, v);
    }
  }
  return acc;
}

template <Acc A, typename T> __global__ void reduce_thread(const T* __restrict__ x, T* __restrict__ y, Params p) {
  for (int64_t o = red::global_thread(); o < p.g.outputs; o += red::grid_threads()) {
    int64_t xo, yo;
    red::kept_offsets(p.g, o, xo, yo);
    float shift = 0.f;
    if (A == Acc::kLse) shift = lse_shift(accumulate<A>(x, xo, p, 0, 1, 0.f, false));
    const float acc = accumulate<A>(x, xo, p, 0, 1, shift, true);
    red::st(y + yo, finish(p, acc, shift));
  }
}

// kWarps warps per block, one output per warp (kWarps == 0: the whole block).
template <Acc A, typename T, int kWarps>
__global__ void reduce_group(const T* __restrict__ x, T* __restrict__ y, Params p) {
  __shared__ float sh[32];
  const int lane = kWarps ? (threadIdx.x & 31) : threadIdx.x;
  const int width = kWarps ? 32 : blockDim.x;
  const int64_t first = kWarps ? int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5) : blockIdx.x;
  const int64_t step = kWarps ? int64_t(gridDim.x) * kWarps : gridDim.x;
  auto all = [&](float v, auto f) { return kWarps ? red::warp_all(v, f) : red::block_all(v, f, sh); };
  auto c = [](float a, float b) { return comb<A>(a, b); };
  auto add = [](float a, float b) { return a + b; };
  for (int64_t o = first; o < p.g.outputs; o += step) {  // uniform per warp (or block)
    int64_t xo, yo;
    red::kept_offsets(p.g, o, xo, yo);
    float shift = 0.f;
    if (A == Acc::kLse) shift = lse_shift(all(accumulate<A>(x, xo, p, lane, width, 0.f, false), c));
    const float part = accumulate<A>(x, xo, p, lane, width, shift, true);
    const float acc = (A == Acc::kLse) ? all(part, add) : all(part, c);
    if (lane == 0) red::st(y + yo, finish(p, acc, shift));
  }
}

// Few outputs over long reductions: blocks (chunk, output) each fold one
// chunk of the reduced range into the workspace, then one thread per output
// folds the chunks. LogSumExp runs the pair twice: max, then sum of exp.
template <Acc A, typename T>
__global__ void reduce_partial(const T* __restrict__ x, float* __restrict__ part, const float* __restrict__ shift,
                               Params p, int64_t chunk, bool second) {
  __shared__ float sh[32];
  const Geometry& g = p.g;
  const int64_t sx = red::inner_stride(g), j0 = int64_t(blockIdx.x) * chunk;
  const int64_t j1 = j0 + chunk < g.R ? j0 + chunk : g.R;
  const bool sum2 = A == Acc::kLse && second;
  auto c = [](float a, float b) { return comb<A>(a, b); };
  auto add = [](float a, float b) { return a + b; };
  for (int64_t o = blockIdx.y; o < g.outputs; o += gridDim.y) {
    int64_t xo, yo;
    red::kept_offsets(g, o, xo, yo);
    const float sft = sum2 ? shift[o] : 0.f;
    float acc = sum2 ? 0.f : init_of<A>();
    if (g.nr <= 1 || g.r_inner < int64_t(blockDim.x)) {
      for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        const int64_t off = g.nr <= 1 ? j * sx : red::outer_offset(g, j / g.r_inner) + (j % g.r_inner) * sx;
        const float v = tap<A>(red::ld(x + xo + off), p, sft, second);
        acc = sum2 ? acc + v : comb<A>(acc, v);
      }
    } else if (j0 + threadIdx.x < j1) {
      // Long inner rows: step through them, dividing only when a row ends.
      int64_t j = j0 + threadIdx.x, q = j / g.r_inner, jj = j % g.r_inner;
      const T* row = x + xo + red::outer_offset(g, q);
      for (; j < j1; j += blockDim.x) {
        const float v = tap<A>(red::ld(row + jj * sx), p, sft, second);
        acc = sum2 ? acc + v : comb<A>(acc, v);
        jj += blockDim.x;
        if (jj >= g.r_inner) {  // at most one row boundary per step
          jj -= g.r_inner;
          row = x + xo + red::outer_offset(g, ++q);
        }
      }
    }
    acc = sum2 ? red::block_all(acc, add, sh) : red::block_all(acc, c, sh);
    if (threadIdx.x == 0) part[o * gridDim.x + blockIdx.x] = acc;
  }
}

template <Acc A, typename T>
__global__ void reduce_fold(const float* __restrict__ part, T* __restrict__ y, float* __restrict__ shift, Params p,
                            int splits, bool second) {
  const bool sum2 = A == Acc::kLse && second;
  for (int64_t o = red::global_thread(); o < p.g.outputs; o += red::grid_threads()) {
    float acc = sum2 ? 0.f : init_of<A>();
    for (int k = 0; k < splits; ++k) acc = sum2 ? acc + part[o * splits + k] : comb<A>(acc, part[o * splits + k]);
    if (A == Acc::kLse && !second) {
      shift[o] = lse_shift(acc);
      continue;
    }
    int64_t xo, yo;
    red::kept_offsets(p.g, o, xo, yo);
    red::st(y + yo, finish(p, acc, A == Acc::kLse ? shift[o] : 0.f));
  }
}

enum class Shape : int { kThread, kWarp, kBlock, kSplit };

class ReduceKernel : public Kernel {
 public:
  ReduceKernel(Params p, Acc acc, bool half, Shape shape) : p_(p), acc_(acc), half_(half), shape_(shape) {
    if (shape == Shape::kSplit) {
      // About 64K elements a block, at most 1024 chunks an output.
      const int64_t want = (p.g.R + 65535) / 65536;
      splits_ = int(want < 1 ? 1 : want > 1024 ? 1024 : want);
      chunk_ = (p.g.R + splits_ - 1) / splits_;
    }
  }

  size_t workspace_bytes() const override {
    return shape_ == Shape::kSplit ? size_t(p_.g.outputs) * size_t(splits_ + 1) * sizeof(float) : 0;
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (p_.g.outputs == 0) return;
    if (half_) launch(static_cast<const __half*>(in[0]), static_cast<__half*>(out[0]), l.stream, l.workspace);
    else launch(static_cast<const float*>(in[0]), static_cast<float*>(out[0]), l.stream, l.workspace);
  }

 private:
  template <typename T> void launch(const T* x, T* y, cudaStream_t s, void* ws) const {
    switch (acc_) {
      case Acc::kSum: return go<Acc::kSum>(x, y, s, ws);
      case Acc::kProd: return go<Acc::kProd>(x, y, s, ws);
      case Acc::kMax: return go<Acc::kMax>(x, y, s, ws);
      case Acc::kMin: return go<Acc::kMin>(x, y, s, ws);
      case Acc::kLse: return go<Acc::kLse>(x, y, s, ws);
    }
  }
  template <Acc A, typename T> void go(const T* x, T* y, cudaStream_t s, void* ws) const {
    const int64_t n = p_.g.outputs;
    if (shape_ == Shape::kThread) {
      reduce_thread<A, T><<<grid_for(n, 256), 256, 0, s>>>(x, y, p_);
    } else if (shape_ == Shape::kWarp) {
      reduce_group<A, T, 8><<<grid_for(n, 8), 256, 0, s>>>(x, y, p_);
    } else if (shape_ == Shape::kBlock) {
      reduce_group<A, T, 0><<<grid_for(n, 1), 256, 0, s>>>(x, y, p_);
    } else {
      float* part = static_cast<float*>(ws);
      float* shift = part + n * splits_;
      const dim3 grid(unsigned(splits_), unsigned(n < 65535 ? n : 65535));
      for (int pass = 0; pass < (A == Acc::kLse ? 2 : 1); ++pass) {
        reduce_partial<A, T><<<grid, 256, 0, s>>>(x, part, shift, p_, chunk_, pass == 1);
        reduce_fold<A, T><<<grid_for(n, 256), 256, 0, s>>>(part, y, shift, p_, splits_, pass == 1);
      }
    }
    KILN_CUDA_LAUNCHED("reduce kernel");
  }

  Params p_;
  Acc acc_;
  bool half_;
  Shape shape_;
  int splits_ = 1;
  int64_t chunk_ = 0;
};

bool float_dtype(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

// Axes as the CPU kernel resolves them: constant input 1, else the attribute;
// none means all axes, or a plain copy with noop_with_empty_axes.
std::vector<int64_t> reduce_axes(const ir::Node& n, bool* noop, std::string* why) {
  const int64_t rank = int64_t(n.in(0)->dims.size());
  std::vector<int64_t> axes;
  *noop = false;
  if (const ir::Value* a = n.in(1)) {
    if (ir::numel_of(a->dims) > 0) {
      if (!a->is_constant()) {
        if (why) *why = "axes input '" + a->name + "' is not a constant";
        return {};
      }
      axes = a->constant->to_int64();
    }
  } else if (n.has("axes")) {
    axes = n.ints("axes");
  }
  if (axes.empty()) {
    *noop = n.i("noop_with_empty_axes", 0) != 0;
    if (!*noop)
      for (int64_t d = 0; d < rank; ++d) axes.push_back(d);
  }
  for (int64_t& ax : axes) ax = ir::normalize_axis(n, ax, rank);
  return axes;
}

std::vector<Tactic> reduce_tactics(const ir::Node& n, std::string* why, Op op, Acc acc) {
  const ir::Value* x = n.in(0);
  const ir::Value* yv = n.outputs.empty() ? nullptr : n.outputs[0];
  if (!x || !yv) {
    if (why) *why = "missing input or output";
    return {};
  }
  if (!float_dtype(x->dtype) || yv->dtype != x->dtype) {
    if (why) *why = std::string("input dtype ") + dtype_name(x->dtype) + " (CUDA reductions take fp32/fp16)";
    return {};
  }
  bool noop = false;
  std::string axes_why;
  std::vector<int64_t> axes = reduce_axes(n, &noop, &axes_why);
  if (!axes_why.empty()) {
    if (why) *why = axes_why;
    return {};
  }
  const TensorDesc xd = desc_of(n, *x), yd = desc_of(n, *yv);
  const int r = xd.rank;
  std::vector<bool> reduced(size_t(r), false);
  for (int64_t a : axes) reduced[size_t(a)] = true;
  // Output axis of each kept input axis: keepdims keeps positions, else they close up.
  const bool keep = noop || n.i("keepdims", 1) != 0;
  std::vector<int> y_axis(size_t(r), -1);
  int k = 0;
  for (int a = 0; a < r; ++a) {
    if (!reduced[size_t(a)]) y_axis[size_t(a)] = keep ? a : k++;
  }
  if (yd.rank != (keep ? r : k)) {
    if (why) *why = "output rank " + std::to_string(yd.rank) + " does not match the reduced input";
    return {};
  }
  Params p;
  p.g = red::make_geometry(xd, yd, reduced, y_axis);
  p.op = noop ? Op::kSum : op;  // noop: each output reads its one element
  if (noop) acc = Acc::kSum;
  p.pre = p.op == Op::kL1 ? 1 : (p.op == Op::kL2 || p.op == Op::kSumSquare) ? 2 : 0;
  p.inv_r = p.g.R > 0 ? 1.f / float(p.g.R) : 0.f;
  const bool half = x->dtype == DataType::kFloat16;
  std::vector<Tactic> t;
  auto add = [&](const char* name, Shape s) {
    t.push_back({name, [p, acc, half, s] { return std::make_unique<ReduceKernel>(p, acc, half, s); }});
  };
  // A thread per output only pays with enough outputs; a warp/block per
  // output only with enough elements per output.
  if (p.g.outputs >= 128 || p.g.R <= 64) add("reduce_thread", Shape::kThread);
  if (p.g.R > 1) add("reduce_warp", Shape::kWarp);
  if (p.g.R >= 1024) add("reduce_block", Shape::kBlock);
  if (p.g.R >= 65536 && p.g.outputs <= 4096) add("reduce_split", Shape::kSplit);
  return t;
}

// ArgMax / ArgMin over one axis, int64 indices.
struct ArgParams {
  Geometry g;
  bool is_max = true, last = false;
};

template <typename T>
__device__ __forceinline__ void arg_scan(const T* x, int64_t base, const ArgParams& p, int64_t j0, int64_t step,
                                         float& best, int64_t& bi) {
  const int64_t sx = red::inner_stride(p.g);
  best = NAN;
  bi = -1;
  for (int64_t j = j0; j < p.g.R; j += step) {
    const float v = red::ld(x + base + j * sx);
    if (bi < 0 || red::arg_better(v, j, best, bi, p.is_max, p.last)) {
      best = v;
      bi = j;
    }
  }
}

template <typename T> __global__ void arg_thread(const T* __restrict__ x, int64_t* __restrict__ y, ArgParams p) {
  for (int64_t o = red::global_thread(); o < p.g.outputs; o += red::grid_threads()) {
    int64_t xo, yo, bi;
    float best;
    red::kept_offsets(p.g, o, xo, yo);
    arg_scan(x, xo, p, 0, 1, best, bi);
    y[yo] = bi < 0 ? 0 : bi;
  }
}

template <typename T> __global__ void arg_warp(const T* __restrict__ x, int64_t* __restrict__ y, ArgParams p) {
  const int lane = threadIdx.x & 31;
  for (int64_t o = int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5); o < p.g.outputs; o += int64_t(gridDim.x) * 8) {
    int64_t xo, yo, bi;
    float best;
    red::kept_offsets(p.g, o, xo, yo);
    arg_scan(x, xo, p, lane, 32, best, bi);
    red::warp_arg(best, bi, p.is_max, p.last);
    if (lane == 0) y[yo] = bi < 0 ? 0 : bi;
  }
}

class ArgKernel : public Kernel {
 public:
  ArgKernel(ArgParams p, bool half, bool warp) : p_(p), half_(half), warp_(warp) {}
  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (p_.g.outputs == 0) return;
    if (half_) go(static_cast<const __half*>(in[0]), static_cast<int64_t*>(out[0]), l.stream);
    else go(static_cast<const float*>(in[0]), static_cast<int64_t*>(out[0]), l.stream);
  }

 private:
  template <typename T> void go(const T* x, int64_t* y, cudaStream_t s) const {
    if (warp_) arg_warp<T><<<grid_for(p_.g.outputs, 8), 256, 0, s>>>(x, y, p_);
    else arg_thread<T><<<grid_for(p_.g.outputs, 256), 256, 0, s>>>(x, y, p_);
    KILN_CUDA_LAUNCHED("arg reduce kernel");
  }
  ArgParams p_;
  bool half_, warp_;
};

std::vector<Tactic> arg_tactics(const ir::Node& n, std::string* why, bool is_max) {
  const ir::Value* x = n.in(0);
  const ir::Value* yv = n.outputs.empty() ? nullptr : n.outputs[0];
  if (!x || !yv || yv->dtype != DataType::kInt64) {
    if (why) *why = "missing input, or output not int64";
    return {};
  }
  if (!float_dtype(x->dtype)) {
    if (why) *why = std::string("input dtype ") + dtype_name(x->dtype) + " (CUDA ArgMax/ArgMin take fp32/fp16)";
    return {};
  }
  const TensorDesc xd = desc_of(n, *x), yd = desc_of(n, *yv);
  const int r = xd.rank;
  if (r == 0) {
    if (why) *why = "scalar input";
    return {};
  }
  const int64_t axis = ir::normalize_axis(n, n.i("axis", 0), r);
  const bool keep = n.i("keepdims", 1) != 0;
  std::vector<bool> reduced(size_t(r), false);
  reduced[size_t(axis)] = true;
  std::vector<int> y_axis(size_t(r), -1);
  int k = 0;
  for (int a = 0; a < r; ++a)
    if (a != axis) y_axis[size_t(a)] = keep ? a : k++;
  if (yd.rank != (keep ? r : k)) {
    if (why) *why = "output rank " + std::to_string(yd.rank) + " does not match the reduced input";
    return {};
  }
  ArgParams p;
  p.g = red::make_geometry(xd, yd, reduced, y_axis);
  p.is_max = is_max;
  p.last = n.i("select_last_index", 0) != 0;
  // One reduced axis: make_geometry keeps it (or drops it when of extent 1).
  const bool half = x->dtype == DataType::kFloat16;
  std::vector<Tactic> t;
  t.push_back({"arg_thread", [p, half] { return std::make_unique<ArgKernel>(p, half, false); }});
  if (p.g.R > 1) t.push_back({"arg_warp", [p, half] { return std::make_unique<ArgKernel>(p, half, true); }});
  return t;
}

}  // namespace

void register_reduce_kernels(Registry& r) {
  OpTraits traits;
  traits.fp16_inputs = {0};
  traits.any_layout = true;
  for (const OpDesc& d : kOps) {
    const Op op = d.op;
    const Acc acc = d.acc;
    r.add(d.name, [op, acc](const ir::Node& n, std::string* why) { return reduce_tactics(n, why, op, acc); }, traits);
  }
  r.add("ArgMax", [](const ir::Node& n, std::string* why) { return arg_tactics(n, why, true); }, traits);
  r.add("ArgMin", [](const ir::Node& n, std::string* why) { return arg_tactics(n, why, false); }, traits);
  register_softmax_kernels(r);
}

}  // namespace kiln::cuda
