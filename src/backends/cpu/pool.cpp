// CPU pooling: MaxPool (+ Indices), AveragePool, LpPool and the Global forms.
// Windowed pools work on a 3-D view of the spatial axes (1-D/2-D get leading
// extent-1 axes), parallel over (n, c) planes. Per axis, the range of window
// taps that land inside the image is precomputed once per run, so the inner
// loops carry no bounds checks. Semantics follow onnxruntime and the ONNX
// tests: padding never wins a max; count_include_pad counts taps inside the
// padded extent [-pad_begin, in + pad_end) (not the ceil_mode overhang).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "backends/cpu/conv_common.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

enum class PoolKind { kMax, kAvg, kLp };

// Valid tap range [lo, hi) and padded-extent tap count for each output index of one axis.
struct AxisTaps {
  std::vector<int64_t> start, lo, hi, padded;
};

AxisTaps axis_taps(int64_t in, int64_t out, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe) {
  AxisTaps a;
  for (int64_t o = 0; o < out; ++o) {
    int64_t st = o * s - pb, lo = k, hi = 0, cnt = 0;
    for (int64_t t = 0; t < k; ++t) {
      int64_t p = st + t * d;
      if (p >= 0 && p < in) { lo = std::min(lo, t); hi = t + 1; }
      if (p >= -pb && p < in + pe) ++cnt;
    }
    if (hi <= lo) lo = hi = 0;
    a.start.push_back(st);
    a.lo.push_back(lo);
    a.hi.push_back(hi);
    a.padded.push_back(cnt);
  }
  return a;
}

class WindowPool : public Kernel {
 public:
  WindowPool(const ir::Node& n, PoolKind kind) : kind_(kind) {
    const ir::Dims& xd = n.in(0)->dims;
    dtype_ = n.in(0)->dtype;
    size_t r = xd.size() - 2;
    if (r > 3) throw_unsupported(n.label() + ": pooling over " + std::to_string(r) + " spatial axes is not supported (1-3)");
    if (kind == PoolKind::kMax) require_dtype(n, "input", dtype_, {DataType::kFloat32, DataType::kUInt8, DataType::kInt8});
    else require_dtype(n, "input", dtype_, {DataType::kFloat32});
    read_window3(n, r, k_, s_, d_, pb_, pe_);
    include_pad_ = n.i("count_include_pad", 0) != 0;
    col_major_ = n.i("storage_order", 0) != 0;
    p_ = n.i("p", 2);
  }

  std::string tactic() const override {
    return kind_ == PoolKind::kMax ? "cpu.pool.max" : kind_ == PoolKind::kAvg ? "cpu.pool.avg" : "cpu.pool.lp";
  }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    switch (dtype_) {
      case DataType::kUInt8: run_t<uint8_t>(in, out); break;
      case DataType::kInt8: run_t<int8_t>(in, out); break;
      default: run_t<float>(in, out); break;
    }
  }

 private:
  template <typename T> void run_t(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) {
    const ir::Tensor& x = *in[0];
    ir::Tensor& y = *out[0];
    ir::Tensor* ind = out.size() > 1 ? out[1] : nullptr;
    if (!ind) {
      if (kind_ == PoolKind::kMax) run_separable<T, PoolKind::kMax>(x, y);
      else if (kind_ == PoolKind::kAvg) run_separable<T, PoolKind::kAvg>(x, y);
      else run_separable<T, PoolKind::kLp>(x, y);
      return;
    }
    int64_t id[3], od[3];
    AxisTaps ax[3];
    geometry(x, y, id, od, ax);
    const int64_t planes = x.dims()[0] * x.dims()[1], isz = id[0] * id[1] * id[2], osz = od[0] * od[1] * od[2];
    const T* xs = x.data<T>();
    T* ys = y.data<T>();
    int64_t* is = ind ? ind->data<int64_t>() : nullptr;
    const double inv_p = 1.0 / double(p_);
    parallel_blocks(planes, std::max<int64_t>(1, 65536 / std::max<int64_t>(osz * k_[0] * k_[1] * k_[2], 1)), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const T* xp = xs + pl * isz;
        T* yp = ys + pl * osz;
        int64_t o = 0;
        for (int64_t oz = 0; oz < od[0]; ++oz)
          for (int64_t oh = 0; oh < od[1]; ++oh)
            for (int64_t ow = 0; ow < od[2]; ++ow, ++o) {
              const size_t z = size_t(oz), h = size_t(oh), w = size_t(ow);
              if (kind_ == PoolKind::kMax) {
                T best = std::numeric_limits<T>::lowest();
                if constexpr (std::is_floating_point<T>::value) best = -std::numeric_limits<T>::infinity();
                int64_t arg = -1;
                for (int64_t kz = ax[0].lo[z]; kz < ax[0].hi[z]; ++kz) {
                  int64_t pz = ax[0].start[z] + kz * d_[0];
                  for (int64_t kh = ax[1].lo[h]; kh < ax[1].hi[h]; ++kh) {
                    int64_t ph = ax[1].start[h] + kh * d_[1];
                    const T* row = xp + (pz * id[1] + ph) * id[2];
                    for (int64_t kw = ax[2].lo[w]; kw < ax[2].hi[w]; ++kw) {
                      int64_t pw = ax[2].start[w] + kw * d_[2];
                      if (row[pw] > best || arg < 0) {
                        best = row[pw];
                        arg = col_major_ ? pz + id[0] * (ph + id[1] * pw) : (pz * id[1] + ph) * id[2] + pw;
                      }
                    }
                  }
                }
                yp[o] = best;
                if (is) is[pl * osz + o] = arg < 0 ? -1 : pl * isz + arg;
              } else {
                double acc = 0;
                for (int64_t kz = ax[0].lo[z]; kz < ax[0].hi[z]; ++kz) {
                  int64_t pz = ax[0].start[z] + kz * d_[0];
                  for (int64_t kh = ax[1].lo[h]; kh < ax[1].hi[h]; ++kh) {
                    int64_t ph = ax[1].start[h] + kh * d_[1];
                    const T* row = xp + (pz * id[1] + ph) * id[2];
                    for (int64_t kw = ax[2].lo[w]; kw < ax[2].hi[w]; ++kw) {
                      double v = double(row[ax[2].start[w] + kw * d_[2]]);
                      if (kind_ == PoolKind::kAvg) acc += v;
                      else if (p_ == 1) acc += std::fabs(v);
                      else if (p_ == 2) acc += v * v;
                      else acc += std::pow(std::fabs(v), double(p_));
                    }
                  }
                }
                if (kind_ == PoolKind::kAvg) {
                  int64_t cnt = include_pad_
                                    ? ax[0].padded[z] * ax[1].padded[h] * ax[2].padded[w]
                                    : (ax[0].hi[z] - ax[0].lo[z]) * (ax[1].hi[h] - ax[1].lo[h]) * (ax[2].hi[w] - ax[2].lo[w]);
                  yp[o] = T(cnt > 0 ? acc / double(cnt) : 0.0);
                } else {
                  yp[o] = T(p_ == 2 ? std::sqrt(acc) : std::pow(acc, inv_p));
                }
              }
            }
      }
    });
  }

  // Input/output extents right-aligned to 3-D and the valid taps per axis.
  void geometry(const ir::Tensor& x, const ir::Tensor& y, int64_t id[3], int64_t od[3], AxisTaps ax[3]) const {
    const size_t r = x.dims().size() - 2, off = 3 - r;
    for (size_t i = 0; i < 3; ++i) id[i] = od[i] = 1;
    for (size_t i = 0; i < r; ++i) {
      id[off + i] = x.dims()[2 + i];
      od[off + i] = y.dims()[2 + i];
    }
    for (int i = 0; i < 3; ++i) ax[i] = axis_taps(id[i], od[i], k_[i], s_[i], d_[i], pb_[i], pe_[i]);
  }

  // Max, sum and sum of |x|^p over a box are separable: pool along W (taps
  // contiguous, vectorized per kernel column), then H and D (whole rows at
  // once). Averages divide by the product of per-axis tap counts, which is
  // exactly the count of the box (valid taps, or taps in the padded extent).
  template <typename T, PoolKind K> void run_separable(const ir::Tensor& x, ir::Tensor& y) {
    int64_t id[3], od[3];
    AxisTaps ax[3];
    geometry(x, y, id, od, ax);
    // W pass: per kernel column, the output columns whose tap is inside the row.
    std::vector<int64_t> wlo(static_cast<size_t>(k_[2])), whi(static_cast<size_t>(k_[2]));
    for (int64_t kw = 0; kw < k_[2]; ++kw) {
      int64_t o0 = kw * d_[2] - pb_[2];
      int64_t lo = o0 >= 0 ? 0 : (-o0 + s_[2] - 1) / s_[2];
      int64_t u = id[2] - 1 - o0;
      int64_t hi = u < 0 ? 0 : std::min(od[2], u / s_[2] + 1);
      wlo[size_t(kw)] = std::min(lo, od[2]);
      whi[size_t(kw)] = std::max(hi, wlo[size_t(kw)]);
    }
    const T init = K == PoolKind::kMax ? lowest<T>() : T(0);
    std::vector<float> inv;  // 1 / divisor of each output of a plane (0 when no tap is valid)
    if (K == PoolKind::kAvg) {
      auto cnt = [&](int a, int64_t i) {
        return float(include_pad_ ? ax[a].padded[size_t(i)] : ax[a].hi[size_t(i)] - ax[a].lo[size_t(i)]);
      };
      for (int64_t q = 0; q < od[0]; ++q)
        for (int64_t h = 0; h < od[1]; ++h)
          for (int64_t w = 0; w < od[2]; ++w) {
            float c = cnt(0, q) * cnt(1, h) * cnt(2, w);
            inv.push_back(c > 0.f ? 1.f / c : 0.f);
          }
    }
    const int64_t planes = x.dims()[0] * x.dims()[1], isz = id[0] * id[1] * id[2], osz = od[0] * od[1] * od[2];
    const int64_t t1 = id[0] * id[1] * od[2], t2 = id[0] * od[1] * od[2];
    const float pf = float(p_);
    const int64_t p = p_;
    auto tap = [p, pf](T v) -> T {
      if (K != PoolKind::kLp) return v;
      float a = std::fabs(float(v));
      return T(p == 1 ? a : p == 2 ? a * a : std::pow(a, pf));
    };
    auto comb = [](T a, T b) -> T {
      if (K == PoolKind::kMax) return b > a ? b : a;
      return a + b;
    };
    const T* xs = x.data<T>();
    T* ys = y.data<T>();
    parallel_blocks(planes, std::max<int64_t>(1, 65536 / std::max<int64_t>(isz, 1)), [&](int64_t b, int64_t e) {
      T* w1 = reinterpret_cast<T*>(scratch(size_t(t1 * sizeof(T) / sizeof(float) + 1), 0));
      T* w2 = reinterpret_cast<T*>(scratch(size_t(t2 * sizeof(T) / sizeof(float) + 1), 1));
      for (int64_t pl = b; pl < e; ++pl) {
        const T* xp = xs + pl * isz;
        for (int64_t row = 0; row < id[0] * id[1]; ++row) {
          const T* src = xp + row * id[2];
          T* dst = w1 + row * od[2];
          // Interior columns (every tap inside) in one fused pass for the
          // common 2- and 3-wide windows; the edges tap by tap.
          int64_t ilo = 0, ihi = 0;
          if ((k_[2] == 2 || k_[2] == 3) && (s_[2] == 1 || s_[2] == 2)) {
            ilo = *std::max_element(wlo.begin(), wlo.end());
            ihi = std::max(ilo, *std::min_element(whi.begin(), whi.end()));
            const T* sb = src - pb_[2];
            const int64_t dw = d_[2];
            auto fused = [&](auto stride) {
              constexpr int64_t st = decltype(stride)::value;
              if (k_[2] == 2)
                for (int64_t o = ilo; o < ihi; ++o) dst[o] = comb(tap(sb[o * st]), tap(sb[o * st + dw]));
              else
                for (int64_t o = ilo; o < ihi; ++o)
                  dst[o] = comb(comb(tap(sb[o * st]), tap(sb[o * st + dw])), tap(sb[o * st + 2 * dw]));
            };
            if (s_[2] == 1) fused(std::integral_constant<int64_t, 1>());
            else fused(std::integral_constant<int64_t, 2>());
          }
          std::fill(dst, dst + ilo, init);
          std::fill(dst + ihi, dst + od[2], init);
          for (int64_t kw = 0; kw < k_[2]; ++kw) {
            const T* sk = src + kw * d_[2] - pb_[2];
            const int64_t st = s_[2];
            // [lo, hi) minus the fused interior [ilo, ihi)
            for (int part = 0; part < 2; ++part) {
              int64_t lo = part ? std::max(wlo[size_t(kw)], ihi) : wlo[size_t(kw)];
              int64_t hi = part ? whi[size_t(kw)] : std::min(whi[size_t(kw)], ilo);
              for (int64_t o = lo; o < hi; ++o) dst[o] = comb(dst[o], tap(sk[o * st]));
            }
          }
        }
        // H then D: rows of the previous pass combine elementwise.
        pool_rows(w1, w2, id[0], id[1], od[1], od[2], ax[1], d_[1], init, comb);
        T* yp = ys + pl * osz;
        pool_rows(w2, yp, 1, id[0], od[0], od[1] * od[2], ax[0], d_[0], init, comb);
        if (K == PoolKind::kAvg) {
          for (int64_t o = 0; o < osz; ++o) yp[o] = T(float(yp[o]) * inv[size_t(o)]);
        } else if (K == PoolKind::kLp) {
          for (int64_t o = 0; o < osz; ++o)
            yp[o] = T(p_ == 2 ? std::sqrt(float(yp[o])) : std::pow(float(yp[o]), 1.f / pf));
        }
      }
    });
  }

  // dst[o][j] = comb over valid taps t of src[start + t*d][j], for each of `outer` blocks.
  template <typename T, typename C>
  static void pool_rows(const T* src, T* dst, int64_t outer, int64_t in_len, int64_t out_len, int64_t inner,
                        const AxisTaps& ax, int64_t d, T init, C comb) {
    for (int64_t q = 0; q < outer; ++q)
      for (int64_t o = 0; o < out_len; ++o) {
        T* dr = dst + (q * out_len + o) * inner;
        std::fill(dr, dr + inner, init);
        for (int64_t t = ax.lo[size_t(o)]; t < ax.hi[size_t(o)]; ++t) {
          const T* sr = src + (q * in_len + ax.start[size_t(o)] + t * d) * inner;
          for (int64_t j = 0; j < inner; ++j) dr[j] = comb(dr[j], sr[j]);
        }
      }
  }

  template <typename T> static T lowest() {
    if constexpr (std::is_floating_point<T>::value) return -std::numeric_limits<T>::infinity();
    else return std::numeric_limits<T>::lowest();
  }

  PoolKind kind_;
  DataType dtype_ = DataType::kFloat32;
  int64_t k_[3] = {1, 1, 1}, s_[3] = {1, 1, 1}, d_[3] = {1, 1, 1}, pb_[3] = {0, 0, 0}, pe_[3] = {0, 0, 0};
  bool include_pad_ = false, col_major_ = false;
  int64_t p_ = 2;
};

// Sum with 16 float partial sums (vectorizes without reassociating a single
// accumulator), combined in double.
template <typename T> double sum16(const T* p, int64_t n) {
  if constexpr (!std::is_same<T, float>::value) {
    double a = 0;
    for (int64_t i = 0; i < n; ++i) a += double(p[i]);
    return a;
  } else {
    float part[16] = {};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
      for (int j = 0; j < 16; ++j) part[j] += p[i + j];
    double a = 0;
    for (; i < n; ++i) a += p[i];
    for (int j = 0; j < 16; ++j) a += part[j];
    return a;
  }
}

// Global pools reduce each (n, c) plane to one value.
class GlobalPool : public Kernel {
 public:
  GlobalPool(const ir::Node& n, PoolKind kind) : kind_(kind), p_(n.i("p", 2)) {
    dtype_ = n.in(0)->dtype;
    if (kind == PoolKind::kMax) require_dtype(n, "input", dtype_, {DataType::kFloat32, DataType::kUInt8, DataType::kInt8});
    else require_dtype(n, "input", dtype_, {DataType::kFloat32});
  }
  std::string tactic() const override {
    return kind_ == PoolKind::kMax ? "cpu.pool.global_max" : kind_ == PoolKind::kAvg ? "cpu.pool.global_avg" : "cpu.pool.global_lp";
  }
  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    switch (dtype_) {
      case DataType::kUInt8: run_t<uint8_t>(*in[0], *out[0]); break;
      case DataType::kInt8: run_t<int8_t>(*in[0], *out[0]); break;
      default: run_t<float>(*in[0], *out[0]); break;
    }
  }

 private:
  template <typename T> void run_t(const ir::Tensor& x, ir::Tensor& y) {
    const int64_t planes = x.dims()[0] * x.dims()[1], sz = planes ? x.numel() / planes : 0;
    const T* xs = x.data<T>();
    T* ys = y.data<T>();
    parallel_blocks(planes, std::max<int64_t>(1, 65536 / std::max<int64_t>(sz, 1)), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const T* p = xs + pl * sz;
        if (kind_ == PoolKind::kMax) {
          T best = sz ? p[0] : T(0);
          for (int64_t i = 1; i < sz; ++i) best = p[i] > best ? p[i] : best;
          ys[pl] = best;
        } else if (kind_ == PoolKind::kAvg) {
          ys[pl] = T(sz ? sum16(p, sz) / double(sz) : 0.0);
        } else {
          double acc = 0;
          for (int64_t i = 0; i < sz; ++i) acc += std::pow(std::fabs(double(p[i])), double(p_));
          ys[pl] = T(std::pow(acc, 1.0 / double(p_)));
        }
      }
    });
  }

  PoolKind kind_;
  int64_t p_;
  DataType dtype_ = DataType::kFloat32;
};

template <typename K> void add(KernelRegistry& r, const char* op, PoolKind kind) {
  r.add(op, [kind](const ir::Node& n) {
    return with_fp16_adapter(n, [kind](const ir::Node& m) -> std::unique_ptr<Kernel> {
      return std::make_unique<K>(m, kind);
    });
  });
}

}  // namespace

void register_pool_kernels(KernelRegistry& r) {
  add<WindowPool>(r, "MaxPool", PoolKind::kMax);
  add<WindowPool>(r, "AveragePool", PoolKind::kAvg);
  add<WindowPool>(r, "LpPool", PoolKind::kLp);
  add<GlobalPool>(r, "GlobalMaxPool", PoolKind::kMax);
  add<GlobalPool>(r, "GlobalAveragePool", PoolKind::kAvg);
  add<GlobalPool>(r, "GlobalLpPool", PoolKind::kLp);
}

}  // namespace kiln::cpu
