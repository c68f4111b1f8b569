// Copy machinery shared by the data-movement kernels (shape, tensor, resize
// families). Everything works on raw bytes and an element size, so one kernel
// serves every kiln dtype.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "backends/cpu/kernel.h"
#include "ir/tensor.h"
#include "kiln/types.h"

namespace kiln::cpu {

// memcpy split over the thread pool when it is large enough to pay off.
void parallel_memcpy(void* dst, const void* src, size_t bytes);

// Fills `count` elements of `esize` bytes with the element at `value`.
void fill_elements(void* dst, int64_t count, const void* value, size_t esize);

// Row-major strides (in elements) of `dims`.
std::vector<int64_t> contiguous_strides(const ir::Dims& dims);

// Writes a dense output of `out_dims` where output element [i0..ik] is source
// element offset + sum(i_d * src_strides[d]) (strides in elements; may be
// zero for broadcasts or negative for reversed slices). Planned once at kernel
// creation: dims are coalesced and the loop shape chosen.
class StridedCopy {
 public:
  StridedCopy() = default;
  StridedCopy(const ir::Dims& out_dims, const std::vector<int64_t>& src_strides, int64_t src_offset, size_t esize);
  void run(void* dst, const void* src) const;
  // "memcpy", "rows", "tiled", "elements" or "empty": the loop shape chosen.
  const char* kind() const;

 private:
  enum class Kind { kEmpty, kMemcpy, kRows, kTiled, kElements };
  void run_rows(uint8_t* dst, const uint8_t* src) const;
  void run_tiled(uint8_t* dst, const uint8_t* src) const;
  void run_elements(uint8_t* dst, const uint8_t* src) const;

  Kind kind_ = Kind::kEmpty;
  size_t esize_ = 1;
  int64_t offset_ = 0;
  int64_t total_ = 0;
  ir::Dims dims_;                  // coalesced output dims
  std::vector<int64_t> sstr_;      // matching source strides
  std::vector<int64_t> dstr_;      // matching output strides
  int tile_axis_ = -1;             // kTiled: axis whose source stride is 1
};

// Visits [begin, end) of the row-major index space of `dims`, calling
// f(src_off, dst_off) with offsets accumulated from the two stride lists.
template <typename F>
void for_each_offset(const ir::Dims& dims, const std::vector<int64_t>& sstr, const std::vector<int64_t>& dstr,
                     int64_t begin, int64_t end, F&& f) {
  if (begin >= end) return;
  const int r = int(dims.size());
  std::vector<int64_t> idx(size_t(r), 0);
  int64_t rem = begin, so = 0, d = 0;
  for (int i = r - 1; i >= 0; --i) {
    idx[size_t(i)] = rem % dims[size_t(i)];
    rem /= dims[size_t(i)];
    so += idx[size_t(i)] * sstr[size_t(i)];
    d += idx[size_t(i)] * dstr[size_t(i)];
  }
  for (int64_t o = begin; o < end; ++o) {
    f(so, d);
    for (int i = r - 1; i >= 0; --i) {
      so += sstr[size_t(i)];
      d += dstr[size_t(i)];
      if (++idx[size_t(i)] < dims[size_t(i)]) break;
      so -= sstr[size_t(i)] * dims[size_t(i)];
      d -= dstr[size_t(i)] * dims[size_t(i)];
      idx[size_t(i)] = 0;
    }
  }
}

// Calls f.template operator()<T>() with an unsigned integer type of `esize`
// bytes, so element loops compile to plain loads and stores.
template <typename F> void with_element_type(size_t esize, F&& f) {
  switch (esize) {
    case 1: f(uint8_t{}); break;
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    default: f(uint64_t{}); break;
  }
}

// Arithmetic view of a dtype's storage type: fp16 (stored as uint16_t, kiln's
// only 2-byte type) computes in float; the integer types compute as themselves.
template <typename S> struct NumTraits {
  using C = S;
  static C load(S v) { return v; }
  static S store(C v) { return v; }
};
template <> struct NumTraits<uint16_t> {
  using C = float;
  static C load(uint16_t v) { return half_to_float(v); }
  static uint16_t store(C v) { return float_to_half(v); }
};

// Calls f(S{}) with the storage type of a numeric dtype; returns false for
// bool (no arithmetic), so the caller can report it.
template <typename F> bool with_numeric_type(DataType t, F&& f) {
  switch (t) {
    case DataType::kFloat32: f(float{}); return true;
    case DataType::kFloat16: f(uint16_t{}); return true;
    case DataType::kInt8: f(int8_t{}); return true;
    case DataType::kUInt8: f(uint8_t{}); return true;
    case DataType::kInt32: f(int32_t{}); return true;
    case DataType::kInt64: f(int64_t{}); return true;
    case DataType::kBool: return false;
  }
  return false;
}

// A kernel that is one StridedCopy from input 0 to output 0 (Transpose,
// Expand, Slice, Tile, DepthToSpace...); tactic = prefix + the copy's kind.
class StridedCopyKernel : public Kernel {
 public:
  StridedCopyKernel(const std::string& prefix, StridedCopy copy)
      : copy_(std::move(copy)), tactic_(prefix + copy_.kind()) {}
  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    copy_.run(out[0]->raw(), in[0]->raw());
  }
  std::string tactic() const override { return tactic_; }

 private:
  StridedCopy copy_;
  std::string tactic_;
};

// Reads index `k` of an int32/int64 tensor as int64.
inline int64_t index_at(const ir::Tensor& t, int64_t k) {
  return t.dtype() == DataType::kInt32 ? int64_t(t.data<int32_t>()[k]) : t.data<int64_t>()[k];
}

}  // namespace kiln::cpu
