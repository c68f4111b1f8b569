// Data-movement CUDA kernels that are pure copies: Transpose, Slice, Expand,
// Tile, Concat, Split, DepthToSpace/SpaceToDepth and the reshaping ops. Each
// is expressed as one or more copy jobs: an iteration space with the
// output's and the input's strides (tensor_plan.cuh), so every layout
// combination is the same kernel. Copies move raw elements of 1-8 bytes, so
// every dtype works; rows that are contiguous on both sides are moved in
// units of up to 16 bytes, and jobs that are one contiguous block become
// cudaMemcpyAsync. Up to kMaxJobs jobs (Concat inputs, Split outputs) share
// one launch. Gather and Pad are in tensor_gather.cu.
#include <algorithm>

#include "backends/cuda/common.h"
#include "backends/cuda/tensor_plan.cuh"
#include "ir/op_registry.h"
#include "ir/ops/tensor_params.h"

namespace kiln::cuda {

void register_gather_pad_kernels(Registry& r);  // tensor_gather.cu

namespace {

constexpr int kThreads = 256;
constexpr int kMaxJobs = 4;

struct Job {
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t total = 0;
  ix::Geometry<2> g;  // out, in
};
struct JobArgs {
  Job job[kMaxJobs];
};

struct alignas(16) U16 { uint4 v; };
struct alignas(8) U8 { uint2 v; };

// blockIdx.y picks the job.
template <class U, class I> __global__ void __launch_bounds__(kThreads) copy_kernel(const __grid_constant__ JobArgs a) {
  const Job& j = a.job[blockIdx.y];
  const U* src = static_cast<const U*>(j.src);
  U* dst = static_cast<U*>(j.dst);
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < j.total; i += int64_t(gridDim.x) * kThreads) {
    I off[2];
    ix::locate<I, 2>(j.g, I(i), off);
    dst[off[0]] = src[off[1]];
  }
}

// One copy job on the host: operand 0 = output k, operand 1 = input k, both
// by node index; `ws_out`/`ws_in` route through the workspace instead.
struct Spec {
  ix::Plan plan;  // normalized, element units
  int in = 0, out = 0;
  bool ws_in = false, ws_out = false;
};

bool contiguous(const ix::Plan& p) { return p.rank() == 1 && p.strides[0][0] == 1 && p.strides[1][0] == 1; }

// The plan in units of `k` elements, if its rows allow it (else false).
bool widen(const ix::Plan& p, int64_t k, ix::Plan* w) {
  if (k == 1) {
    *w = p;
    return true;
  }
  const int last = p.rank() - 1;
  if (p.strides[0][size_t(last)] != 1 || p.strides[1][size_t(last)] != 1 || p.dims[size_t(last)] % k) return false;
  for (size_t o = 0; o < 2; ++o) {
    if (p.base[o] % k) return false;
    for (int a = 0; a < last; ++a)
      if (p.strides[o][size_t(a)] % k) return false;
  }
  *w = p;
  w->dims[size_t(last)] /= k;
  for (size_t o = 0; o < 2; ++o) {
    w->base[o] /= k;
    for (int a = 0; a < last; ++a) w->strides[o][size_t(a)] /= k;
  }
  return true;
}

class CopyKernel : public Kernel {
 public:
  // tiled: run the single job through the shared-memory transpose.
  CopyKernel(const ir::Node& n, std::vector<Spec> specs, size_t esize, size_t ws_bytes, bool tiled)
      : specs_(std::move(specs)), es_(esize), ws_(ws_bytes), tiled_(tiled) {
    if (tiled_ && (specs_.size() != 1 || !ix::tile_args(specs_[0].plan, &tile_)))
      throw_internal(n.label() + ": no tiled path");
    // Launch steps for every unit size (log2 bytes 0..4) the plans allow, in
    // job order: a job reading the workspace starts a new launch after the
    // one writing it.
    for (int lg = 0; lg <= 4; ++lg) {
      const size_t unit = size_t(1) << lg;
      if (unit < es_) continue;
      std::vector<Step> steps;
      bool ok = true;
      for (size_t s = 0; s < specs_.size() && ok; ++s) {
        const ix::Plan& p = specs_[s].plan;
        if (contiguous(p)) {
          steps.push_back({int(s), {}});
          continue;
        }
        ix::Plan w;
        if (!widen(p, int64_t(unit / es_), &w)) {
          ok = false;
          break;
        }
        if (steps.empty() || steps.back().spec >= 0 || steps.back().g.count == kMaxJobs || specs_[s].ws_in)
          steps.push_back({-1, {}});
        Group& g = steps.back().g;
        g.spec[g.count] = int(s);
        g.args.job[g.count].total = w.total();
        g.args.job[g.count].g = ix::geometry_of<2>(w, n.label());
        g.small = g.small && ix::fits32(w);
        g.longest = std::max(g.longest, w.total());
        ++g.count;
      }
      if (!ok) continue;
      steps_[lg] = std::move(steps);
      allowed_[lg] = true;
    }
  }
  size_t workspace_bytes() const override { return ws_; }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    auto src_of = [&](const Spec& s) { return s.ws_in ? static_cast<const void*>(l.workspace) : in[size_t(s.in)]; };
    auto dst_of = [&](const Spec& s) { return s.ws_out ? l.workspace : out[size_t(s.out)]; };
    if (tiled_) {
      const Spec& s = specs_[0];
      if (s.plan.total() == 0) return;
      ix::TileArgs t = tile_;
      t.src = src_of(s);
      t.dst = dst_of(s);
      switch (es_) {
        case 1: ix::launch_tiled(t, ix::tiled_transpose_kernel<uint8_t, uint8_t>, l.stream); break;
        case 2: ix::launch_tiled(t, ix::tiled_transpose_kernel<uint16_t, uint16_t>, l.stream); break;
        case 4: ix::launch_tiled(t, ix::tiled_transpose_kernel<uint32_t, uint32_t>, l.stream); break;
        default: ix::launch_tiled(t, ix::tiled_transpose_kernel<uint64_t, uint64_t>, l.stream); break;
      }
      KILN_CUDA_LAUNCHED("tiled_transpose_kernel");
      return;
    }
    // Widest unit the plans and this call's pointers allow.
    uintptr_t bits = 16;
    for (const Spec& s : specs_)
      if (!contiguous(s.plan) && s.plan.total() > 0)
        bits |= reinterpret_cast<uintptr_t>(src_of(s)) | reinterpret_cast<uintptr_t>(dst_of(s));
    int lg = 4;
    while (lg > 0 && (!allowed_[lg] || (bits & ((uintptr_t(1) << lg) - 1)))) --lg;
    while (lg < 4 && !allowed_[lg]) ++lg;  // unit below the element size is never allowed
    for (const Step& st : steps_[lg]) {
      if (st.spec >= 0) {  // one contiguous block
        const Spec& s = specs_[size_t(st.spec)];
        if (s.plan.total() == 0) continue;
        auto* d = static_cast<uint8_t*>(dst_of(s)) + s.plan.base[0] * int64_t(es_);
        auto* x = static_cast<const uint8_t*>(src_of(s)) + s.plan.base[1] * int64_t(es_);
        KILN_CUDA_CHECK(cudaMemcpyAsync(d, x, size_t(s.plan.total()) * es_, cudaMemcpyDeviceToDevice, l.stream));
        continue;
      }
      if (st.g.longest == 0) continue;
      Group g = st.g;
      for (int k = 0; k < g.count; ++k) {
        g.args.job[k].src = src_of(specs_[size_t(g.spec[k])]);
        g.args.job[k].dst = dst_of(specs_[size_t(g.spec[k])]);
      }
      const dim3 grid(grid_for(g.longest, kThreads), unsigned(g.count));
      switch (lg) {
        case 0: launch<uint8_t>(g, grid, l.stream); break;
        case 1: launch<uint16_t>(g, grid, l.stream); break;
        case 2: launch<uint32_t>(g, grid, l.stream); break;
        case 3: launch<U8>(g, grid, l.stream); break;
        default: launch<U16>(g, grid, l.stream); break;
      }
      KILN_CUDA_LAUNCHED("copy_kernel");
    }
  }

 private:
  struct Group {
    JobArgs args;
    int spec[kMaxJobs] = {};
    int count = 0;
    bool small = true;
    int64_t longest = 0;
  };
  struct Step {
    int spec = -1;  // >= 0: a memcpy of that job; else the launch `g`
    Group g;
  };
  template <class U> void launch(const Group& g, dim3 grid, cudaStream_t s) const {
    if (g.small) copy_kernel<U, int32_t><<<grid, kThreads, 0, s>>>(g.args);
    else copy_kernel<U, int64_t><<<grid, kThreads, 0, s>>>(g.args);
  }

  std::vector<Spec> specs_;
  size_t es_, ws_;
  bool tiled_;
  ix::TileArgs tile_;
  bool allowed_[5] = {};
  std::vector<Step> steps_[5];
};

// ---- per-op copy specs --------------------------------------------------

const ir::Value& in_value(const ir::Node& n, size_t k) {
  const ir::Value* v = n.in(k);
  if (!v || !v->has_shape) throw_bad_input(n.label() + ": input " + std::to_string(k) + " is missing or has no shape");
  return *v;
}

Spec spec(ix::Plan p, int in = 0, int out = 0) {
  Spec s;
  s.plan = ix::normalized(p);
  s.in = in;
  s.out = out;
  return s;
}

ix::Plan view(const ir::Dims& dims, std::vector<int64_t> out_str, std::vector<int64_t> in_str, int64_t in_base = 0,
              int64_t out_base = 0) {
  ix::Plan p;
  p.dims = dims;
  p.add(std::move(out_str), out_base);
  p.add(std::move(in_str), in_base);
  return p;
}

// Whether a value's memory order is its logical row-major order.
bool dense(const ir::Value& v) { return v.layout == ir::Layout::kLinear || v.dims.size() != 4; }

struct Specs {
  std::vector<Spec> list;
  size_t ws = 0;
};

// Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout: element i of the
// input's row-major order goes to element i of the output's.
Specs reshape_specs(const ir::Node& n) {
  const ir::Value& x = in_value(n, 0);
  const ir::Value& y = *n.outputs[0];
  if (ir::numel_of(x.dims) != ir::numel_of(y.dims)) throw_bad_input(n.label() + ": input and output sizes differ");
  Specs s;
  if (x.dims == y.dims) s.list.push_back(spec(view(y.dims, strides_of(y), strides_of(x))));
  else if (dense(x)) s.list.push_back(spec(view(y.dims, strides_of(y), ix::dense_strides(y.dims))));
  else if (dense(y)) s.list.push_back(spec(view(x.dims, ix::dense_strides(x.dims), strides_of(x))));
  else {  // both channels-last with other dims: through a row-major copy in the workspace
    Spec a = spec(view(x.dims, ix::dense_strides(x.dims), strides_of(x)));
    a.ws_out = true;
    Spec b = spec(view(y.dims, strides_of(y), ix::dense_strides(y.dims)));
    b.ws_in = true;
    s.list = {a, b};
    s.ws = size_t(ir::numel_of(x.dims)) * dtype_size(x.dtype);
  }
  return s;
}

Specs transpose_specs(const ir::Node& n) {
  const ir::Value& x = in_value(n, 0);
  const ir::Value& y = *n.outputs[0];
  const size_t r = x.dims.size();
  std::vector<int64_t> perm = n.ints("perm");
  if (!n.has("perm"))
    for (size_t i = 0; i < r; ++i) perm.push_back(int64_t(r - 1 - i));
  if (perm.size() != r) throw_bad_input(n.label() + ": perm does not match the input rank");
  const std::vector<int64_t> xs = strides_of(x);
  std::vector<int64_t> in_str(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t p = perm[i] < 0 ? perm[i] + int64_t(r) : perm[i];
    if (p < 0 || p >= int64_t(r)) throw_bad_input(n.label() + ": perm entry out of range");
    in_str[i] = xs[size_t(p)];
  }
  return {{spec(view(y.dims, strides_of(y), in_str))}, 0};
}

Specs slice_specs(const ir::Node& n) {
  const ir::Value& x = in_value(n, 0);
  const ir::Value& y = *n.outputs[0];
  const ir::SliceParams p = ir::slice_params(n);
  const std::vector<int64_t> xs = strides_of(x);
  std::vector<int64_t> in_str(xs.size());
  int64_t base = 0;
  for (size_t d = 0; d < xs.size(); ++d) {
    in_str[d] = xs[d] * p.step[d];
    base += p.start[d] * xs[d];
  }
  return {{spec(view(y.dims, strides_of(y), in_str, base))}, 0};
}

Specs expand_specs(const ir::Node& n) {
  const ir::Value& x = in_value(n, 0);
  const ir::Value& y = *n.outputs[0];
  if (x.dims.size() > y.dims.size()) throw_bad_input(n.label() + ": input rank exceeds the output rank");
  return {{spec(view(y.dims, strides_of(y), ix::broadcast_strides(x, y.dims.size())))}, 0};
}

// Output axis d seen as (repeat, d): the repeat axis reads with stride 0.
Specs tile_specs(const ir::Node& n) {
  const ir::Value& x = in_value(n, 0);
  const ir::Value& y = *n.outputs[0];
  const std::vector<int64_t> xs = strides_of(x), ys = strides_of(y);
  ir::Dims dims;
  std::vector<int64_t> os, is;
  for (size_t d = 0; d < x.dims.size(); ++d) {
    const int64_t reps = x.dims[d] == 0 ? 0 : y.dims[d] / x.dims[d];
    dims.insert(dims.end(), {reps, x.dims[d]});
    os.insert(os.end(), {x.dims[d] * ys[d], ys[d]});
    is.insert(is.end(), {0, xs[d]});
  }
  return {{spec(view(dims, os, is))}, 0};
}

Specs concat_specs(const ir::Node& n) {
  const ir::Value& y = *n.outputs[0];
  const int64_t axis = ir::normalize_axis(n, n.i("axis", 0), int64_t(y.dims.size()));
  const std::vector<int64_t> ys = strides_of(y);
  Specs s;
  int64_t at = 0;
  for (size_t k = 0; k < n.inputs.size(); ++k) {
    const ir::Value& x = in_value(n, k);
    s.list.push_back(spec(view(x.dims, ys, strides_of(x), 0, at * ys[size_t(axis)]), int(k), 0));
    at += x.dims[size_t(axis)];
  }
  return s;
}

Specs split_specs(const ir::Node& n) {
  const ir::Value& x = in_value(n, 0);
  const int64_t axis = ir::normalize_axis(n, n.i("axis", 0), int64_t(x.dims.size()));
  const std::vector<int64_t> xs = strides_of(x);
  Specs s;
  int64_t at = 0;
  for (size_t k = 0; k < n.outputs.size(); ++k) {
    const ir::Value* y = n.outputs[k];
    if (!y) throw_bad_input(n.label() + ": output " + std::to_string(k) + " is missing");
    s.list.push_back(spec(view(y->dims, strides_of(*y), xs, at * xs[size_t(axis)]), 0, int(k)));
    at += y->dims[size_t(axis)];
  }
  return s;
}

// The CPU kernel's 6-D views, written with the values' own strides.
Specs depth_space_specs(const ir::Node& n) {
  const ir::Value& x = in_value(n, 0);
  const ir::Value& y = *n.outputs[0];
  const int64_t b = n.i("blocksize", 0);
  if (x.dims.size() != 4 || b <= 0) throw_bad_input(n.label() + ": needs a 4-D input and blocksize > 0");
  const std::vector<int64_t> s = strides_of(x), o = strides_of(y);
  const int64_t N = x.dims[0], C = x.dims[1], H = x.dims[2], W = x.dims[3];
  if (n.op_type == "DepthToSpace") {
    const int64_t c = C / (b * b);
    const bool crd = n.s("mode", "DCR") == "CRD";
    // Output (n, ch, h*b + b1, w*b + b2) reads channel b1*b*c + b2*c + ch (DCR) or ch*b*b + b1*b + b2 (CRD).
    const std::vector<int64_t> in_str = crd ? std::vector<int64_t>{s[0], b * b * s[1], s[2], b * s[1], s[3], s[1]}
                                            : std::vector<int64_t>{s[0], s[1], s[2], b * c * s[1], s[3], c * s[1]};
    return {{spec(view({N, c, H, b, W, b}, {o[0], o[1], b * o[2], o[2], b * o[3], o[3]}, in_str))}, 0};
  }
  // Output channel (b1*b + b2)*C + c at (h, w) reads input (c, h*b + b1, w*b + b2).
  return {{spec(view({N, b, b, C, H / b, W / b}, {o[0], b * C * o[1], C * o[1], o[1], o[2], o[3]},
                     {s[0], s[2], s[3], s[1], b * s[2], b * s[3]}))},
          0};
}

using SpecFn = Specs (*)(const ir::Node&);

std::vector<Tactic> copy_tactics(const ir::Node& n, std::string* why, const std::string& prefix, SpecFn fn) {
  for (const ir::Value* v : n.outputs)
    if (v && v->dims.size() > size_t(kMaxRank)) {
      if (why) *why = "rank above " + std::to_string(kMaxRank);
      return {};
    }
  if (n.outputs.empty() || !n.outputs[0] || !n.in(0)) {
    if (why) *why = "missing input or output";
    return {};
  }
  const size_t es = dtype_size(n.outputs[0]->dtype);
  const Specs s = fn(n);
  bool all_memcpy = true;
  for (const Spec& p : s.list) {
    if (p.plan.rank() > kMaxRank) {
      if (why) *why = "the copy does not merge into " + std::to_string(kMaxRank) + " axes";
      return {};
    }
    all_memcpy = all_memcpy && contiguous(p.plan);
  }
  const ir::Node* node = &n;
  auto make = [node, fn, es](bool tiled) {
    return [node, fn, es, tiled] {
      Specs s = fn(*node);
      return std::unique_ptr<Kernel>(new CopyKernel(*node, std::move(s.list), es, s.ws, tiled));
    };
  };
  std::vector<Tactic> t;
  ix::TileArgs probe;
  if (s.list.size() == 1 && !s.ws && ix::tile_args(s.list[0].plan, &probe)) t.push_back({prefix + "tiled", make(true)});
  t.push_back({prefix + (all_memcpy ? "memcpy" : "strided"), make(false)});
  return t;
}

}  // namespace

void register_tensor_kernels(Registry& r) {
  OpTraits first;  // data input 0, any layout, output row-major
  first.fp16_inputs = {0};
  first.any_layout = true;
  OpTraits like = first;  // rank-preserving ops keep input 0's layout
  like.out_layout = OpTraits::kLikeInput0;
  OpTraits all = like;
  all.fp16_inputs.clear();
  for (int k = 0; k < 64; ++k) all.fp16_inputs.push_back(k);

  auto add = [&](const char* op, const char* prefix, SpecFn fn, const OpTraits& t) {
    const std::string p = prefix;
    r.add(op, [p, fn](const ir::Node& n, std::string* why) { return copy_tactics(n, why, p, fn); }, t);
  };
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}) add(op, "reshape_", reshape_specs, first);
  add("Transpose", "transpose_", transpose_specs, first);
  add("Slice", "slice_", slice_specs, like);
  add("Expand", "expand_", expand_specs, first);
  add("Tile", "tile_", tile_specs, like);
  add("Concat", "concat_", concat_specs, all);
  add("Split", "split_", split_specs, like);
  add("DepthToSpace", "depth_to_space_", depth_space_specs, like);
  add("SpaceToDepth", "space_to_depth_", depth_space_specs, like);
  register_gather_pad_kernels(r);
}

}  // namespace kiln::cuda
