// CPU kernels for the tensor data-movement ops. All of them copy by element
// size, so every kiln dtype works. Contiguous runs go through memcpy; the
// index arithmetic is planned once when the kernel is created (shapes are
// static). Scatter/TopK/Trilu/OneHot live in tensor_select.cpp.
#include <algorithm>

#include "backends/cpu/kernel.h"
#include "backends/cpu/parallel.h"
#include "backends/cpu/tensor_copy.h"
#include "ir/ops/tensor_params.h"
#include "kiln/error.h"

namespace kiln::cpu {

void register_tensor_select_kernels(KernelRegistry& r);  // tensor_select.cpp

namespace {

constexpr int64_t kGrainBytes = 32 << 10;

const ir::Value& value_of(const ir::Node& n, size_t k) {
  const ir::Value* v = n.in(k);
  if (!v || !v->has_shape) throw_bad_input(n.label() + ": input " + std::to_string(k) + " is missing or has no shape");
  return *v;
}

int64_t prod(const ir::Dims& d, size_t b, size_t e) {
  int64_t p = 1;
  for (size_t i = b; i < e && i < d.size(); ++i) p *= d[i];
  return p;
}

int64_t grain_for(int64_t bytes_per_item) { return std::max<int64_t>(1, kGrainBytes / std::max<int64_t>(1, bytes_per_item)); }

// Concat and Split share one layout: per outer index, a row of the joined
// tensor is the concatenation of one row of every part.
struct Parts {
  int64_t outer = 1;
  std::vector<int64_t> part_bytes;  // row bytes of each part
  int64_t row_bytes = 0;
};

Parts parts_layout(const std::vector<ir::Dims>& parts, int64_t axis, size_t esize) {
  Parts p;
  if (!parts.empty()) p.outer = prod(parts[0], 0, size_t(axis));
  for (auto& d : parts) {
    p.part_bytes.push_back(prod(d, size_t(axis), d.size()) * int64_t(esize));
    p.row_bytes += p.part_bytes.back();
  }
  return p;
}

std::unique_ptr<Kernel> make_concat(const ir::Node& n) {
  const ir::Value& x0 = value_of(n, 0);
  const int64_t axis = ir::normalize_axis(n, n.i("axis", 0), int64_t(x0.dims.size()));
  std::vector<ir::Dims> dims;
  for (size_t k = 0; k < n.inputs.size(); ++k) dims.push_back(value_of(n, k).dims);
  Parts p = parts_layout(dims, axis, dtype_size(x0.dtype));
  return make_kernel(p.outer == 1 ? "concat_memcpy" : "concat_rows",
                     [p](const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) {
    auto* dst = out[0]->data<uint8_t>();
    if (p.outer == 1) {
      int64_t off = 0;
      for (size_t k = 0; k < in.size(); ++k) {
        parallel_memcpy(dst + off, in[k]->raw(), size_t(p.part_bytes[k]));
        off += p.part_bytes[k];
      }
      return;
    }
    parallel_for(p.outer, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        int64_t off = o * p.row_bytes;
        for (size_t k = 0; k < in.size(); ++k) {
          std::memcpy(dst + off, in[k]->data<uint8_t>() + o * p.part_bytes[k], size_t(p.part_bytes[k]));
          off += p.part_bytes[k];
        }
      }
    }, grain_for(p.row_bytes));
  });
}

std::unique_ptr<Kernel> make_split(const ir::Node& n) {
  const ir::Value& x = value_of(n, 0);
  const int64_t axis = ir::normalize_axis(n, n.i("axis", 0), int64_t(x.dims.size()));
  std::vector<ir::Dims> dims;
  for (int64_t s : ir::split_sizes(n, axis)) {
    dims.push_back(x.dims);
    dims.back()[size_t(axis)] = s;
  }
  Parts p = parts_layout(dims, axis, dtype_size(x.dtype));
  return make_kernel(p.outer == 1 ? "split_memcpy" : "split_rows",
                     [p](const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) {
    const auto* src = in[0]->data<uint8_t>();
    if (p.outer == 1) {
      int64_t off = 0;
      for (size_t k = 0; k < out.size(); ++k) {
        if (out[k]) parallel_memcpy(out[k]->raw(), src + off, size_t(p.part_bytes[k]));
        off += p.part_bytes[k];
      }
      return;
    }
    parallel_for(p.outer, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        int64_t off = o * p.row_bytes;
        for (size_t k = 0; k < out.size(); ++k) {
          if (out[k]) std::memcpy(out[k]->data<uint8_t>() + o * p.part_bytes[k], src + off, size_t(p.part_bytes[k]));
          off += p.part_bytes[k];
        }
      }
    }, grain_for(p.row_bytes));
  });
}

std::unique_ptr<Kernel> make_slice(const ir::Node& n) {
  const ir::Value& x = value_of(n, 0);
  ir::SliceParams p = ir::slice_params(n);
  std::vector<int64_t> str = contiguous_strides(x.dims), sstr(str.size());
  int64_t offset = 0;
  for (size_t d = 0; d < str.size(); ++d) {
    sstr[d] = str[d] * p.step[d];
    offset += p.start[d] * str[d];
  }
  return std::make_unique<StridedCopyKernel>("slice_", StridedCopy(p.out, sstr, offset, dtype_size(x.dtype)));
}

// Tile as a strided copy: output axis d is viewed as (repeat, d) with the
// repeat axis reading the source with stride 0.
std::unique_ptr<Kernel> make_tile(const ir::Node& n) {
  const ir::Value& x = value_of(n, 0);
  const ir::Dims& od = n.outputs[0]->dims;
  std::vector<int64_t> str = contiguous_strides(x.dims), sstr;
  ir::Dims dims;
  for (size_t d = 0; d < x.dims.size(); ++d) {
    const int64_t reps = x.dims[d] == 0 ? 0 : od[d] / x.dims[d];
    dims.insert(dims.end(), {reps, x.dims[d]});
    sstr.insert(sstr.end(), {0, str[d]});
  }
  return std::make_unique<StridedCopyKernel>("tile_", StridedCopy(dims, sstr, 0, dtype_size(x.dtype)));
}

// DepthToSpace / SpaceToDepth are a reshape, a 6-D transpose and a reshape:
// one strided copy over the transposed view.
std::unique_ptr<Kernel> make_depth_space(const ir::Node& n) {
  const ir::Value& x = value_of(n, 0);
  const int64_t b = n.i("blocksize", 0);
  const int64_t C = x.dims[1], H = x.dims[2], W = x.dims[3], sN = C * H * W;
  ir::Dims dims;
  std::vector<int64_t> sstr;
  if (n.op_type == "DepthToSpace") {
    const int64_t c = C / (b * b), HW = H * W;
    // Output viewed as (N, c, H, b1, W, b2); input channel = b1*b*c + b2*c + ch (DCR) or ch*b*b + b1*b + b2 (CRD).
    const bool crd = n.s("mode", "DCR") == "CRD";
    const int64_t s_c = crd ? b * b * HW : HW, s_b1 = crd ? b * HW : b * c * HW, s_b2 = crd ? HW : c * HW;
    dims = {x.dims[0], c, H, b, W, b};
    sstr = {sN, s_c, W, s_b1, 1, s_b2};
  } else {
    // Output viewed as (N, b1, b2, C, H/b, W/b) reading input (N, C, H/b, b1, W/b, b2).
    dims = {x.dims[0], b, b, C, H / b, W / b};
    sstr = {sN, W, 1, H * W, b * W, b};
  }
  std::string prefix = n.op_type == "DepthToSpace" ? "depth_to_space_" : "space_to_depth_";
  return std::make_unique<StridedCopyKernel>(prefix, StridedCopy(dims, sstr, 0, dtype_size(x.dtype)));
}

// Checks an index against an axis of `dim` elements; negative counts from the end.
inline int64_t checked_index(const std::string& label, int64_t v, int64_t dim) {
  if (v < -dim || v >= dim)
    throw_bad_input(label + ": index " + std::to_string(v) + " is out of range for an axis of " + std::to_string(dim));
  return v < 0 ? v + dim : v;
}

std::unique_ptr<Kernel> make_gather(const ir::Node& n) {
  const ir::Value& x = value_of(n, 0);
  const int64_t axis = ir::normalize_axis(n, n.i("axis", 0), int64_t(x.dims.size()));
  const int64_t outer = prod(x.dims, 0, size_t(axis)), dim = x.dims[size_t(axis)];
  const int64_t inner = prod(x.dims, size_t(axis) + 1, x.dims.size());
  const size_t es = dtype_size(x.dtype);
  return make_kernel(inner == 1 ? "gather_elements" : "gather_rows",
                     [=, label = n.label()](const std::vector<const ir::Tensor*>& in,
                                            const std::vector<ir::Tensor*>& out) {
    const ir::Tensor& it = *in[1];
    const int64_t m = it.numel();
    std::vector<int64_t> idx(static_cast<size_t>(m));
    for (int64_t j = 0; j < m; ++j) idx[size_t(j)] = checked_index(label, index_at(it, j), dim);
    const auto* src = in[0]->data<uint8_t>();
    auto* dst = out[0]->data<uint8_t>();
    if (inner == 1) {
      with_element_type(es, [&](auto tag) {
        using T = decltype(tag);
        const T* s = reinterpret_cast<const T*>(src);
        T* d = reinterpret_cast<T*>(dst);
        parallel_for(outer, [&](int64_t b, int64_t e) {
          for (int64_t o = b; o < e; ++o)
            for (int64_t j = 0; j < m; ++j) d[o * m + j] = s[o * dim + idx[size_t(j)]];
        }, grain_for(m * int64_t(es)));
      });
      return;
    }
    const size_t row = size_t(inner) * es;
    parallel_for(outer * m, [&](int64_t b, int64_t e) {
      for (int64_t w = b; w < e; ++w) {
        const int64_t o = w / m, j = w % m;
        std::memcpy(dst + size_t(w) * row, src + size_t(o * dim + idx[size_t(j)]) * row, row);
      }
    }, grain_for(int64_t(row)));
  });
}

std::unique_ptr<Kernel> make_gather_elements(const ir::Node& n) {
  const ir::Value& x = value_of(n, 0);
  const ir::Value& iv = value_of(n, 1);
  const int64_t axis = ir::normalize_axis(n, n.i("axis", 0), int64_t(x.dims.size()));
  std::vector<int64_t> sstr = contiguous_strides(x.dims);
  const int64_t axis_stride = sstr[size_t(axis)], dim = x.dims[size_t(axis)];
  sstr[size_t(axis)] = 0;  // the axis coordinate comes from the index instead
  const ir::Dims idims = iv.dims;
  const std::vector<int64_t> dstr = contiguous_strides(idims);
  const size_t es = dtype_size(x.dtype);
  return make_kernel("gather_elements", [=, label = n.label()](const std::vector<const ir::Tensor*>& in,
                                                               const std::vector<ir::Tensor*>& out) {
    const ir::Tensor& it = *in[1];
    with_element_type(es, [&](auto tag) {
      using T = decltype(tag);
      const T* s = in[0]->data<T>();
      T* d = out[0]->data<T>();
      // Validate first so no worker throws.
      for (int64_t j = 0; j < it.numel(); ++j) checked_index(label, index_at(it, j), dim);
      parallel_for(it.numel(), [&](int64_t b, int64_t e) {
        for_each_offset(idims, sstr, dstr, b, e, [&](int64_t so, int64_t dof) {
          int64_t v = index_at(it, dof);
          d[dof] = s[so + (v < 0 ? v + dim : v) * axis_stride];
        });
      }, 4096);
    });
  });
}

std::unique_ptr<Kernel> make_gather_nd(const ir::Node& n) {
  const ir::Value& x = value_of(n, 0);
  const ir::Value& iv = value_of(n, 1);
  const size_t bd = size_t(n.i("batch_dims", 0)), q = iv.dims.size();
  const int64_t m = iv.dims.back();
  const int64_t batches = prod(x.dims, 0, bd), tuples = prod(iv.dims, bd, q - 1);
  const int64_t slice = prod(x.dims, bd + size_t(m), x.dims.size()), batch_stride = prod(x.dims, bd, x.dims.size());
  const std::vector<int64_t> str = contiguous_strides(x.dims);
  const ir::Dims dims = x.dims;
  const size_t es = dtype_size(x.dtype);
  return make_kernel("gather_nd", [=, label = n.label()](const std::vector<const ir::Tensor*>& in,
                                                         const std::vector<ir::Tensor*>& out) {
    const ir::Tensor& it = *in[1];
    std::vector<int64_t> offs(static_cast<size_t>(batches * tuples));
    for (int64_t w = 0; w < batches * tuples; ++w) {
      int64_t off = (w / tuples) * batch_stride;
      for (int64_t k = 0; k < m; ++k)
        off += checked_index(label, index_at(it, w * m + k), dims[bd + size_t(k)]) * str[bd + size_t(k)];
      offs[size_t(w)] = off;
    }
    const auto* src = in[0]->data<uint8_t>();
    auto* dst = out[0]->data<uint8_t>();
    const size_t row = size_t(slice) * es;
    parallel_for(batches * tuples, [&](int64_t b, int64_t e) {
      for (int64_t w = b; w < e; ++w) std::memcpy(dst + size_t(w) * row, src + size_t(offs[size_t(w)]) * es, row);
    }, grain_for(int64_t(row)));
  });
}

// Pad: every output axis maps to a source coordinate or -1 (constant). The
// last axis is pre-cut into runs so interior rows are single memcpys.
class PadKernel : public Kernel {
 public:
  explicit PadKernel(const ir::Node& n) {
    const ir::Value& x = value_of(n, 0);
    ir::PadParams p = ir::pad_params(n);
    in_dims_ = x.dims;
    out_dims_ = n.outputs[0]->dims;
    es_ = dtype_size(x.dtype);
    in_str_ = contiguous_strides(in_dims_);
    maps_.resize(in_dims_.size());
    for (size_t a = 0; a < in_dims_.size(); ++a) {
      const int64_t dim = in_dims_[a];
      for (int64_t o = 0; o < out_dims_[a]; ++o) maps_[a].push_back(source_coord(o - p.begin[a], dim, p.mode));
    }
    if (!in_dims_.empty()) {
      const auto& last = maps_.back();
      for (size_t o = 0; o < last.size(); ++o) {
        const bool extend = !runs_.empty() && ((last[o] < 0 && runs_.back().src < 0) ||
                                               (last[o] >= 0 && runs_.back().src >= 0 &&
                                                runs_.back().src + runs_.back().len == last[o]));
        if (extend) ++runs_.back().len;
        else runs_.push_back({last[o], 1});
      }
    }
    tactic_ = "pad_" + p.mode;
  }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    std::vector<uint8_t> value(es_, 0);
    if (in.size() > 2 && in[2] && in[2]->numel() > 0) std::memcpy(value.data(), in[2]->raw(), es_);
    const auto* src = in[0]->data<uint8_t>();
    auto* dst = out[0]->data<uint8_t>();
    if (in_dims_.empty()) {
      std::memcpy(dst, src, es_);
      return;
    }
    const size_t r = in_dims_.size();
    const int64_t len = out_dims_.back();
    if (len == 0) return;
    const int64_t rows = out[0]->numel() / len;
    const int64_t es = int64_t(es_);
    parallel_for(rows, [&](int64_t b, int64_t e) {
      for (int64_t row = b; row < e; ++row) {
        uint8_t* d = dst + row * len * es;
        int64_t so = 0, rem = row;
        bool fill = false;
        for (size_t a = r - 1; a-- > 0;) {
          const int64_t c = maps_[a][size_t(rem % out_dims_[a])];
          rem /= out_dims_[a];
          if (c < 0) fill = true;
          so += c * in_str_[a];
        }
        if (fill) {
          fill_elements(d, len, value.data(), es_);
          continue;
        }
        for (const Run& run : runs_) {
          if (run.src < 0) fill_elements(d, run.len, value.data(), es_);
          else std::memcpy(d, src + (so + run.src) * es, size_t(run.len * es));
          d += run.len * es;
        }
      }
    }, grain_for(len * es));
  }
  std::string tactic() const override { return tactic_; }

 private:
  struct Run {
    int64_t src, len;
  };
  static int64_t source_coord(int64_t i, int64_t dim, const std::string& mode) {
    if (i >= 0 && i < dim) return i;
    if (mode == "constant") return -1;
    if (mode == "edge") return i < 0 ? 0 : dim - 1;
    if (mode == "wrap") return ((i % dim) + dim) % dim;
    if (dim == 1) return 0;  // reflect: mirror without repeating the edge, period 2*(dim-1)
    const int64_t period = 2 * (dim - 1);
    int64_t m = ((i % period) + period) % period;
    return m < dim ? m : period - m;
  }

  ir::Dims in_dims_, out_dims_;
  std::vector<int64_t> in_str_;
  std::vector<std::vector<int64_t>> maps_;
  std::vector<Run> runs_;
  size_t es_ = 1;
  std::string tactic_;
};

}  // namespace

void register_tensor_kernels(KernelRegistry& r) {
  r.add("Concat", make_concat);
  r.add("Split", make_split);
  r.add("Slice", make_slice);
  r.add("Tile", make_tile);
  r.add("DepthToSpace", make_depth_space);
  r.add("SpaceToDepth", make_depth_space);
  r.add("Gather", make_gather);
  r.add("GatherElements", make_gather_elements);
  r.add("GatherND", make_gather_nd);
  r.add("Pad", [](const ir::Node& n) -> std::unique_ptr<Kernel> { return std::make_unique<PadKernel>(n); });
  register_tensor_select_kernels(r);
}

}  // namespace kiln::cpu
