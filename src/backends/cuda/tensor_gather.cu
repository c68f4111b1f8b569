// Gather and Pad on the GPU. Both walk the output in its memory order and
// compute a source element per output element; they move raw elements of
// 1-8 bytes, so every dtype works.
//
// Gather: indices are int32/int64, constant or computed at run time; negative
// ones count from the end. A run-time index outside the axis cannot raise an
// error from the device, so that output element is written as zero
// (constant indices are checked when the kernel is built).
// Pad: modes constant, reflect, edge and wrap with the CPU kernel's mapping.
#include <algorithm>
#include <numeric>

#include "backends/cuda/common.h"
#include "backends/cuda/tensor_plan.cuh"
#include "ir/op_registry.h"
#include "ir/ops/tensor_params.h"

namespace kiln::cuda {

namespace {

constexpr int kThreads = 256;

struct GatherArgs {
  const void* src = nullptr;
  const void* idx = nullptr;
  void* dst = nullptr;
  int64_t total = 0;
  int64_t dim = 0;          // data axis length
  int64_t axis_stride = 0;  // data stride along the axis
  int idx64 = 0;
  ix::Geometry<3> g;  // out, data (0 along index axes), indices
};

template <class U, class I> __global__ void __launch_bounds__(kThreads) gather_kernel(const __grid_constant__ GatherArgs a) {
  const U* src = static_cast<const U*>(a.src);
  U* dst = static_cast<U*>(a.dst);
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < a.total; i += int64_t(gridDim.x) * kThreads) {
    I off[3];
    ix::locate<I, 3>(a.g, I(i), off);
    int64_t v = a.idx64 ? static_cast<const int64_t*>(a.idx)[off[2]] : static_cast<const int32_t*>(a.idx)[off[2]];
    if (v < 0) v += a.dim;
    dst[off[0]] = (v >= 0 && v < a.dim) ? src[int64_t(off[1]) + v * a.axis_stride] : U(0);
  }
}

template <class I> void launch_gather(size_t es, const GatherArgs& a, cudaStream_t s) {
  const unsigned grid = grid_for(a.total, kThreads);
  switch (es) {
    case 1: gather_kernel<uint8_t, I><<<grid, kThreads, 0, s>>>(a); break;
    case 2: gather_kernel<uint16_t, I><<<grid, kThreads, 0, s>>>(a); break;
    case 4: gather_kernel<uint32_t, I><<<grid, kThreads, 0, s>>>(a); break;
    default: gather_kernel<uint64_t, I><<<grid, kThreads, 0, s>>>(a); break;
  }
}

class GatherKernel : public Kernel {
 public:
  explicit GatherKernel(const ir::Node& n) {
    const ir::Value& x = *n.inputs[0];
    const ir::Value& iv = *n.inputs[1];
    const ir::Value& y = *n.outputs[0];
    const int64_t r = int64_t(x.dims.size()), q = int64_t(iv.dims.size());
    const int64_t axis = ir::normalize_axis(n, n.i("axis", 0), r);
    es_ = dtype_size(x.dtype);
    const std::vector<int64_t> xs = strides_of(x), is = strides_of(iv);
    ix::Plan p;
    p.dims = y.dims;
    std::vector<int64_t> ds(y.dims.size(), 0), ids(y.dims.size(), 0);
    for (int64_t a = 0; a < int64_t(y.dims.size()); ++a) {
      if (a < axis) ds[size_t(a)] = xs[size_t(a)];
      else if (a < axis + q) ids[size_t(a)] = is[size_t(a - axis)];
      else ds[size_t(a)] = xs[size_t(a - q + 1)];
    }
    p.add(strides_of(y));
    p.add(ds);
    p.add(ids);
    p = ix::normalized(p);
    a_.total = p.total();
    a_.dim = x.dims[size_t(axis)];
    a_.axis_stride = xs[size_t(axis)];
    a_.idx64 = iv.dtype == DataType::kInt64;
    a_.g = ix::geometry_of<3>(p, n.label());
    // Data offsets add index * axis_stride on top of the plan's offsets.
    small_ = ix::fits32(p) && a_.dim * std::max<int64_t>(1, a_.axis_stride) < (int64_t(1) << 31);
    if (const ir::Tensor* c = constant_input(n, 1)) {
      for (int64_t v : c->to_int64())
        if (v < -a_.dim || v >= a_.dim)
          throw_bad_input(n.label() + ": index " + std::to_string(v) + " is out of range for an axis of " +
                          std::to_string(a_.dim));
    }
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (a_.total == 0) return;
    GatherArgs a = a_;
    a.src = in[0];
    a.idx = in[1];
    a.dst = out[0];
    if (small_) launch_gather<int32_t>(es_, a, l.stream);
    else launch_gather<int64_t>(es_, a, l.stream);
    KILN_CUDA_LAUNCHED("gather_kernel");
  }

 private:
  size_t es_ = 4;
  bool small_ = true;
  GatherArgs a_;
};

std::vector<Tactic> gather_tactics(const ir::Node& n, std::string* why) {
  const ir::Value* x = n.in(0);
  const ir::Value* iv = n.in(1);
  if (!x || !iv || n.outputs.size() != 1 || !n.outputs[0] ||
      (iv->dtype != DataType::kInt32 && iv->dtype != DataType::kInt64)) {
    if (why) *why = "Gather needs data and int32/int64 indices";
    return {};
  }
  if (n.outputs[0]->dims.size() > size_t(kMaxRank) || x->dims.size() > size_t(kMaxRank)) {
    if (why) *why = "rank above " + std::to_string(kMaxRank);
    return {};
  }
  const ir::Node* node = &n;
  return {{"gather", [node] { return std::unique_ptr<Kernel>(new GatherKernel(*node)); }}};
}

// ---- Pad ------------------------------------------------------------------

enum PadMode : int { kConstant, kReflect, kEdge, kWrap };

struct PadArgs {
  const void* src = nullptr;
  const void* value = nullptr;  // run-time constant_value (else `bits`)
  void* dst = nullptr;
  uint64_t bits = 0;            // constant_value as raw element bits
  int64_t total = 0;
  int rank = 1;
  int mode = kConstant;
  // Output axes in the output's memory order (outermost first).
  ix::DivMod dm[kMaxRank];
  int64_t out_dim[kMaxRank] = {}, in_dim[kMaxRank] = {}, begin[kMaxRank] = {}, in_str[kMaxRank] = {};
};

// Source coordinate of output coordinate o on one axis, -1 for the fill value.
__device__ __forceinline__ int64_t source_coord(int64_t i, int64_t dim, int mode) {
  if (i >= 0 && i < dim) return i;
  if (mode == kConstant) return -1;
  if (mode == kEdge) return i < 0 ? 0 : dim - 1;
  if (mode == kWrap) return ((i % dim) + dim) % dim;
  if (dim == 1) return 0;  // reflect: mirror without repeating the edge, period 2*(dim-1)
  const int64_t period = 2 * (dim - 1);
  const int64_t m = ((i % period) + period) % period;
  return m < dim ? m : period - m;
}

// Source offset of the first element of output row `row` (every axis but
// the innermost), or -1 when that row lies in the padding.
template <class I> __device__ __forceinline__ I pad_row(const PadArgs& a, I row) {
  I off = 0;
  bool inside = true;
#pragma unroll
  for (int d = kMaxRank - 2; d >= 0; --d) {
    if (d < a.rank - 1) {
      I o = row;
      if (d > 0) {
        I q;
        if constexpr (sizeof(I) == 4) q = I(a.dm[d].div(uint32_t(row)));
        else q = row / I(a.out_dim[d]);
        o = row - q * I(a.out_dim[d]);
        row = q;
      }
      const int64_t c = source_coord(int64_t(o) - a.begin[d], a.in_dim[d], a.mode);
      inside = inside && c >= 0;
      off += I(c) * I(a.in_str[d]);
    }
  }
  return inside ? off : I(-1);
}

// P consecutive output elements per thread (one aligned store); the first
// element's row is decomposed once and the rest step along it, moving to the
// next row when they cross its end. The last total % P elements go one by one.
template <class U, class I, int P>
__global__ void __launch_bounds__(kThreads) pad_kernel(const __grid_constant__ PadArgs a) {
  const U* src = static_cast<const U*>(a.src);
  U* dst = static_cast<U*>(a.dst);
  U fill;
  if (a.value) fill = *static_cast<const U*>(a.value);
  else memcpy(&fill, &a.bits, sizeof(U));
  const int last = a.rank - 1;
  const I inner = I(a.out_dim[last]);
  const int64_t begin = a.begin[last], dim = a.in_dim[last], step = a.in_str[last];
  struct alignas(sizeof(U) * P) Out {
    U v[P];
  };
  auto row_of = [&](I i) -> I {
    if (last == 0) return 0;
    if constexpr (sizeof(I) == 4) return I(a.dm[last].div(uint32_t(i)));
    else return i / inner;
  };
  const int64_t packs = a.total / P, stride = int64_t(gridDim.x) * kThreads;
  const int64_t t0 = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  for (int64_t t = t0; t < packs; t += stride) {
    const I i = I(t * P);
    I row = row_of(i), col = i - row * inner;
    I base = pad_row<I>(a, row);
    Out o;
#pragma unroll
    for (int j = 0; j < P; ++j) {
      if (j > 0 && col == inner) {
        col = 0;
        base = pad_row<I>(a, ++row);
      }
      const int64_t c = source_coord(int64_t(col) - begin, dim, a.mode);
      o.v[j] = base >= 0 && c >= 0 ? src[base + I(c) * I(step)] : fill;
      ++col;
    }
    *reinterpret_cast<Out*>(dst + i) = o;
  }
  for (int64_t e = packs * P + t0; e < a.total; e += stride) {
    const I i = I(e), row = row_of(i), base = pad_row<I>(a, row);
    const int64_t c = source_coord(int64_t(i - row * inner) - begin, dim, a.mode);
    dst[i] = base >= 0 && c >= 0 ? src[base + I(c) * I(step)] : fill;
  }
}

class PadKernel : public Kernel {
 public:
  explicit PadKernel(const ir::Node& n) {
    const ir::Value& x = *n.inputs[0];
    const ir::Value& y = *n.outputs[0];
    const ir::PadParams p = ir::pad_params(n);
    es_ = dtype_size(x.dtype);
    a_.mode = p.mode == "reflect" ? kReflect : p.mode == "edge" ? kEdge : p.mode == "wrap" ? kWrap : kConstant;
    const size_t r = x.dims.size();
    if (r > size_t(kMaxRank)) throw_unsupported(n.label() + ": rank above " + std::to_string(kMaxRank));
    // Output memory order: axes by output stride, largest first; the output
    // is dense, so element i of that order is at offset i.
    const std::vector<int64_t> ys = strides_of(y), xs = strides_of(x);
    std::vector<size_t> order(r);
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](size_t u, size_t v) { return ys[u] > ys[v]; });
    a_.rank = r == 0 ? 1 : int(r);
    a_.out_dim[0] = a_.in_dim[0] = 1;  // rank 0: one element
    for (size_t k = 0; k < r; ++k) {
      const size_t ax = order[k];
      a_.out_dim[k] = y.dims[ax];
      a_.in_dim[k] = x.dims[ax];
      a_.begin[k] = p.begin[ax];
      a_.in_str[k] = xs[ax];
    }
    a_.total = ir::numel_of(y.dims);
    int64_t reach = 1;  // largest input offset + 1
    for (size_t k = 0; k < r; ++k) reach += std::max<int64_t>(0, x.dims[k] - 1) * xs[k];
    small_ = a_.total < (int64_t(1) << 31) && reach < (int64_t(1) << 31);
    for (int k = 0; k < a_.rank; ++k) a_.dm[k] = ix::DivMod(uint32_t(small_ && a_.out_dim[k] > 0 ? a_.out_dim[k] : 1));
    const ir::Value* cv = n.in(2);
    if (cv && ir::numel_of(cv->dims) > 0) {
      if (const ir::Tensor* c = constant_input(n, 2)) {
        ir::Tensor t = *c;
        if (t.dtype() != x.dtype) {  // e.g. an fp32 value for fp16 data
          if (x.dtype != DataType::kFloat16) throw_bad_input(n.label() + ": constant_value dtype differs from data");
          const uint16_t h = float_to_half(float(t.to_double()[0]));
          memcpy(&a_.bits, &h, 2);
        } else {
          memcpy(&a_.bits, t.raw(), es_);
        }
      } else {
        runtime_value_ = true;
      }
    }
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (a_.total == 0) return;
    PadArgs a = a_;
    a.src = in[0];
    a.dst = out[0];
    if (runtime_value_) a.value = in[2];
    // Four elements a thread when the stores align.
    const bool four = reinterpret_cast<uintptr_t>(a.dst) % (4 * es_) == 0;
    const unsigned grid = grid_for(four ? (a.total + 3) / 4 : a.total, kThreads);
    switch (es_) {
      case 1: launch<uint8_t>(a, four, grid, l.stream); break;
      case 2: launch<uint16_t>(a, four, grid, l.stream); break;
      case 4: launch<uint32_t>(a, four, grid, l.stream); break;
      default: launch<uint64_t>(a, four, grid, l.stream); break;
    }
    KILN_CUDA_LAUNCHED("pad_kernel");
  }

 private:
  template <class U> void launch(const PadArgs& a, bool four, unsigned grid, cudaStream_t s) const {
    if (small_ && four) pad_kernel<U, int32_t, 4><<<grid, kThreads, 0, s>>>(a);
    else if (small_) pad_kernel<U, int32_t, 1><<<grid, kThreads, 0, s>>>(a);
    else if (four) pad_kernel<U, int64_t, 4><<<grid, kThreads, 0, s>>>(a);
    else pad_kernel<U, int64_t, 1><<<grid, kThreads, 0, s>>>(a);
  }

  size_t es_ = 4;
  bool small_ = true, runtime_value_ = false;
  PadArgs a_;
};

std::vector<Tactic> pad_tactics(const ir::Node& n, std::string* why) {
  const ir::Value* x = n.in(0);
  if (!x || n.outputs.size() != 1 || !n.outputs[0] || x->dims.size() > size_t(kMaxRank)) {
    if (why) *why = "Pad needs one input of rank <= " + std::to_string(kMaxRank) + " and one output";
    return {};
  }
  const ir::Value* cv = n.in(2);
  if (cv && !cv->is_constant() && ir::numel_of(cv->dims) > 0 && cv->dtype != x->dtype) {
    if (why) *why = "a run-time constant_value must have the data's dtype";
    return {};
  }
  const ir::Node* node = &n;
  return {{"pad_" + n.s("mode", "constant"), [node] { return std::unique_ptr<Kernel>(new PadKernel(*node)); }}};
}

}  // namespace

void register_gather_pad_kernels(Registry& r) {
  OpTraits gather;
  gather.fp16_inputs = {0};
  gather.any_layout = true;
  r.add("Gather", gather_tactics, gather);
  OpTraits pad = gather;
  pad.fp16_inputs = {0, 2};  // constant_value must share the data's dtype (shape inference checks)
  pad.out_layout = OpTraits::kLikeInput0;
  r.add("Pad", pad_tactics, pad);
}

}  // namespace kiln::cuda
