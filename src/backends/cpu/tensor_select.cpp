// CPU kernels for the tensor ops that pick elements by value or index:
// ScatterND, ScatterElements (and its old name Scatter), TopK, Trilu, OneHot.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "backends/cpu/kernel.h"
#include "backends/cpu/parallel.h"
#include "backends/cpu/tensor_copy.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

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

int64_t checked_index(const std::string& label, int64_t v, int64_t dim) {
  if (v < -dim || v >= dim)
    throw_bad_input(label + ": index " + std::to_string(v) + " is out of range for an axis of " + std::to_string(dim));
  return v < 0 ? v + dim : v;
}

enum class Reduction { kNone, kAdd, kMul, kMax, kMin };

Reduction reduction_of(const ir::Node& n) {
  const std::string r = n.s("reduction", "none");
  Reduction red = r == "add" ? Reduction::kAdd : r == "mul" ? Reduction::kMul : r == "max" ? Reduction::kMax
                : r == "min" ? Reduction::kMin : Reduction::kNone;
  if (red == Reduction::kNone && r != "none") throw_unsupported(n.label() + ": reduction '" + r + "' is not supported");
  if (red != Reduction::kNone && n.in(0) && n.in(0)->dtype == DataType::kBool)
    throw_unsupported(n.label() + ": reduction '" + r + "' on bool data is not supported");
  return red;
}

// dst[i] = dst[i] (op) upd[i] for `count` elements of dtype `t`.
void combine(DataType t, Reduction red, void* dst, const void* upd, int64_t count) {
  with_numeric_type(t, [&](auto tag) {
    using S = decltype(tag);
    using Tr = NumTraits<S>;
    using C = typename Tr::C;
    S* d = static_cast<S*>(dst);
    const S* u = static_cast<const S*>(upd);
    for (int64_t i = 0; i < count; ++i) {
      const C a = Tr::load(d[i]), b = Tr::load(u[i]);
      C v = a;
      switch (red) {
        case Reduction::kAdd: v = C(a + b); break;
        case Reduction::kMul: v = C(a * b); break;
        case Reduction::kMax: v = std::max(a, b); break;
        case Reduction::kMin: v = std::min(a, b); break;
        case Reduction::kNone: v = b; break;
      }
      d[i] = Tr::store(v);
    }
  });
}

std::unique_ptr<Kernel> make_scatter_nd(const ir::Node& n) {
  const ir::Value& x = value_of(n, 0);
  const ir::Value& iv = value_of(n, 1);
  const Reduction red = reduction_of(n);
  const int64_t m = iv.dims.back(), tuples = prod(iv.dims, 0, iv.dims.size() - 1);
  const int64_t slice = prod(x.dims, size_t(m), x.dims.size());
  const std::vector<int64_t> str = contiguous_strides(x.dims);
  const ir::Dims dims = x.dims;
  const DataType dt = x.dtype;
  const size_t es = dtype_size(dt);
  return make_kernel("scatter_nd", [=, label = n.label()](const std::vector<const ir::Tensor*>& in,
                                                          const std::vector<ir::Tensor*>& out) {
    parallel_memcpy(out[0]->raw(), in[0]->raw(), out[0]->nbytes());
    auto* dst = out[0]->data<uint8_t>();
    const auto* upd = in[2]->data<uint8_t>();
    // Sequential: later updates win (or combine) in index order, as ONNX specifies.
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t off = 0;
      for (int64_t k = 0; k < m; ++k)
        off += checked_index(label, index_at(*in[1], t * m + k), dims[size_t(k)]) * str[size_t(k)];
      if (red == Reduction::kNone) std::memcpy(dst + off * es, upd + t * slice * es, size_t(slice) * es);
      else combine(dt, red, dst + off * es, upd + t * slice * es, slice);
    }
  });
}

std::unique_ptr<Kernel> make_scatter_elements(const ir::Node& n) {
  const ir::Value& x = value_of(n, 0);
  const ir::Value& iv = value_of(n, 1);
  const Reduction red = reduction_of(n);
  const int64_t axis = ir::normalize_axis(n, n.i("axis", 0), int64_t(x.dims.size()));
  std::vector<int64_t> sstr = contiguous_strides(x.dims);
  const int64_t axis_stride = sstr[size_t(axis)], dim = x.dims[size_t(axis)];
  sstr[size_t(axis)] = 0;
  const ir::Dims idims = iv.dims;
  const std::vector<int64_t> ustr = contiguous_strides(idims);
  const DataType dt = x.dtype;
  const size_t es = dtype_size(dt);
  return make_kernel("scatter_elements", [=, label = n.label()](const std::vector<const ir::Tensor*>& in,
                                                                const std::vector<ir::Tensor*>& out) {
    parallel_memcpy(out[0]->raw(), in[0]->raw(), out[0]->nbytes());
    auto* dst = out[0]->data<uint8_t>();
    const auto* upd = in[2]->data<uint8_t>();
    for_each_offset(idims, sstr, ustr, 0, ir::numel_of(idims), [&](int64_t so, int64_t uo) {
      const int64_t pos = so + checked_index(label, index_at(*in[1], uo), dim) * axis_stride;
      if (red == Reduction::kNone) std::memcpy(dst + pos * int64_t(es), upd + uo * int64_t(es), es);
      else combine(dt, red, dst + pos * int64_t(es), upd + uo * int64_t(es), 1);
    });
  });
}

// TopK: per row along the axis, a partial sort of (value, index) pairs. Ties
// keep the lower index first; NaN counts as larger than every number.
std::unique_ptr<Kernel> make_topk(const ir::Node& n) {
  const ir::Value& x = value_of(n, 0);
  const int64_t axis = ir::normalize_axis(n, n.i("axis", -1), int64_t(x.dims.size()));
  const int64_t outer = prod(x.dims, 0, size_t(axis)), len = x.dims[size_t(axis)];
  const int64_t inner = prod(x.dims, size_t(axis) + 1, x.dims.size());
  const int64_t k = n.outputs[0] ? n.outputs[0]->dims[size_t(axis)] : n.outputs[1]->dims[size_t(axis)];
  const bool largest = n.i("largest", 1) != 0;
  const DataType dt = x.dtype;
  if (dt == DataType::kBool) throw_unsupported(n.label() + ": TopK on bool data is not supported");
  return make_kernel(largest ? "topk_partial_sort_largest" : "topk_partial_sort_smallest",
                     [=](const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) {
    if (k == 0) return;
    with_numeric_type(dt, [&](auto tag) {
      using S = decltype(tag);
      using Tr = NumTraits<S>;
      using C = typename Tr::C;
      const S* src = in[0]->data<S>();
      S* vals = out[0] ? out[0]->data<S>() : nullptr;
      int64_t* idxs = out.size() > 1 && out[1] ? out[1]->data<int64_t>() : nullptr;
      auto greater = [](C a, C b) {
        if constexpr (std::is_floating_point_v<C>) {
          if (std::isnan(a)) return !std::isnan(b);
          if (std::isnan(b)) return false;
        }
        return a > b;
      };
      parallel_for(outer * inner, [&](int64_t b, int64_t e) {
        std::vector<std::pair<C, int64_t>> row(static_cast<size_t>(len));
        for (int64_t w = b; w < e; ++w) {
          const int64_t o = w / inner, i = w % inner;
          const S* s = src + o * len * inner + i;
          for (int64_t j = 0; j < len; ++j) row[size_t(j)] = {Tr::load(s[j * inner]), j};
          auto before = [&](const std::pair<C, int64_t>& p, const std::pair<C, int64_t>& q) {
            const bool pq = largest ? greater(p.first, q.first) : greater(q.first, p.first);
            const bool qp = largest ? greater(q.first, p.first) : greater(p.first, q.first);
            return pq || (!qp && p.second < q.second);
          };
          std::partial_sort(row.begin(), row.begin() + k, row.end(), before);
          const int64_t base = o * k * inner + i;
          for (int64_t j = 0; j < k; ++j) {
            if (vals) vals[base + j * inner] = s[row[size_t(j)].second * inner];
            if (idxs) idxs[base + j * inner] = row[size_t(j)].second;
          }
        }
      }, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, len)));
    });
  });
}

// Trilu keeps a band of each matrix and zeroes the rest; zero bytes are zero
// in every kiln dtype.
std::unique_ptr<Kernel> make_trilu(const ir::Node& n) {
  const ir::Value& x = value_of(n, 0);
  const int64_t R = x.dims[x.dims.size() - 2], C = x.dims.back();
  const bool upper = n.i("upper", 1) != 0;
  const size_t es = dtype_size(x.dtype);
  return make_kernel(upper ? "triu_rows" : "tril_rows",
                     [=](const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) {
    int64_t k = 0;
    if (in.size() > 1 && in[1] && in[1]->numel() > 0) k = in[1]->to_int64()[0];
    k = std::clamp<int64_t>(k, -(R + C + 1), R + C + 1);  // beyond this the band is all or nothing
    const auto* src = in[0]->data<uint8_t>();
    auto* dst = out[0]->data<uint8_t>();
    if (R == 0 || C == 0) return;
    const int64_t rows = out[0]->numel() / C;
    parallel_for(rows, [&](int64_t b, int64_t e) {
      for (int64_t w = b; w < e; ++w) {
        const int64_t i = w % R;
        // Kept columns: j - i >= k (upper) or j - i <= k (lower).
        const int64_t lo = upper ? std::clamp<int64_t>(i + k, 0, C) : 0;
        const int64_t hi = upper ? C : std::clamp<int64_t>(i + k + 1, 0, C);
        uint8_t* d = dst + w * C * int64_t(es);
        const uint8_t* s = src + w * C * int64_t(es);
        std::memset(d, 0, size_t(lo) * es);
        std::memcpy(d + lo * int64_t(es), s + lo * int64_t(es), size_t(hi - lo) * es);
        std::memset(d + hi * int64_t(es), 0, size_t(C - hi) * es);
      }
    }, std::max<int64_t>(1, 4096 / C));
  });
}

std::unique_ptr<Kernel> make_onehot(const ir::Node& n) {
  const ir::Value& iv = value_of(n, 0);
  const ir::Dims& od = n.outputs[0]->dims;
  const int64_t r = int64_t(iv.dims.size());
  int64_t axis = n.i("axis", -1);
  if (axis < 0) axis += r + 1;
  const int64_t depth = od[size_t(axis)];
  const int64_t pre = prod(iv.dims, 0, size_t(axis)), post = prod(iv.dims, size_t(axis), iv.dims.size());
  const size_t es = dtype_size(n.outputs[0]->dtype);
  return make_kernel("onehot", [=](const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) {
    const std::vector<int64_t> idx = in[0]->to_int64();
    const auto* vals = in[2]->data<uint8_t>();
    auto* dst = out[0]->data<uint8_t>();
    fill_elements(dst, out[0]->numel(), vals, es);
    for (int64_t a = 0; a < pre; ++a)
      for (int64_t b = 0; b < post; ++b) {
        int64_t v = idx[size_t(a * post + b)];
        if (v < 0) v += depth;
        if (v < 0 || v >= depth) continue;  // out-of-range indices give an all-off row
        std::memcpy(dst + ((a * depth + v) * post + b) * int64_t(es), vals + es, es);
      }
  });
}

}  // namespace

void register_tensor_select_kernels(KernelRegistry& r) {
  r.add("ScatterND", make_scatter_nd);
  r.add("ScatterElements", make_scatter_elements);
  r.add("Scatter", make_scatter_elements);
  r.add("TopK", make_topk);
  r.add("Trilu", make_trilu);
  r.add("OneHot", make_onehot);
}

}  // namespace kiln::cpu
