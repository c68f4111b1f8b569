// The shared bias / residual / activation epilogue (see epilogue.h).
#include <cuda_fp16.h>

#include <algorithm>

#include "backends/cuda/common.h"
#include "backends/cuda/half_convert.cuh"
#include "backends/cuda/epilogue.h"
#include "backends/cuda/kernel.h"
#include "kiln/error.h"

namespace kiln::cuda {

void strides4(const ir::Node& n, const ir::Value& v, int64_t dims[4], int64_t strides[4]) {
  std::vector<int64_t> d = v.dims, s = strides_of(v);
  // Trailing axes past the 4th merge into one when contiguous (3-D convolution outputs).
  while (d.size() > 4) {
    const size_t k = d.size() - 2;
    if (s[k] != s[k + 1] * d[k + 1])
      throw_unsupported(n.label() + ": tensor '" + v.name + "' has rank " + std::to_string(v.dims.size()) +
                        " in a layout the CUDA epilogue cannot view as 4-D");
    d[k] *= d[k + 1];
    s[k] = s[k + 1];
    d.pop_back();
    s.pop_back();
  }
  const size_t pad = 4 - d.size();
  for (size_t a = 0; a < 4; ++a) {
    dims[a] = a < pad ? 1 : d[a - pad];
    strides[a] = a < pad ? 0 : s[a - pad];
  }
}

Epilogue Epilogue::for_value(const ir::Node& n, const ir::Value& v) {
  Epilogue e;
  e.dtype = v.dtype;
  strides4(n, v, e.dims, e.dst_strides);
  for (int a = 0; a < 4; ++a) {
    e.src_dims[a] = e.dims[a];
    e.src_strides[a] = e.dst_strides[a];
    e.z_strides[a] = e.dst_strides[a];
  }
  return e;
}

namespace {


// What the kernels need, passed by value.
struct Args {
  int64_t dims[4], src_dims[4], src_strides[4], dst_strides[4], z_strides[4];
  int64_t bias_stride, bias_count;  // flat path: channel = (i / bias_stride) % bias_count
  int bias_axis;
  float bias_scale, z_scale;
  Activation act;
};

template <typename T, int V> struct alignas(sizeof(T) * V) Vec { T v[V]; };

// src, dst and z share one dense layout: element i of each is the same
// logical element. V elements per thread through one 16-byte access.
template <typename T, int V, typename I>
__global__ void epilogue_flat(Args p, const T* __restrict__ src, T* dst, const T* __restrict__ bias,
                              const T* __restrict__ z, I n) {
  const I groups = n / V;
  const I stride = I(gridDim.x) * blockDim.x;
  auto one = [&](I i, float v, float zv) {
    if (bias) v += p.bias_scale * to_f(bias[(i / I(p.bias_stride)) % I(p.bias_count)]);
    return from_f<T>(apply_activation(p.act, v + p.z_scale * zv));
  };
  for (I g = I(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += stride) {
    const Vec<T, V> s = reinterpret_cast<const Vec<T, V>*>(src)[g];
    Vec<T, V> zz;
    if (z) zz = reinterpret_cast<const Vec<T, V>*>(z)[g];
    Vec<T, V> o;
#pragma unroll
    for (int j = 0; j < V; ++j) o.v[j] = one(g * V + j, to_f(s.v[j]), z ? to_f(zz.v[j]) : 0.f);
    reinterpret_cast<Vec<T, V>*>(dst)[g] = o;
  }
  if (blockIdx.x == 0)
    for (I i = groups * V + threadIdx.x; i < n; i += blockDim.x) dst[i] = one(i, to_f(src[i]), z ? to_f(z[i]) : 0.f);
}

// Rows of a common inner axis (stride 1 everywhere) at per-tensor pitches:
// a channels-last tensor cropped to fewer channels, for one. 32-bit indices.
struct RowArgs {
  uint32_t inner, src_pitch, dst_pitch, z_pitch;
  bool bias_inner;             // bias indexed by the inner coordinate, else (row / bias_div) % bias_mod
  uint32_t bias_div, bias_mod;
  float bias_scale, z_scale;
  Activation act;
};

// 2-D blocks: x along the row, y over rows, so no index is divided. Rows
// need not be aligned, so accesses are scalar; kRowUnroll loads per thread
// are issued together to keep enough bytes in flight (one 2-byte load per
// thread at a time ran at a third of the bandwidth).
constexpr int kRowUnroll = 8;

template <typename T>
__global__ void epilogue_rows(RowArgs p, const T* src, T* dst, const T* __restrict__ bias, const T* z, uint32_t rows) {
  constexpr int U = kRowUnroll;
  for (uint32_t r = blockIdx.y * blockDim.y + threadIdx.y; r < rows; r += gridDim.y * blockDim.y) {
    const T* sr = src + r * p.src_pitch;
    T* dr = dst + r * p.dst_pitch;
    const T* zr = z ? z + r * p.z_pitch : nullptr;
    const float rb = bias && !p.bias_inner ? p.bias_scale * to_f(bias[(r / p.bias_div) % p.bias_mod]) : 0.f;
    for (uint32_t c0 = blockIdx.x * blockDim.x * U + threadIdx.x; c0 < p.inner; c0 += gridDim.x * blockDim.x * U) {
      float v[U];
#pragma unroll
      for (int j = 0; j < U; ++j) {
        const uint32_t c = c0 + j * blockDim.x;
        v[j] = c < p.inner ? to_f(sr[c]) + rb : 0.f;
        if (zr && c < p.inner) v[j] += p.z_scale * to_f(zr[c]);
      }
#pragma unroll
      for (int j = 0; j < U; ++j) {
        const uint32_t c = c0 + j * blockDim.x;
        if (c >= p.inner) break;
        if (bias && p.bias_inner) v[j] += p.bias_scale * to_f(bias[c]);
        dr[c] = from_f<T>(apply_activation(p.act, v[j]));
      }
    }
  }
}

// Rows written back to back (dst pitch == inner, 16-byte aligned): each thread
// writes V consecutive elements with one 16-byte store and gathers them from
// the pitched rows. Scalar stores of unaligned rows measured 3x slower.
template <typename T, int V>
__global__ void epilogue_rows_packed(RowArgs p, const T* src, T* dst, const T* __restrict__ bias, const T* z,
                                     uint32_t n) {
  const uint32_t groups = n / V;
  for (uint32_t g = blockIdx.x * blockDim.x + threadIdx.x; g <= groups; g += gridDim.x * blockDim.x) {
    const uint32_t i0 = g * V;
    if (i0 >= n) break;
    uint32_t r = i0 / p.inner, c = i0 - r * p.inner;
    Vec<T, V> o;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      if (i0 + j < n) {
        float v = to_f(src[r * p.src_pitch + c]);
        if (bias) v += p.bias_scale * to_f(bias[p.bias_inner ? c : (r / p.bias_div) % p.bias_mod]);
        if (z) v += p.z_scale * to_f(z[r * p.z_pitch + c]);
        o.v[j] = from_f<T>(apply_activation(p.act, v));
      }
      if (++c == p.inner) c = 0, ++r;
    }
    if (g < groups) {
      reinterpret_cast<Vec<T, V>*>(dst)[g] = o;
    } else {
      for (int j = 0; i0 + j < n; ++j) dst[i0 + j] = o.v[j];
    }
  }
}

// Any views: one thread per logical element of dst. I: uint32_t when every
// offset fits, which makes the index arithmetic several times cheaper.
template <typename T, typename I>
__global__ void epilogue_strided(Args p, const T* src, T* dst, const T* __restrict__ bias, const T* z, I n) {
  I dims[4], ss[4], ds[4], zs[4], sd[4];
  for (int a = 0; a < 4; ++a)
    dims[a] = I(p.dims[a]), ss[a] = I(p.src_strides[a]), ds[a] = I(p.dst_strides[a]), zs[a] = I(p.z_strides[a]),
    sd[a] = I(p.src_dims[a]);
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    I c[4], rem = i;
    for (int a = 3; a >= 0; --a) {
      c[a] = rem % dims[a];
      rem /= dims[a];
    }
    bool inside = true;
    I so = 0, d = 0, zo = 0;
    for (int a = 0; a < 4; ++a) {
      inside = inside && c[a] < sd[a];
      so += c[a] * ss[a];
      d += c[a] * ds[a];
      zo += c[a] * zs[a];
    }
    float v = inside ? to_f(src[so]) : 0.f;
    if (bias) v += p.bias_scale * to_f(bias[c[p.bias_axis]]);
    if (z) v += p.z_scale * to_f(z[zo]);
    dst[d] = from_f<T>(apply_activation(p.act, v));
  }
}

// Dense: the non-unit axes tile memory exactly in some order.
bool dense(const int64_t dims[4], const int64_t strides[4]) {
  int order[4] = {0, 1, 2, 3};
  std::sort(order, order + 4, [&](int x, int y) { return strides[x] < strides[y]; });
  int64_t expect = 1;
  for (int k : order) {
    if (dims[k] == 1) continue;
    if (strides[k] != expect) return false;
    expect *= dims[k];
  }
  return true;
}

bool same4(const int64_t a[4], const int64_t b[4], const int64_t dims[4]) {
  for (int k = 0; k < 4; ++k)
    if (dims[k] != 1 && a[k] != b[k]) return false;
  return true;
}

// The row form of a launch, if it has one (see epilogue_rows).
bool as_rows(const Epilogue& e, bool has_z, RowArgs& r) {
  int inner = -1;
  for (int a = 0; a < 4; ++a)
    if (e.dims[a] > 1 && e.dst_strides[a] == 1) inner = a;
  if (inner < 0 || e.src_strides[inner] != 1 || (has_z && e.z_strides[inner] != 1)) return false;
  const int64_t lim = int64_t(1) << 31;
  int64_t after[4] = {1, 1, 1, 1}, rows = 1;
  for (int a = 3; a >= 0; --a) {
    if (a == inner) continue;
    if (e.src_dims[a] != e.dims[a]) return false;
    after[a] = rows;
    rows *= e.dims[a];
  }
  if (rows >= lim) return false;
  if (e.src_dims[inner] < e.dims[inner]) return false;
  // One pitch per tensor: stride[a] == pitch * (rows below a) on every non-inner axis.
  auto pitch = [&](const int64_t* st, int64_t& out) {
    out = -1;
    for (int a = 3; a >= 0; --a) {
      if (a == inner || e.dims[a] == 1) continue;
      if (out < 0) out = st[a] / after[a];
      if (st[a] != out * after[a]) return false;
    }
    if (out < 0) out = 0;
    return rows * out + e.dims[inner] < lim;
  };
  int64_t ps, pd, pz = 0;
  if (!pitch(e.src_strides, ps) || !pitch(e.dst_strides, pd) || (has_z && !pitch(e.z_strides, pz))) return false;
  if (rows * e.dims[inner] >= lim) return false;
  r.inner = uint32_t(e.dims[inner]);
  r.src_pitch = uint32_t(ps), r.dst_pitch = uint32_t(pd), r.z_pitch = uint32_t(pz);
  r.bias_inner = e.bias_axis == inner;
  r.bias_div = e.bias_axis < 0 || r.bias_inner ? 1 : uint32_t(after[e.bias_axis]);
  r.bias_mod = e.bias_axis < 0 || r.bias_inner ? 1 : uint32_t(e.dims[e.bias_axis]);
  r.bias_scale = e.bias_scale;
  r.z_scale = e.z_scale;
  r.act = e.act;
  return true;
}

// Blocks for a grid-stride loop over n items: at most one resident wave.
// These kernels are memory bound; tens of thousands of short blocks cost
// more in block scheduling than the copy itself (measured 3x on a 22 MB crop).
unsigned wave_blocks(int64_t n, int threads) {
  static const int resident = [] {
    int dev = 0, sms = 0, per_sm = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, dev);
    return std::max(1, sms) * std::max(256, per_sm);
  }();
  return std::min<unsigned>(grid_for(n, threads), unsigned(std::max(1, resident / threads)));
}

// Largest offset a view reaches, to choose 32-bit indexing.
int64_t reach(const int64_t dims[4], const int64_t st[4]) {
  int64_t r = 0;
  for (int a = 0; a < 4; ++a) r += (dims[a] - 1) * st[a];
  return r;
}

template <typename T>
void launch_typed(const Epilogue& e, const Args& a, bool flat, const void* src, void* dst, const void* bias,
                  const void* z, int64_t n, cudaStream_t s) {
  const T* sp = static_cast<const T*>(src);
  T* dp = static_cast<T*>(dst);
  const T* bp = static_cast<const T*>(bias);
  const T* zp = static_cast<const T*>(z);
  constexpr int V = 16 / sizeof(T);
  if (flat) {
    auto aligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; };
    const bool vec = aligned(src) && aligned(dst) && (!z || aligned(z));
    const unsigned blocks = wave_blocks(vec ? (n + V - 1) / V : n, 256);
    if (n < (int64_t(1) << 31)) {
      if (vec) epilogue_flat<T, V, uint32_t><<<blocks, 256, 0, s>>>(a, sp, dp, bp, zp, uint32_t(n));
      else epilogue_flat<T, 1, uint32_t><<<blocks, 256, 0, s>>>(a, sp, dp, bp, zp, uint32_t(n));
    } else {
      if (vec) epilogue_flat<T, V, int64_t><<<blocks, 256, 0, s>>>(a, sp, dp, bp, zp, n);
      else epilogue_flat<T, 1, int64_t><<<blocks, 256, 0, s>>>(a, sp, dp, bp, zp, n);
    }
  } else if (RowArgs r; as_rows(e, z != nullptr, r) && r.dst_pitch == r.inner &&
                        (reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
    epilogue_rows_packed<T, V><<<wave_blocks(n / V + 1, 256), 256, 0, s>>>(r, sp, dp, bp, zp, uint32_t(n));
  } else if (RowArgs r; as_rows(e, z != nullptr, r)) {
    const uint32_t rows = uint32_t(n / r.inner);
    const unsigned per = (r.inner + kRowUnroll - 1) / kRowUnroll;
    const unsigned bx = std::min<unsigned>(256, (per + 31) / 32 * 32), by = 256 / bx;
    const dim3 block(bx, by);
    const unsigned gx = std::min<unsigned>((r.inner + bx * kRowUnroll - 1) / (bx * kRowUnroll), 64);
    const dim3 grid(gx, std::max(1u, std::min<unsigned>((rows + by - 1) / by, wave_blocks(n, 256) / gx)));
    epilogue_rows<T><<<grid, block, 0, s>>>(r, sp, dp, bp, zp, rows);
  } else {
    const int64_t lim = int64_t(1) << 31;
    if (n < lim && reach(e.dims, e.src_strides) < lim && reach(e.dims, e.dst_strides) < lim &&
        reach(e.dims, e.z_strides) < lim)
      epilogue_strided<T, uint32_t><<<wave_blocks(n, 256), 256, 0, s>>>(a, sp, dp, bp, zp, uint32_t(n));
    else
      epilogue_strided<T, int64_t><<<wave_blocks(n, 256), 256, 0, s>>>(a, sp, dp, bp, zp, n);
  }
  KILN_CUDA_LAUNCHED("epilogue kernel");
}

}  // namespace

bool Epilogue::is_identity() const {
  return bias_axis < 0 && !has_z && act.kind == Activation::kNone && same4(src_strides, dst_strides, dims) &&
         std::equal(dims, dims + 4, src_dims);
}

void Epilogue::launch(const void* src, void* dst, const void* bias, const void* z, cudaStream_t s) const {
  const int64_t n = dims[0] * dims[1] * dims[2] * dims[3];
  if (n == 0) return;
  Args a{};
  for (int k = 0; k < 4; ++k) {
    a.dims[k] = dims[k];
    a.src_dims[k] = src_dims[k];
    a.src_strides[k] = src_strides[k];
    a.dst_strides[k] = dst_strides[k];
    a.z_strides[k] = z_strides[k];
  }
  if (bias_axis < 0) bias = nullptr;
  if (!has_z) z = nullptr;
  a.bias_axis = bias_axis < 0 ? 0 : bias_axis;
  a.bias_stride = bias_axis < 0 ? 1 : std::max<int64_t>(1, dst_strides[bias_axis]);
  a.bias_count = bias_axis < 0 ? 1 : dims[bias_axis];
  a.bias_scale = bias_scale;
  a.z_scale = z_scale;
  a.act = act;
  bool flat = std::equal(dims, dims + 4, src_dims) && dense(dims, dst_strides) && same4(src_strides, dst_strides, dims) &&
              (!z || same4(z_strides, dst_strides, dims));
  if (dtype == DataType::kFloat16) launch_typed<__half>(*this, a, flat, src, dst, bias, z, n, s);
  else launch_typed<float>(*this, a, flat, src, dst, bias, z, n, s);
}

}  // namespace kiln::cuda
