// Index geometry shared by the element-wise and data-movement kernels.
//
// Every such kernel walks an iteration space (usually the output's logical
// dims) and needs, per element, one offset into each operand (output first).
// A Plan lists the axes and each operand's element stride along them (0 for a
// broadcast axis, negative for a reversed slice). normalized() drops size-1
// axes, orders the axes by the output's strides (so consecutive threads
// write consecutive addresses whatever the output layout) and merges
// neighbouring axes that every operand walks as one: same-layout operands
// collapse to one flat axis, a per-channel operand [N,C,1,1] against
// [N,C,H,W] to two. Kernels then decompose a flat index over the few
// remaining axes, with 32-bit multiply-shift division when everything fits.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "backends/cuda/kernel.h"
#include "kiln/error.h"

namespace kiln::cuda::ix {

// n / d for 32-bit n as a multiply-high and a shift (Granlund-Montgomery):
// s = ceil(log2 d), m = floor(2^32 (2^s - d) / d) + 1, q = (mulhi(n, m) + n) >> s
// with the sum taken in 64 bits, exact for every n < 2^32.
struct DivMod {
  uint32_t d = 1, m = 1, s = 0;
  DivMod() = default;
  explicit DivMod(uint32_t div) : d(div) {
    s = 0;
    while ((uint64_t(1) << s) < uint64_t(div)) ++s;
    m = uint32_t((uint64_t(1) << 32) * ((uint64_t(1) << s) - div) / div + 1);
  }
  __host__ __device__ __forceinline__ uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    const uint32_t hi = __umulhi(n, m);
#else
    const uint32_t hi = uint32_t((uint64_t(n) * m) >> 32);
#endif
    return uint32_t((uint64_t(hi) + n) >> s);
  }
};

// Host description of an iteration space; operand 0 is the one written.
struct Plan {
  std::vector<int64_t> dims;                  // outermost first
  std::vector<std::vector<int64_t>> strides;  // [operand][axis], elements
  std::vector<int64_t> base;                  // [operand], element offset

  int64_t total() const {
    int64_t t = 1;
    for (int64_t d : dims) t *= d;
    return t;
  }
  size_t operands() const { return strides.size(); }
  int rank() const { return int(dims.size()); }
  // Adds an operand; `s` has one stride per axis.
  void add(std::vector<int64_t> s, int64_t b = 0) {
    strides.push_back(std::move(s));
    base.push_back(b);
  }
};

// Drops size-1 axes, sorts by |operand 0 stride| (largest first, stable) and
// merges neighbours every operand walks contiguously. Rank >= 1 on return.
inline Plan normalized(const Plan& p) {
  const size_t ops = p.operands();
  std::vector<int> axes;
  for (int a = 0; a < p.rank(); ++a)
    if (p.dims[size_t(a)] != 1) axes.push_back(a);
  std::stable_sort(axes.begin(), axes.end(), [&](int x, int y) {
    return std::llabs(p.strides[0][size_t(x)]) > std::llabs(p.strides[0][size_t(y)]);
  });
  Plan q;
  q.base = p.base;
  q.strides.assign(ops, {});
  for (int a : axes) {
    bool merge = !q.dims.empty();
    for (size_t k = 0; merge && k < ops; ++k)
      merge = q.strides[k].back() == p.strides[k][size_t(a)] * p.dims[size_t(a)];
    if (merge) {
      q.dims.back() *= p.dims[size_t(a)];
      for (size_t k = 0; k < ops; ++k) q.strides[k].back() = p.strides[k][size_t(a)];
    } else {
      q.dims.push_back(p.dims[size_t(a)]);
      for (size_t k = 0; k < ops; ++k) q.strides[k].push_back(p.strides[k][size_t(a)]);
    }
  }
  if (q.dims.empty()) {
    q.dims.push_back(1);
    for (auto& s : q.strides) s.push_back(0);
  }
  return q;
}

// True when flat indices and every reachable offset stay below 2^31, so
// kernels may use 32-bit index math.
inline bool fits32(const Plan& p) {
  const int64_t lim = int64_t(1) << 31;
  if (p.total() >= lim) return false;
  for (size_t k = 0; k < p.operands(); ++k) {
    int64_t hi = std::llabs(p.base[k]);
    for (int a = 0; a < p.rank(); ++a) hi += std::llabs(p.strides[k][size_t(a)]) * std::max<int64_t>(0, p.dims[size_t(a)] - 1);
    if (hi >= lim) return false;
  }
  return true;
}

// Row-major strides of `dims`.
inline std::vector<int64_t> dense_strides(const ir::Dims& dims) {
  std::vector<int64_t> s(dims.size(), 1);
  for (size_t k = dims.size(); k-- > 1;) s[k - 1] = s[k] * dims[k];
  return s;
}

// Strides of value `v` seen from an iteration space of rank `r` (numpy
// broadcasting: leading axes missing, size-1 axes repeated, both stride 0).
inline std::vector<int64_t> broadcast_strides(const ir::Value& v, size_t r) {
  std::vector<int64_t> own = strides_of(v), s(r, 0);
  const size_t lead = r - v.dims.size();
  for (size_t a = 0; a < v.dims.size(); ++a) s[lead + a] = v.dims[a] == 1 ? 0 : own[a];
  return s;
}

// Kernel-side copy of a normalized plan with NOps operands.
template <int NOps> struct Geometry {
  int rank = 1;
  DivMod dm[kMaxRank];       // used for axes 1..rank-1 in 32-bit mode
  int64_t dims[kMaxRank] = {};
  int64_t str[NOps][kMaxRank] = {};
  int64_t base[NOps] = {};
};

// Throws kUnsupported naming `what` when the merged rank exceeds kMaxRank.
template <int NOps> Geometry<NOps> geometry_of(const Plan& p, const std::string& what) {
  if (p.rank() > kMaxRank)
    throw_unsupported(what + ": the index space has " + std::to_string(p.rank()) +
                      " independent axes after merging; CUDA kernels take at most " + std::to_string(kMaxRank));
  if (p.operands() > size_t(NOps)) throw_internal(what + ": too many operands for the geometry");
  Geometry<NOps> g;
  g.rank = p.rank();
  const bool small = fits32(p);
  for (int a = 0; a < g.rank; ++a) {
    g.dims[a] = p.dims[size_t(a)];
    if (small) g.dm[a] = DivMod(uint32_t(p.dims[size_t(a)] > 0 ? p.dims[size_t(a)] : 1));
  }
  for (size_t k = 0; k < p.operands(); ++k) {
    g.base[k] = p.base[k];
    for (int a = 0; a < g.rank; ++a) g.str[k][a] = p.strides[k][size_t(a)];
  }
  return g;
}

// Offsets of flat index i for the first `nops` operands. I is int32_t (the
// plan fits32) or int64_t.
template <class I, int NOps>
__device__ __forceinline__ void locate(const Geometry<NOps>& g, I i, I (&off)[NOps], int nops = NOps) {
#pragma unroll
  for (int k = 0; k < NOps; ++k) off[k] = I(g.base[k]);
#pragma unroll
  for (int a = kMaxRank - 1; a >= 1; --a) {
    if (a < g.rank) {
      I q;
      if constexpr (sizeof(I) == 4) q = I(g.dm[a].div(uint32_t(i)));
      else q = i / I(g.dims[a]);
      const I r = i - q * I(g.dims[a]);
#pragma unroll
      for (int k = 0; k < NOps; ++k)
        if (k < nops) off[k] += r * I(g.str[k][a]);
      i = q;
    }
  }
#pragma unroll
  for (int k = 0; k < NOps; ++k)
    if (k < nops) off[k] += i * I(g.str[k][0]);
}

// Offset of flat index i for operand k alone (k may vary at run time).
template <class I, int NOps> __device__ __forceinline__ I offset_of(const Geometry<NOps>& g, int k, I i) {
  I o = I(g.base[k]);
#pragma unroll
  for (int a = kMaxRank - 1; a >= 1; --a) {
    if (a < g.rank) {
      I q;
      if constexpr (sizeof(I) == 4) q = I(g.dm[a].div(uint32_t(i)));
      else q = i / I(g.dims[a]);
      o += (i - q * I(g.dims[a])) * I(g.str[k][a]);
      i = q;
    }
  }
  return o + i * I(g.str[k][0]);
}

// ---- Tiled 2-D transpose between layouts --------------------------------
// For a normalized copy plan (operand 0 = out, 1 = in) whose output walks
// its innermost axis L contiguously while the input is contiguous along
// another axis T: 32x32 tiles go through shared memory so both the reads
// (along T) and the writes (along L) are coalesced. The other axes are a
// batch. NCHW <-> NHWC and most Transposes take this path.
struct TileArgs {
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t dim_t = 0, dim_l = 0;
  int64_t out_st = 0, in_sl = 0;  // out stride along T, in stride along L
  int64_t tiles_t = 0, tiles_l = 0;
  int64_t batch = 1;
  Geometry<2> bg;  // batch axes: operand 0 = out, 1 = in
};
constexpr int kTile = 32, kTileRows = 8;

// Fills `a` (pointers aside) when the plan takes the tiled path.
inline bool tile_args(const Plan& p, TileArgs* a) {
  const int r = p.rank();
  if (r < 2 || p.strides[0][size_t(r - 1)] != 1 || p.strides[1][size_t(r - 1)] == 1) return false;
  int t = -1;
  for (int k = 0; k < r - 1; ++k)
    if (p.strides[1][size_t(k)] == 1) t = k;
  if (t < 0) return false;
  a->dim_t = p.dims[size_t(t)];
  a->dim_l = p.dims[size_t(r - 1)];
  a->out_st = p.strides[0][size_t(t)];
  a->in_sl = p.strides[1][size_t(r - 1)];
  a->tiles_t = (a->dim_t + kTile - 1) / kTile;
  a->tiles_l = (a->dim_l + kTile - 1) / kTile;
  Plan b;
  for (int k = 0; k < r - 1; ++k)
    if (k != t) b.dims.push_back(p.dims[size_t(k)]);
  b.strides.assign(2, {});
  for (int k = 0; k < r - 1; ++k)
    if (k != t) {
      b.strides[0].push_back(p.strides[0][size_t(k)]);
      b.strides[1].push_back(p.strides[1][size_t(k)]);
    }
  b.base = p.base;
  if (b.dims.empty()) {
    b.dims.push_back(1);
    b.strides[0].push_back(0);
    b.strides[1].push_back(0);
  }
  if (b.rank() > kMaxRank) return false;
  a->batch = b.total();
  a->bg = geometry_of<2>(b, "tiled transpose");
  return true;
}

// Element conversion for the copy kernels: identity, or fp32 <-> fp16.
template <class To, class From> __device__ __forceinline__ To convert_value(From v) {
  if constexpr (std::is_same_v<To, From>) return v;
  else if constexpr (std::is_same_v<To, __half>) return __float2half_rn(v);
  else return __half2float(v);
}

// Tout[...] = convert(Tin[...]) through a shared-memory tile; block (32, 8).
template <class Tin, class Tout> __global__ void tiled_transpose_kernel(const __grid_constant__ TileArgs a) {
  __shared__ Tin tile[kTile][kTile + 1];
  const Tin* src = static_cast<const Tin*>(a.src);
  Tout* dst = static_cast<Tout*>(a.dst);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t tiles = a.tiles_t * a.tiles_l;
  for (int64_t b = blockIdx.y; b < a.batch; b += gridDim.y) {
    int64_t off[2];
    locate<int64_t, 2>(a.bg, b, off);
    for (int64_t tile_id = blockIdx.x; tile_id < tiles; tile_id += gridDim.x) {
      const int64_t t0 = (tile_id / a.tiles_l) * kTile, l0 = (tile_id % a.tiles_l) * kTile;
      __syncthreads();  // the previous tile has been written out
#pragma unroll
      for (int r = 0; r < kTile; r += kTileRows) {
        const int64_t l = l0 + ty + r, t = t0 + tx;
        if (l < a.dim_l && t < a.dim_t) tile[ty + r][tx] = src[off[1] + l * a.in_sl + t];
      }
      __syncthreads();
#pragma unroll
      for (int r = 0; r < kTile; r += kTileRows) {
        const int64_t t = t0 + ty + r, l = l0 + tx;
        if (l < a.dim_l && t < a.dim_t) dst[off[0] + t * a.out_st + l] = convert_value<Tout, Tin>(tile[tx][ty + r]);
      }
    }
  }
}

inline void launch_tiled(const TileArgs& a, void (*kernel)(TileArgs), cudaStream_t s) {
  const int64_t tiles = a.tiles_t * a.tiles_l;
  const unsigned gx = unsigned(std::min<int64_t>(tiles, int64_t(1) << 30));
  const unsigned gy = unsigned(std::min<int64_t>(a.batch, 65535));
  kernel<<<dim3(gx, gy), dim3(kTile, kTileRows), 0, s>>>(a);
}

}  // namespace kiln::cuda::ix
