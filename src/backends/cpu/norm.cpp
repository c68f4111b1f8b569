// CPU normalization kernels: BatchNormalization (inference, and training mode
// with batch statistics), InstanceNormalization, LayerNormalization, LRN,
// MeanVarianceNormalization. Statistics accumulate in double (two passes) so
// large planes keep full FP32 accuracy; the apply passes are plain FP32 loops
// the compiler vectorizes. Work is parallel over (n, c) planes or rows.
#include <algorithm>
#include <cmath>

#include "backends/cpu/conv_common.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

int64_t inner_size(const ir::Dims& d, size_t from) {
  int64_t v = 1;
  for (size_t i = from; i < d.size(); ++i) v *= d[i];
  return v;
}

// Items per claimed block: ~64K elements, so small tensors stay on one thread.
int64_t grain_for(int64_t work_per_item) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(work_per_item, 1)); }

// y = x * a + b over one plane.
void scale_shift(const float* x, float* y, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a + b;
}

void mean_var(const float* x, int64_t n, double& mean, double& var) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  mean = n ? s / double(n) : 0.0;
  double q = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = x[i] - mean;
    q += d * d;
  }
  var = n ? q / double(n) : 0.0;
}

class BatchNormKernel : public Kernel {
 public:
  explicit BatchNormKernel(const ir::Node& n)
      : eps_(n.f("epsilon", 1e-5f)), momentum_(n.f("momentum", 0.9f)), training_(n.i("training_mode", 0) != 0) {
    for (size_t k = 0; k < 5; ++k) require_dtype(n, "input", n.in(k)->dtype, {DataType::kFloat32});
  }
  std::string tactic() const override { return training_ ? "cpu.batchnorm.training" : "cpu.batchnorm"; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& x = *in[0];
    const int64_t n_batch = x.dims()[0], c = x.dims()[1], inner = inner_size(x.dims(), 2);
    const float *scale = in[1]->data<float>(), *bias = in[2]->data<float>();
    const float *mean = in[3]->data<float>(), *var = in[4]->data<float>();
    std::vector<double> bm(static_cast<size_t>(c)), bv(static_cast<size_t>(c));
    if (training_) {
      // Batch statistics per channel over N and the spatial axes.
      parallel_blocks(c, grain_for(n_batch * inner), [&](int64_t s, int64_t e) {
        for (int64_t ch = s; ch < e; ++ch) {
          double sum = 0, sq = 0;
          for (int64_t nb = 0; nb < n_batch; ++nb) {
            const float* p = x.data<float>() + (nb * c + ch) * inner;
            for (int64_t i = 0; i < inner; ++i) sum += p[i];
          }
          double cnt = double(n_batch * inner), mu = cnt ? sum / cnt : 0.0;
          for (int64_t nb = 0; nb < n_batch; ++nb) {
            const float* p = x.data<float>() + (nb * c + ch) * inner;
            for (int64_t i = 0; i < inner; ++i) sq += (p[i] - mu) * (p[i] - mu);
          }
          bm[size_t(ch)] = mu;
          bv[size_t(ch)] = cnt ? sq / cnt : 0.0;
        }
      });
    } else {
      for (int64_t ch = 0; ch < c; ++ch) {
        bm[size_t(ch)] = mean[ch];
        bv[size_t(ch)] = var[ch];
      }
    }
    std::vector<float> a(static_cast<size_t>(c)), b(static_cast<size_t>(c));
    for (int64_t ch = 0; ch < c; ++ch) {
      double inv = 1.0 / std::sqrt(bv[size_t(ch)] + double(eps_));
      a[size_t(ch)] = float(scale[ch] * inv);
      b[size_t(ch)] = float(bias[ch] - bm[size_t(ch)] * scale[ch] * inv);
    }
    const float* xs = x.data<float>();
    float* ys = out[0]->data<float>();
    parallel_blocks(n_batch * c, grain_for(inner), [&](int64_t s, int64_t e) {
      for (int64_t p = s; p < e; ++p) scale_shift(xs + p * inner, ys + p * inner, inner, a[size_t(p % c)], b[size_t(p % c)]);
    });
    // Running statistics: blended in training mode, passed through otherwise.
    for (size_t k = 1; k <= 2 && k < out.size(); ++k) {
      if (!out[k]) continue;
      const float* src = k == 1 ? mean : var;
      const std::vector<double>& cur = k == 1 ? bm : bv;
      float* dst = out[k]->data<float>();
      for (int64_t ch = 0; ch < c; ++ch)
        dst[ch] = training_ ? float(src[ch] * momentum_ + cur[size_t(ch)] * (1.0 - momentum_)) : src[ch];
    }
  }

 private:
  float eps_, momentum_;
  bool training_;
};

class InstanceNormKernel : public Kernel {
 public:
  explicit InstanceNormKernel(const ir::Node& n) : eps_(n.f("epsilon", 1e-5f)) {
    for (size_t k = 0; k < 3; ++k) require_dtype(n, "input", n.in(k)->dtype, {DataType::kFloat32});
  }
  std::string tactic() const override { return "cpu.instancenorm"; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& x = *in[0];
    const int64_t c = x.dims()[1], planes = x.dims()[0] * c, inner = inner_size(x.dims(), 2);
    const float *scale = in[1]->data<float>(), *bias = in[2]->data<float>();
    const float* xs = x.data<float>();
    float* ys = out[0]->data<float>();
    parallel_blocks(planes, grain_for(inner), [&](int64_t s, int64_t e) {
      for (int64_t p = s; p < e; ++p) {
        double mu, var;
        mean_var(xs + p * inner, inner, mu, var);
        double a = scale[p % c] / std::sqrt(var + double(eps_));
        scale_shift(xs + p * inner, ys + p * inner, inner, float(a), float(bias[p % c] - mu * a));
      }
    });
  }

 private:
  float eps_;
};

// Expands a tensor that broadcasts onto `tail` into a dense vector of its numel.
std::vector<float> expand_onto(const ir::Tensor& t, const ir::Dims& tail) {
  int64_t cols = inner_size(tail, 0);
  std::vector<float> v(static_cast<size_t>(cols));
  const float* p = t.data<float>();
  if (t.numel() == cols) {
    std::copy(p, p + cols, v.begin());
    return v;
  }
  const ir::Dims& d = t.dims();
  size_t r = tail.size(), off = r - d.size();
  for (int64_t j = 0; j < cols; ++j) {
    int64_t rem = j, src = 0, stride = 1;
    for (size_t i = r; i-- > 0;) {
      int64_t idx = rem % tail[i];
      rem /= tail[i];
      if (i >= off) {
        int64_t dd = d[i - off];
        src += (dd == 1 ? 0 : idx) * stride;
        stride *= dd;
      }
    }
    v[size_t(j)] = p[src];
  }
  return v;
}

class LayerNormKernel : public Kernel {
 public:
  explicit LayerNormKernel(const ir::Node& n) : eps_(n.f("epsilon", 1e-5f)), axis_(n.i("axis", -1)) {
    require_dtype(n, "input", n.in(0)->dtype, {DataType::kFloat32});
    require_dtype(n, "scale", n.in(1)->dtype, {DataType::kFloat32});
    for (size_t k = 1; k < n.outputs.size(); ++k)
      if (n.outputs[k]) require_dtype(n, "statistics output", n.outputs[k]->dtype, {DataType::kFloat32});
    if (axis_ < 0) throw_internal(n.label() + ": axis was not resolved by shape inference");
  }
  std::string tactic() const override { return "cpu.layernorm"; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& x = *in[0];
    ir::Dims tail(x.dims().begin() + axis_, x.dims().end());
    const int64_t cols = inner_size(tail, 0), rows = cols ? x.numel() / cols : 0;
    std::vector<float> scale = expand_onto(*in[1], tail);
    std::vector<float> bias = in.size() > 2 && in[2] ? expand_onto(*in[2], tail) : std::vector<float>(size_t(cols), 0.f);
    const float* xs = x.data<float>();
    float* ys = out[0]->data<float>();
    float* mean_out = out.size() > 1 && out[1] ? out[1]->data<float>() : nullptr;
    float* inv_out = out.size() > 2 && out[2] ? out[2]->data<float>() : nullptr;
    parallel_blocks(rows, grain_for(cols), [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; ++r) {
        double mu, var;
        mean_var(xs + r * cols, cols, mu, var);
        float inv = float(1.0 / std::sqrt(var + double(eps_))), m = float(mu);
        const float* xr = xs + r * cols;
        float* yr = ys + r * cols;
        for (int64_t j = 0; j < cols; ++j) yr[j] = (xr[j] - m) * inv * scale[size_t(j)] + bias[size_t(j)];
        if (mean_out) mean_out[r] = m;
        if (inv_out) inv_out[r] = inv;
      }
    });
  }

 private:
  float eps_;
  int64_t axis_;
};

class LrnKernel : public Kernel {
 public:
  explicit LrnKernel(const ir::Node& n)
      : alpha_(n.f("alpha", 1e-4f)), beta_(n.f("beta", 0.75f)), bias_(n.f("bias", 1.f)), size_(n.i("size", 1)) {
    require_dtype(n, "input", n.in(0)->dtype, {DataType::kFloat32});
  }
  std::string tactic() const override { return "cpu.lrn"; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& x = *in[0];
    const int64_t c = x.dims()[1], planes = x.dims()[0] * c, inner = inner_size(x.dims(), 2);
    const int64_t before = (size_ - 1) / 2, after = size_ - 1 - before;  // floor / ceil of (size-1)/2
    const float* xs = x.data<float>();
    float* ys = out[0]->data<float>();
    const float coef = alpha_ / float(size_);
    parallel_blocks(planes, grain_for(inner * size_), [&](int64_t s, int64_t e) {
      std::vector<float> sq(static_cast<size_t>(inner));
      for (int64_t p = s; p < e; ++p) {
        int64_t ch = p % c, base = p - ch;
        std::fill(sq.begin(), sq.end(), 0.f);
        for (int64_t q = std::max<int64_t>(0, ch - before); q <= std::min(c - 1, ch + after); ++q) {
          const float* xq = xs + (base + q) * inner;
          for (int64_t i = 0; i < inner; ++i) sq[size_t(i)] += xq[i] * xq[i];
        }
        const float* xp = xs + p * inner;
        float* yp = ys + p * inner;
        for (int64_t i = 0; i < inner; ++i) yp[i] = xp[i] / std::pow(bias_ + coef * sq[size_t(i)], beta_);
      }
    });
  }

 private:
  float alpha_, beta_, bias_;
  int64_t size_;
};

// Mean-variance normalization over `axes`: (x - mean) / (sqrt(var) + 1e-9),
// the ONNX function body's formula.
class MvnKernel : public Kernel {
 public:
  explicit MvnKernel(const ir::Node& n) : axes_(n.ints("axes", {0, 2, 3})) {
    require_dtype(n, "input", n.in(0)->dtype, {DataType::kFloat32});
  }
  std::string tactic() const override { return "cpu.mvn"; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& x = *in[0];
    const ir::Dims& d = x.dims();
    size_t r = d.size();
    std::vector<bool> red(r, false);
    for (int64_t a : axes_) red[size_t(a < 0 ? a + int64_t(r) : a)] = true;
    // Index of each element's statistics group (the kept axes, row-major).
    const int64_t total = x.numel();
    std::vector<int64_t> group(static_cast<size_t>(total));
    int64_t groups = 1;
    for (size_t i = 0; i < r; ++i)
      if (!red[i]) groups *= d[i];
    for (int64_t e = 0; e < total; ++e) {
      int64_t rem = e, g = 0, stride = 1;
      for (size_t i = r; i-- > 0;) {
        int64_t idx = rem % d[i];
        rem /= d[i];
        if (!red[i]) {
          g += idx * stride;
          stride *= d[i];
        }
      }
      group[size_t(e)] = g;
    }
    std::vector<double> sum(size_t(groups), 0.0), sq(size_t(groups), 0.0), cnt(size_t(groups), 0.0);
    const float* xs = x.data<float>();
    for (int64_t e = 0; e < total; ++e) {
      size_t g = size_t(group[size_t(e)]);
      sum[g] += xs[e];
      sq[g] += double(xs[e]) * xs[e];
      cnt[g] += 1;
    }
    for (int64_t g = 0; g < groups; ++g) {
      double n = cnt[size_t(g)], mu = n ? sum[size_t(g)] / n : 0.0;
      sum[size_t(g)] = mu;
      sq[size_t(g)] = std::sqrt(std::max(0.0, (n ? sq[size_t(g)] / n : 0.0) - mu * mu)) + 1e-9;
    }
    float* ys = out[0]->data<float>();
    for (int64_t e = 0; e < total; ++e) {
      size_t g = size_t(group[size_t(e)]);
      ys[e] = float((xs[e] - sum[g]) / sq[g]);
    }
  }

 private:
  std::vector<int64_t> axes_;
};

template <typename K> void add(KernelRegistry& r, const char* op) {
  r.add(op, [](const ir::Node& n) {
    return with_fp16_adapter(n, [](const ir::Node& m) -> std::unique_ptr<Kernel> { return std::make_unique<K>(m); });
  });
}

}  // namespace

void register_norm_kernels(KernelRegistry& r) {
  add<BatchNormKernel>(r, "BatchNormalization");
  add<InstanceNormKernel>(r, "InstanceNormalization");
  add<LayerNormKernel>(r, "LayerNormalization");
  add<LrnKernel>(r, "LRN");
  add<MvnKernel>(r, "MeanVarianceNormalization");
}

}  // namespace kiln::cpu
