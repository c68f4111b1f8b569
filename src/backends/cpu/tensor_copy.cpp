#include "backends/cpu/tensor_copy.h"

#include <algorithm>

#include "backends/cpu/parallel.h"

namespace kiln::cpu {

namespace {
constexpr int64_t kChunkBytes = 1 << 20;   // below ~1 MiB threads cost more than they save
constexpr int64_t kGrainBytes = 32 << 10;  // work per parallel_for item group
constexpr int64_t kTile = 16;              // transpose tile edge, in elements
}  // namespace

void parallel_memcpy(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  if (int64_t(bytes) < 2 * kChunkBytes) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const int64_t chunks = (int64_t(bytes) + kChunkBytes - 1) / kChunkBytes;
  parallel_for(chunks, [&](int64_t b, int64_t e) {
    size_t lo = size_t(b * kChunkBytes), hi = std::min(bytes, size_t(e * kChunkBytes));
    std::memcpy(static_cast<uint8_t*>(dst) + lo, static_cast<const uint8_t*>(src) + lo, hi - lo);
  });
}

void fill_elements(void* dst, int64_t count, const void* value, size_t esize) {
  with_element_type(esize, [&](auto tag) {
    using T = decltype(tag);
    T v;
    std::memcpy(&v, value, sizeof(T));
    std::fill(static_cast<T*>(dst), static_cast<T*>(dst) + count, v);
  });
}

std::vector<int64_t> contiguous_strides(const ir::Dims& dims) {
  std::vector<int64_t> s(dims.size(), 1);
  for (int i = int(dims.size()) - 2; i >= 0; --i) s[size_t(i)] = s[size_t(i) + 1] * dims[size_t(i) + 1];
  return s;
}

StridedCopy::StridedCopy(const ir::Dims& out_dims, const std::vector<int64_t>& src_strides, int64_t src_offset,
                         size_t esize)
    : esize_(esize), offset_(src_offset) {
  total_ = ir::numel_of(out_dims);
  if (total_ == 0) return;
  // Coalesce: drop unit dims, merge neighbours that are contiguous in the source.
  for (size_t i = 0; i < out_dims.size(); ++i) {
    if (out_dims[i] == 1) continue;
    if (!dims_.empty() && sstr_.back() == src_strides[i] * out_dims[i]) {
      dims_.back() *= out_dims[i];
      sstr_.back() = src_strides[i];
    } else {
      dims_.push_back(out_dims[i]);
      sstr_.push_back(src_strides[i]);
    }
  }
  if (dims_.empty()) {
    dims_ = {1};
    sstr_ = {1};
  }
  dstr_ = contiguous_strides(dims_);
  const size_t last = dims_.size() - 1;
  if (dims_.size() == 1 && sstr_[0] == 1) {
    kind_ = Kind::kMemcpy;
  } else if (sstr_[last] == 1) {
    kind_ = Kind::kRows;
  } else {
    kind_ = Kind::kElements;
    for (size_t j = 0; j < last; ++j)
      if (sstr_[j] == 1 && dims_[j] >= 8 && dims_[last] >= 8) {
        kind_ = Kind::kTiled;
        tile_axis_ = int(j);
        break;
      }
  }
}

const char* StridedCopy::kind() const {
  switch (kind_) {
    case Kind::kEmpty: return "empty";
    case Kind::kMemcpy: return "memcpy";
    case Kind::kRows: return "rows";
    case Kind::kTiled: return "tiled";
    case Kind::kElements: return "elements";
  }
  return "?";
}

void StridedCopy::run(void* dst, const void* src) const {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src) + offset_ * int64_t(esize_);
  switch (kind_) {
    case Kind::kEmpty: return;
    case Kind::kMemcpy: parallel_memcpy(d, s, size_t(total_) * esize_); return;
    case Kind::kRows: run_rows(d, s); return;
    case Kind::kTiled: run_tiled(d, s); return;
    case Kind::kElements: run_elements(d, s); return;
  }
}

void StridedCopy::run_rows(uint8_t* dst, const uint8_t* src) const {
  const int64_t len = dims_.back(), rows = total_ / len;
  const size_t row_bytes = size_t(len) * esize_;
  ir::Dims od(dims_.begin(), dims_.end() - 1);
  std::vector<int64_t> os(sstr_.begin(), sstr_.end() - 1), odst(dstr_.begin(), dstr_.end() - 1);
  const int64_t es = int64_t(esize_);
  parallel_for(
      rows,
      [&](int64_t b, int64_t e) {
        for_each_offset(od, os, odst, b, e,
                        [&](int64_t so, int64_t dof) { std::memcpy(dst + dof * es, src + so * es, row_bytes); });
      },
      std::max<int64_t>(1, kGrainBytes / int64_t(row_bytes)));
}

void StridedCopy::run_elements(uint8_t* dst, const uint8_t* src) const {
  const int64_t len = dims_.back(), rows = total_ / len, step = sstr_.back();
  ir::Dims od(dims_.begin(), dims_.end() - 1);
  std::vector<int64_t> os(sstr_.begin(), sstr_.end() - 1), odst(dstr_.begin(), dstr_.end() - 1);
  with_element_type(esize_, [&](auto tag) {
    using T = decltype(tag);
    const T* sp = reinterpret_cast<const T*>(src);
    T* dp = reinterpret_cast<T*>(dst);
    parallel_for(
        rows,
        [&](int64_t b, int64_t e) {
          for_each_offset(od, os, odst, b, e, [&](int64_t so, int64_t dof) {
            const T* s = sp + so;
            T* d = dp + dof;
            if (step == 0) {
              std::fill(d, d + len, *s);
            } else {
              for (int64_t t = 0; t < len; ++t) d[t] = s[t * step];
            }
          });
        },
        std::max<int64_t>(1, kGrainBytes / (len * int64_t(esize_))));
  });
}

// 2-D blocked transpose between the axis that is contiguous in the source and
// the axis that is contiguous in the output, so both sides stay in cache.
void StridedCopy::run_tiled(uint8_t* dst, const uint8_t* src) const {
  const size_t j = size_t(tile_axis_), last = dims_.size() - 1;
  const int64_t na = dims_[j], nb = dims_[last], sb = sstr_[last], da = dstr_[j];
  ir::Dims od;
  std::vector<int64_t> os, odst;
  for (size_t i = 0; i < last; ++i)
    if (i != j) {
      od.push_back(dims_[i]);
      os.push_back(sstr_[i]);
      odst.push_back(dstr_[i]);
    }
  const int64_t outer = ir::numel_of(od), ta = (na + kTile - 1) / kTile;
  with_element_type(esize_, [&](auto tag) {
    using T = decltype(tag);
    const T* sp = reinterpret_cast<const T*>(src);
    T* dp = reinterpret_cast<T*>(dst);
    parallel_for(
        outer * ta,
        [&](int64_t b, int64_t e) {
          for (int64_t w = b; w < e; ++w) {
            const int64_t o = w / ta, a0 = (w % ta) * kTile, a1 = std::min(na, a0 + kTile);
            int64_t so = 0, dof = 0, rem = o;
            for (int i = int(od.size()) - 1; i >= 0; --i) {
              const int64_t ix = rem % od[size_t(i)];
              rem /= od[size_t(i)];
              so += ix * os[size_t(i)];
              dof += ix * odst[size_t(i)];
            }
            for (int64_t b0 = 0; b0 < nb; b0 += kTile) {
              const int64_t b1 = std::min(nb, b0 + kTile);
              for (int64_t a = a0; a < a1; ++a) {
                const T* s = sp + so + a;
                T* d = dp + dof + a * da;
                for (int64_t bb = b0; bb < b1; ++bb) d[bb] = s[bb * sb];
              }
            }
          }
        },
        std::max<int64_t>(1, kGrainBytes / (kTile * nb * int64_t(esize_))));
  });
}

}  // namespace kiln::cpu
