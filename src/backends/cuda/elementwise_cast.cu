// Cast and kiln Reformat: copy a tensor converting dtype and/or layout.
//
// Reformat layers sit wherever the builder changes precision or layout, so
// they get the fast paths: same layout is a flat vectorized convert (or a
// memcpy), a layout change that is a 2-D transpose underneath (NCHW <->
// NHWC) goes through shared-memory tiles so reads and writes are both
// coalesced; anything else is a strided gather in the output's order.
// Cast between fp32/fp16 uses the same paths; the other dtype pairs go
// through one generic kernel with the CPU kernel's semantics (numpy astype:
// float -> int truncates, NaN and out-of-range give the int32/int64 minimum,
// 8-bit types keep its low bits; any non-zero is true; fp16 via fp32).
//
// INT8 Reformats (attribute `scale`) take the same fast paths:
//   float -> int8: saturate_int8(round_half_even(x / scale)), NaN -> 0
//   int8 -> float: float(q) * scale
//   int8 -> int8:  a layout change only
// x / scale is a true IEEE division, so results match the CPU reference.
#include <cuda_fp16.h>

#include <cmath>
#include <type_traits>

#include "backends/cuda/common.h"
#include "backends/cuda/elementwise_ops.cuh"
#include "backends/cuda/tensor_plan.cuh"

namespace kiln::cuda::ew {

namespace {

constexpr int kThreads = 256;

struct CopyArgs {
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t total = 0;
  int from = 0, to = 0;  // DataType codes (generic cast)
  float scale = 1.f;     // int8 Reformats: the quantization step
  ix::Geometry<2> g;     // out, in
};

template <class T> constexpr bool kFloatT = std::is_same_v<T, float> || std::is_same_v<T, __half>;

__device__ __forceinline__ float as_float(float v) { return v; }
__device__ __forceinline__ float as_float(__half v) { return __half2float(v); }

// One element: fp32 <-> fp16, identity, or the int8 Reformat conversions.
template <class To, class From> __device__ __forceinline__ To cvt(From v, float scale) {
  if constexpr (std::is_same_v<To, int8_t> && kFloatT<From>) {
    float t = __fdiv_rn(as_float(v), scale);
    if (t != t) return 0;
    t = fminf(fmaxf(rintf(t), -128.f), 127.f);
    return int8_t(int(t));
  } else if constexpr (std::is_same_v<From, int8_t> && kFloatT<To>) {
    const float f = __fmul_rn(float(v), scale);
    if constexpr (std::is_same_v<To, __half>) return __float2half_rn(f);
    else return f;
  } else {
    return ix::convert_value<To, From>(v);
  }
}

// Same layout, converting: 16 bytes of input per thread (a streaming
// conversion needs that much in flight per thread to keep DRAM busy), tail
// scalar.
template <class Tin> constexpr int kFlatPack = int(16 / sizeof(Tin));
constexpr size_t pack_align(size_t bytes) { return bytes < 16 ? bytes : 16; }  // vector stores: at most 16 bytes
template <class Tin, class Tout> __global__ void __launch_bounds__(kThreads) flat_convert_kernel(const __grid_constant__ CopyArgs a) {
  constexpr int N = kFlatPack<Tin>;
  struct alignas(16) In { Tin v[N]; };
  struct alignas(pack_align(N * sizeof(Tout))) Out { Tout v[N]; };
  const Tin* src = static_cast<const Tin*>(a.src);
  Tout* dst = static_cast<Tout*>(a.dst);
  const int64_t packs = a.total / N, stride = int64_t(gridDim.x) * kThreads;
  const int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  for (int64_t p = t; p < packs; p += stride) {
    const In x = reinterpret_cast<const In*>(src)[p];
    Out y;
#pragma unroll
    for (int j = 0; j < N; ++j) y.v[j] = cvt<Tout, Tin>(x.v[j], a.scale);
    reinterpret_cast<Out*>(dst)[p] = y;
  }
  for (int64_t i = packs * N + t; i < a.total; i += stride) dst[i] = cvt<Tout, Tin>(src[i], a.scale);
}

template <class Tin, class Tout, class I> __global__ void __launch_bounds__(kThreads) strided_convert_kernel(const __grid_constant__ CopyArgs a) {
  const Tin* src = static_cast<const Tin*>(a.src);
  Tout* dst = static_cast<Tout*>(a.dst);
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < a.total; i += int64_t(gridDim.x) * kThreads) {
    I off[2];
    ix::locate<I, 2>(a.g, I(i), off);
    dst[off[0]] = cvt<Tout, Tin>(src[off[1]], a.scale);
  }
}

// ix::tiled_transpose_kernel with the conversion above (block (32, 8)).
template <class Tin, class Tout>
__global__ void tiled_convert_kernel(const __grid_constant__ ix::TileArgs a, float scale) {
  using ix::kTile;
  using ix::kTileRows;
  __shared__ Tin tile[kTile][kTile + 1];
  const Tin* src = static_cast<const Tin*>(a.src);
  Tout* dst = static_cast<Tout*>(a.dst);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t tiles = a.tiles_t * a.tiles_l;
  for (int64_t b = blockIdx.y; b < a.batch; b += gridDim.y) {
    int64_t off[2];
    ix::locate<int64_t, 2>(a.bg, b, off);
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
        if (l < a.dim_l && t < a.dim_t) dst[off[0] + t * a.out_st + l] = cvt<Tout, Tin>(tile[tx][ty + r], scale);
      }
    }
  }
}

// A loaded element of any dtype: a float (fp32/fp16 sources) or an integer.
struct Value {
  bool is_float;
  float f;
  int64_t i;
};

__device__ __forceinline__ Value load_any(const void* p, int64_t k, int dt) {
  switch (DataType(dt)) {
    case DataType::kFloat32: return {true, static_cast<const float*>(p)[k], 0};
    case DataType::kFloat16: return {true, __half2float(static_cast<const __half*>(p)[k]), 0};
    case DataType::kInt8: return {false, 0.f, static_cast<const int8_t*>(p)[k]};
    case DataType::kUInt8: return {false, 0.f, static_cast<const uint8_t*>(p)[k]};
    case DataType::kInt32: return {false, 0.f, static_cast<const int32_t*>(p)[k]};
    case DataType::kInt64: return {false, 0.f, static_cast<const int64_t*>(p)[k]};
    default: return {false, 0.f, static_cast<const uint8_t*>(p)[k] != 0 ? 1 : 0};  // bool: canonical 0/1
  }
}

// float -> integer as numpy on x86 (the CPU kernel's float_to_int).
__device__ __forceinline__ int64_t float_to_int(float f, bool wide) {
  const double x = double(f);
  if (wide) return (x >= -9223372036854775808.0 && x < 9223372036854775808.0) ? int64_t(x) : INT64_MIN;
  return (x >= -2147483648.0 && x < 2147483648.0) ? int64_t(int32_t(x)) : int64_t(INT32_MIN);
}

__device__ __forceinline__ void store_any(void* p, int64_t k, int dt, Value v) {
  const float f = v.is_float ? v.f : float(v.i);
  switch (DataType(dt)) {
    case DataType::kFloat32: static_cast<float*>(p)[k] = f; return;
    case DataType::kFloat16: static_cast<__half*>(p)[k] = __float2half_rn(f); return;
    case DataType::kBool: static_cast<uint8_t*>(p)[k] = v.is_float ? v.f != 0.0f : v.i != 0; return;
    default: break;
  }
  const int64_t i = v.is_float ? float_to_int(v.f, dt == int(DataType::kInt64)) : v.i;
  switch (DataType(dt)) {
    case DataType::kInt8: static_cast<int8_t*>(p)[k] = int8_t(uint8_t(uint64_t(i))); return;
    case DataType::kUInt8: static_cast<uint8_t*>(p)[k] = uint8_t(uint64_t(i)); return;
    case DataType::kInt32: static_cast<int32_t*>(p)[k] = int32_t(uint32_t(uint64_t(i))); return;
    default: static_cast<int64_t*>(p)[k] = i; return;
  }
}

template <class I> __global__ void __launch_bounds__(kThreads) generic_cast_kernel(const __grid_constant__ CopyArgs a) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < a.total; i += int64_t(gridDim.x) * kThreads) {
    I off[2];
    ix::locate<I, 2>(a.g, I(i), off);
    store_any(a.dst, off[0], a.to, load_any(a.src, off[1], a.from));
  }
}

enum class Path { kMemcpy, kFlat, kTiled, kStrided, kGeneric };

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

// The normalized copy plan: output order, operand 0 = out, 1 = in.
ix::Plan copy_plan(const ir::Value& in, const ir::Value& out) {
  ix::Plan p;
  p.dims = in.dims;
  p.add(strides_of(out));
  p.add(strides_of(in));
  return ix::normalized(p);
}

class ConvertKernel : public Kernel {
 public:
  ConvertKernel(const ir::Node& n, Path path, float scale) : path_(path) {
    const ir::Value& in = *n.inputs[0];
    const ir::Value& out = *n.outputs[0];
    from_ = in.dtype;
    to_ = out.dtype;
    const ix::Plan p = copy_plan(in, out);
    a_.total = p.total();
    a_.from = int(from_);
    a_.to = int(to_);
    a_.scale = scale;
    a_.g = ix::geometry_of<2>(p, n.label());
    small_ = ix::fits32(p);
    if (path_ == Path::kTiled && !ix::tile_args(p, &t_)) throw_internal(n.label() + ": no tiled path");
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (a_.total == 0) return;
    CopyArgs a = a_;
    a.src = in[0];
    a.dst = out[0];
    if (path_ == Path::kMemcpy) {
      KILN_CUDA_CHECK(cudaMemcpyAsync(a.dst, a.src, size_t(a.total) * dtype_size(to_), cudaMemcpyDeviceToDevice, l.stream));
      return;
    }
    if (path_ == Path::kGeneric) {
      const unsigned grid = grid_for(a.total, kThreads);
      if (small_) generic_cast_kernel<int32_t><<<grid, kThreads, 0, l.stream>>>(a);
      else generic_cast_kernel<int64_t><<<grid, kThreads, 0, l.stream>>>(a);
      KILN_CUDA_LAUNCHED("generic_cast_kernel");
      return;
    }
    // Paths with typed elements: fp32 <-> fp16, the int8 Reformats, or a
    // same-dtype copy by size.
    constexpr DataType f32 = DataType::kFloat32, f16 = DataType::kFloat16, i8 = DataType::kInt8;
    if (from_ == f32 && to_ == f16) return typed<float, __half>(a, l.stream);
    if (from_ == f16 && to_ == f32) return typed<__half, float>(a, l.stream);
    if (from_ == f32 && to_ == i8) return typed<float, int8_t>(a, l.stream);
    if (from_ == f16 && to_ == i8) return typed<__half, int8_t>(a, l.stream);
    if (from_ == i8 && to_ == f32) return typed<int8_t, float>(a, l.stream);
    if (from_ == i8 && to_ == f16) return typed<int8_t, __half>(a, l.stream);
    switch (dtype_size(to_)) {
      case 1: return typed<uint8_t, uint8_t>(a, l.stream);
      case 2: return typed<uint16_t, uint16_t>(a, l.stream);
      case 4: return typed<uint32_t, uint32_t>(a, l.stream);
      default: return typed<uint64_t, uint64_t>(a, l.stream);
    }
  }

 private:
  template <class Tin, class Tout> void typed(const CopyArgs& a, cudaStream_t s) const {
    if (path_ == Path::kTiled) {
      ix::TileArgs t = t_;
      t.src = a.src;
      t.dst = a.dst;
      const int64_t tiles = t.tiles_t * t.tiles_l;
      const unsigned gx = unsigned(std::min<int64_t>(tiles, int64_t(1) << 30));
      const unsigned gy = unsigned(std::min<int64_t>(t.batch, 65535));
      tiled_convert_kernel<Tin, Tout><<<dim3(gx, gy), dim3(ix::kTile, ix::kTileRows), 0, s>>>(t, a.scale);
      KILN_CUDA_LAUNCHED("tiled_convert_kernel");
      return;
    }
    const unsigned grid = grid_for(path_ == Path::kFlat ? a.total / kFlatPack<Tin> + 1 : a.total, kThreads);
    if constexpr (!std::is_same_v<Tin, Tout>) {
      const bool aligned = reinterpret_cast<uintptr_t>(a.src) % 16 == 0 &&
                           reinterpret_cast<uintptr_t>(a.dst) % pack_align(kFlatPack<Tin> * sizeof(Tout)) == 0;
      if (path_ == Path::kFlat && aligned) {
        flat_convert_kernel<Tin, Tout><<<grid, kThreads, 0, s>>>(a);
        KILN_CUDA_LAUNCHED("flat_convert_kernel");
        return;
      }
    }
    const unsigned sgrid = grid_for(a.total, kThreads);
    if (small_) strided_convert_kernel<Tin, Tout, int32_t><<<sgrid, kThreads, 0, s>>>(a);
    else strided_convert_kernel<Tin, Tout, int64_t><<<sgrid, kThreads, 0, s>>>(a);
    KILN_CUDA_LAUNCHED("strided_convert_kernel");
  }

  Path path_;
  DataType from_ = DataType::kFloat32, to_ = DataType::kFloat32;
  bool small_ = true;
  CopyArgs a_;
  ix::TileArgs t_;
};

// Tactics for copying input 0 to output 0 converting dtype and layout;
// `prefix` names the op ("reformat_", "cast_"). `scaled`: an int8 Reformat
// between int8 and a float dtype, with quantization step `scale`.
std::vector<Tactic> convert_tactics(const ir::Node& n, const std::string& prefix, std::string* why,
                                    bool scaled = false, float scale = 1.f) {
  auto fail = [&](const std::string& m) {
    if (why) *why = m;
    return std::vector<Tactic>{};
  };
  const ir::Value* in = n.in(0);
  if (!in || n.outputs.size() != 1 || !n.outputs[0]) return fail("expected one input and one output");
  const ir::Value& out = *n.outputs[0];
  if (in->dims != out.dims) return fail("input and output dims differ");
  if (in->dims.size() > size_t(kMaxRank)) return fail("rank above " + std::to_string(kMaxRank));
  const ix::Plan p = copy_plan(*in, out);
  if (p.rank() > kMaxRank) return fail("the layouts do not merge into " + std::to_string(kMaxRank) + " axes");
  const bool typed = in->dtype == out.dtype || (is_float(in->dtype) && is_float(out.dtype)) || scaled;
  const bool contiguous = p.rank() == 1 && p.strides[0][0] == 1 && p.strides[1][0] == 1;
  const ir::Node* node = &n;
  auto make = [node, scale](Path path) {
    return [node, path, scale] { return std::unique_ptr<Kernel>(new ConvertKernel(*node, path, scale)); };
  };
  if (!typed) return {{prefix + "generic", make(Path::kGeneric)}};
  if (contiguous) {
    if (in->dtype == out.dtype) return {{prefix + "memcpy", make(Path::kMemcpy)}};
    return {{prefix + "flat", make(Path::kFlat)}};
  }
  std::vector<Tactic> t;
  ix::TileArgs probe;
  if (ix::tile_args(p, &probe)) t.push_back({prefix + "tiled", make(Path::kTiled)});
  t.push_back({prefix + "strided", make(Path::kStrided)});
  return t;
}

std::vector<Tactic> reformat_tactics(const ir::Node& n, std::string* why) {
  const ir::Value* in = n.in(0);
  if (!in || n.outputs.size() != 1 || !n.outputs[0]) return convert_tactics(n, "reformat_", why);
  const DataType from = in->dtype, to = n.outputs[0]->dtype;
  if (from == to || (is_float(from) && is_float(to))) return convert_tactics(n, "reformat_", why);
  const bool quant = is_float(from) && to == DataType::kInt8, dequant = from == DataType::kInt8 && is_float(to);
  if (!quant && !dequant) {
    if (why) *why = std::string("Reformat converts between fp32, fp16 and int8 only, not ") + dtype_name(from) + " -> " +
                    dtype_name(to);
    return {};
  }
  const float scale = n.f("scale", 0.f);
  if (!std::isfinite(scale) || !(scale > 0.f)) {
    if (why) *why = "a Reformat between int8 and a float dtype needs attribute scale, a finite float > 0";
    return {};
  }
  return convert_tactics(n, "reformat_", why, true, scale);
}

std::vector<Tactic> cast_tactics(const ir::Node& n, std::string* why) { return convert_tactics(n, "cast_", why); }

}  // namespace

void register_cast_kernels(Registry& r) {
  OpTraits cast;  // fp32-only by traits, but any dtype pair is accepted as given
  cast.any_layout = true;
  cast.out_layout = OpTraits::kLikeInput0;
  r.add("Cast", cast_tactics, cast);
  r.add("CastLike", cast_tactics, cast);
  OpTraits reformat;
  reformat.fp16_inputs = {0};
  reformat.any_layout = true;
  r.add("Reformat", reformat_tactics, reformat, "kiln");
}

}  // namespace kiln::cuda::ew
