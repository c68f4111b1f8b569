// CPU Resize. Shapes are static, so the kernel factory turns every axis into
// a table of (source index, weight) taps per output coordinate once; run()
// only walks the tables. Paths: plain copy, nearest gather (any dtype, pure
// data movement), a 2-D bilinear loop for NCHW fp32, and a separable
// axis-by-axis float path for everything else (cubic, antialias, n-D, ints).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>

#include "backends/cpu/kernel.h"
#include "backends/cpu/parallel.h"
#include "backends/cpu/tensor_copy.h"
#include "ir/ops/resize_params.h"
#include "ir/ops/resize_table.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

void load_floats(const ir::Tensor& t, float* dst) {
  const int64_t n = t.numel();
  if (t.dtype() == DataType::kFloat32) {
    std::memcpy(dst, t.raw(), size_t(n) * 4);
    return;
  }
  with_numeric_type(t.dtype(), [&](auto tag) {
    using S = decltype(tag);
    const S* s = t.data<S>();
    for (int64_t i = 0; i < n; ++i) dst[i] = float(NumTraits<S>::load(s[i]));
  });
}

// Float results back to the tensor's dtype; integers round half to even and saturate.
void store_floats(const float* src, ir::Tensor& t) {
  const int64_t n = t.numel();
  with_numeric_type(t.dtype(), [&](auto tag) {
    using S = decltype(tag);
    S* d = t.data<S>();
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (std::is_integral_v<S> && !std::is_same_v<S, uint16_t>) {
        const double lo = double(std::numeric_limits<S>::lowest()), hi = double(std::numeric_limits<S>::max());
        double v = std::nearbyint(double(src[i]));
        d[i] = std::isnan(v) ? S(0) : S(std::clamp(v, lo, hi));
      } else {
        d[i] = NumTraits<S>::store(src[i]);
      }
    }
  });
}

class ResizeKernel : public Kernel {
 public:
  explicit ResizeKernel(const ir::Node& n) : spec_(ir::resize_spec(n)), label_(n.label()) {
    dtype_ = n.in(0)->dtype;
    es_ = dtype_size(dtype_);
    for (size_t a = 0; a < spec_.in.size(); ++a) tables_.push_back(ir::resize_table(spec_, a));
    const size_t r = tables_.size();
    bool all_identity = true;
    for (auto& t : tables_) all_identity = all_identity && t.identity;
    if (all_identity) {
      tactic_ = "resize_copy";
    } else if (spec_.mode == "nearest") {
      tactic_ = "resize_nearest_gather";
    } else {
      if (dtype_ == DataType::kBool) throw_unsupported(label_ + ": " + spec_.mode + " resize of bool data is not supported");
      bool outer_identity = r >= 2 && tables_[r - 1].taps == 2 && tables_[r - 2].taps == 2;
      for (size_t a = 0; outer_identity && a + 2 < r; ++a) outer_identity = tables_[a].identity;
      tactic_ = outer_identity && dtype_ == DataType::kFloat32 && spec_.mode == "linear" ? "resize_bilinear2d_fp32"
                                                                                         : "resize_separable_" + spec_.mode;
    }
  }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    if (in[0]->dims() != spec_.in)
      throw_bad_input(label_ + ": input shape " + shape_str(in[0]->dims()) + " differs from the built shape " +
                      shape_str(spec_.in));
    if (out[0]->numel() == 0) return;
    if (tactic_ == "resize_copy") parallel_memcpy(out[0]->raw(), in[0]->raw(), in[0]->nbytes());
    else if (tactic_ == "resize_nearest_gather") run_nearest(*in[0], *out[0]);
    else if (tactic_ == "resize_bilinear2d_fp32") run_bilinear(*in[0], *out[0]);
    else run_separable(*in[0], *out[0]);
  }
  std::string tactic() const override { return tactic_; }

 private:
  void run_nearest(const ir::Tensor& x, ir::Tensor& y) const;
  void run_bilinear(const ir::Tensor& x, ir::Tensor& y) const;
  void run_separable(const ir::Tensor& x, ir::Tensor& y) const;

  ir::ResizeSpec spec_;
  std::string label_, tactic_;
  DataType dtype_ = DataType::kFloat32;
  size_t es_ = 4;
  std::vector<ir::ResizeTable> tables_;
};

void ResizeKernel::run_nearest(const ir::Tensor& x, ir::Tensor& y) const {
  const size_t r = tables_.size();
  const std::vector<int64_t> str = contiguous_strides(spec_.in);
  const ir::ResizeTable& last = tables_.back();
  const int64_t len = last.len, rows = y.numel() / len, es = int64_t(es_);
  std::vector<int64_t> col(static_cast<size_t>(len));
  for (int64_t o = 0; o < len; ++o) col[size_t(o)] = last.idx[size_t(o)] * str[r - 1];
  ir::Tensor fill_value(dtype_, {1});
  if (dtype_ != DataType::kBool) store_floats(&spec_.extrapolation, fill_value);
  else fill_value.data<uint8_t>()[0] = spec_.extrapolation != 0;
  const auto* src = x.data<uint8_t>();
  auto* dst = y.data<uint8_t>();
  with_element_type(es_, [&](auto tag) {
    using T = decltype(tag);
    const T* s = reinterpret_cast<const T*>(src);
    T* d = reinterpret_cast<T*>(dst);
    const T ext = fill_value.data<T>()[0];
    parallel_for(rows, [&](int64_t b, int64_t e) {
      int64_t prev = -1;
      for (int64_t row = b; row < e; ++row) {
        int64_t off = 0, rem = row;
        bool outside = false;
        for (size_t a = r - 1; a-- > 0;) {
          const int64_t o = rem % tables_[a].len;
          rem /= tables_[a].len;
          outside = outside || tables_[a].outside[size_t(o)];
          off += tables_[a].idx[size_t(o)] * str[a];
        }
        T* dr = d + row * len;
        if (outside) {
          std::fill(dr, dr + len, ext);
          prev = -1;
          continue;
        }
        if (off == prev) {  // repeated source row (upsampling): copy the row just written
          std::memcpy(dr, dr - len, size_t(len * es));
          continue;
        }
        prev = off;
        if (last.identity) {
          std::memcpy(dr, s + off, size_t(len * es));
          continue;
        }
        for (int64_t o = 0; o < len; ++o) dr[o] = s[off + col[size_t(o)]];
        if (last.any_outside)
          for (int64_t o = 0; o < len; ++o)
            if (last.outside[size_t(o)]) dr[o] = ext;
      }
    }, std::max<int64_t>(1, 8192 / len));
  });
}

// Work items are (plane, block of output rows). Each item first interpolates
// the source rows its block reads along W (2 gathers per value, once per
// source row), then blends row pairs along H with contiguous, vectorizable
// loops. Upsampling reuses every horizontal row for several output rows.
void ResizeKernel::run_bilinear(const ir::Tensor& x, ir::Tensor& y) const {
  constexpr int64_t kRowBlock = 16;
  const size_t r = tables_.size();
  const ir::ResizeTable &ty = tables_[r - 2], &tx = tables_[r - 1];
  const int64_t H = spec_.in[r - 2], W = spec_.in[r - 1], OH = ty.len, OW = tx.len;
  const int64_t planes = y.numel() / (OH * OW), blocks = (OH + kRowBlock - 1) / kRowBlock;
  const float* src = x.data<float>();
  float* dst = y.data<float>();
  const float ext = spec_.extrapolation;
  const int64_t* xi = tx.idx.data();
  const float* xw = tx.w.data();
  parallel_for(planes * blocks, [&](int64_t b, int64_t e) {
    std::vector<float> rows;       // horizontally resized source rows lo..hi
    std::vector<uint8_t> ready;
    for (int64_t w = b; w < e; ++w) {
      const int64_t p = w / blocks, y0 = (w % blocks) * kRowBlock, y1 = std::min(OH, y0 + kRowBlock);
      int64_t lo = H, hi = -1;
      for (int64_t oy = y0; oy < y1; ++oy)
        for (int k = 0; k < 2; ++k) {
          lo = std::min(lo, ty.idx[size_t(2 * oy + k)]);
          hi = std::max(hi, ty.idx[size_t(2 * oy + k)]);
        }
      rows.resize(size_t((hi - lo + 1) * OW));
      ready.assign(size_t(hi - lo + 1), 0);
      const float* plane = src + p * H * W;
      auto hrow = [&](int64_t sy) -> const float* {
        float* h = rows.data() + (sy - lo) * OW;
        if (!ready[size_t(sy - lo)]) {
          const float* s = plane + sy * W;
          for (int64_t ox = 0; ox < OW; ++ox) h[ox] = xw[2 * ox] * s[xi[2 * ox]] + xw[2 * ox + 1] * s[xi[2 * ox + 1]];
          ready[size_t(sy - lo)] = 1;
        }
        return h;
      };
      for (int64_t oy = y0; oy < y1; ++oy) {
        float* d = dst + (p * OH + oy) * OW;
        if (ty.outside[size_t(oy)]) {
          std::fill(d, d + OW, ext);
          continue;
        }
        const float wy0 = ty.w[size_t(2 * oy)], wy1 = ty.w[size_t(2 * oy + 1)];
        const float* h1 = hrow(ty.idx[size_t(2 * oy + 1)]);
        if (wy0 == 0.f) {  // the source coordinate is a whole row (align_corners, asymmetric)
          for (int64_t ox = 0; ox < OW; ++ox) d[ox] = wy1 * h1[ox];
        } else {
          const float* h0 = hrow(ty.idx[size_t(2 * oy)]);
          for (int64_t ox = 0; ox < OW; ++ox) d[ox] = wy0 * h0[ox] + wy1 * h1[ox];
        }
        if (tx.any_outside)
          for (int64_t ox = 0; ox < OW; ++ox)
            if (tx.outside[size_t(ox)]) d[ox] = ext;
      }
    }
  }, std::max<int64_t>(1, 1024 / std::max<int64_t>(1, OW)));
}

// One 1-D interpolation per resized axis, most-shrinking axis first so later
// passes touch less data. Outside coordinates take the extrapolation value,
// which the remaining passes carry through (their weights sum to 1).
void ResizeKernel::run_separable(const ir::Tensor& x, ir::Tensor& y) const {
  const size_t r = tables_.size();
  std::vector<size_t> order;
  for (size_t a = 0; a < r; ++a)
    if (!tables_[a].identity) order.push_back(a);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return double(spec_.out[a]) / double(spec_.in[a]) < double(spec_.out[b]) / double(spec_.in[b]);
  });
  std::vector<float> cur(size_t(x.numel())), next;
  load_floats(x, cur.data());
  ir::Dims dims = spec_.in;
  const float ext = spec_.extrapolation;
  for (size_t a : order) {
    const ir::ResizeTable& t = tables_[a];
    const int64_t pre = std::accumulate(dims.begin(), dims.begin() + a, int64_t(1), std::multiplies<int64_t>());
    const int64_t post = std::accumulate(dims.begin() + a + 1, dims.end(), int64_t(1), std::multiplies<int64_t>());
    const int64_t lin = dims[a], lout = t.len, K = t.taps;
    next.assign(size_t(pre * lout * post), 0.f);
    const float* s = cur.data();
    float* d0 = next.data();
    parallel_for(pre * lout, [&](int64_t b, int64_t e) {
      for (int64_t w = b; w < e; ++w) {
        const int64_t p = w / lout, o = w % lout;
        float* d = d0 + w * post;
        if (t.outside[size_t(o)]) {
          std::fill(d, d + post, ext);
          continue;
        }
        const float* sp = s + p * lin * post;
        if (post == 1) {  // innermost axis: one dot product of the taps
          const int64_t* ix = &t.idx[size_t(o * K)];
          const float* wt = &t.w[size_t(o * K)];
          float acc = 0.f;
          for (int64_t k = 0; k < K; ++k) acc += wt[k] * sp[ix[k]];
          *d = acc;
          continue;
        }
        for (int64_t k = 0; k < K; ++k) {
          const float wk = t.w[size_t(o * K + k)];
          if (wk == 0.f) continue;
          const float* sk = sp + t.idx[size_t(o * K + k)] * post;
          for (int64_t q = 0; q < post; ++q) d[q] += wk * sk[q];
        }
      }
    }, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, post * K)));
    cur.swap(next);
    dims[a] = lout;
  }
  store_floats(cur.data(), y);
}

}  // namespace

void register_resize_kernels(KernelRegistry& r) {
  r.add("Resize", [](const ir::Node& n) -> std::unique_ptr<Kernel> { return std::make_unique<ResizeKernel>(n); });
}

}  // namespace kiln::cpu
