// CPU ConvTranspose (1-D/2-D/3-D, groups, dilations, output padding).
// Per image and group: col = W[g]^T * X[g] with one sgemm (the transposed
// weight is read in place through transA), then col2im scatters the columns
// into the output planes, parallel over output channels (no write conflicts).
#include <algorithm>

#include "backends/cpu/conv_common.h"
#include "backends/cpu/conv_gemm.h"
#include "backends/cpu/parallel.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

class ConvTransposeKernel : public Kernel {
 public:
  explicit ConvTransposeKernel(const ir::Node& n) {
    require_dtype(n, "input", n.in(0)->dtype, {DataType::kFloat32});
    const ir::Dims& xd = n.in(0)->dims;
    size_t r = xd.size() - 2;
    if (r > 3)
      throw_unsupported(n.label() + ": ConvTranspose with " + std::to_string(r) +
                        " spatial axes is not supported (1-3)");
    read_window3(n, r, k_, s_, d_, pb_);
    group_ = n.i("group", 1);
    c_ = xd[1];
    m_ = n.in(1)->dims[1] * group_;
    w_ = constant_f32(n, 1);
    b_ = constant_f32(n, 2);
    int64_t ihw = 1;
    for (size_t i = 2; i < xd.size(); ++i) ihw *= xd[i];
    check_blas_dim(n, (m_ / group_) * k_[0] * k_[1] * k_[2]);
    check_blas_dim(n, ihw);
  }

  std::string tactic() const override { return "cpu.convtranspose.gemm_col2im"; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& x = *in[0];
    ir::Tensor& y = *out[0];
    if (y.numel() == 0) return;
    const float* w = w_ ? w_->data<float>() : in[1]->data<float>();
    const float* b = b_ ? b_->data<float>() : (in.size() > 2 && in[2] ? in[2]->data<float>() : nullptr);
    int64_t id[3] = {1, 1, 1}, od[3] = {1, 1, 1};
    size_t r = x.dims().size() - 2, off = 3 - r;
    for (size_t i = 0; i < r; ++i) {
      id[off + i] = x.dims()[2 + i];
      od[off + i] = y.dims()[2 + i];
    }
    const int64_t n_batch = x.dims()[0], cg = c_ / group_, mg = m_ / group_, taps = k_[0] * k_[1] * k_[2];
    const int64_t ihw = id[0] * id[1] * id[2], ohw = od[0] * od[1] * od[2];
    float* col = scratch(size_t(mg * taps * ihw), 2);
    for (int64_t n = 0; n < n_batch; ++n)
      for (int64_t g = 0; g < group_; ++g) {
        const float* xg = x.data<float>() + (n * c_ + g * cg) * ihw;
        const float* wg = w + g * cg * mg * taps;
        if (cg == 0 || ihw == 0) std::fill(col, col + mg * taps * ihw, 0.f);
        else
          blas_sgemm(true, false, mg * taps, ihw, cg, 1.f, wg, mg * taps, xg, ihw, 0.f, col, ihw);
        float* yg = y.data<float>() + (n * m_ + g * mg) * ohw;
        parallel_for(mg, [&](int64_t s, int64_t e) {
          for (int64_t m = s; m < e; ++m) col2im(col + m * taps * ihw, id, od, yg + m * ohw, b ? b[g * mg + m] : 0.f);
        });
      }
  }

 private:
  // Adds the taps of one output channel into its plane (initialized to bias).
  void col2im(const float* col, const int64_t id[3], const int64_t od[3], float* y, float bias) const {
    std::fill(y, y + od[0] * od[1] * od[2], bias);
    const int64_t ihw = id[0] * id[1] * id[2];
    for (int64_t kd = 0; kd < k_[0]; ++kd)
      for (int64_t kh = 0; kh < k_[1]; ++kh)
        for (int64_t kw = 0; kw < k_[2]; ++kw) {
          const float* src = col + ((kd * k_[1] + kh) * k_[2] + kw) * ihw;
          int64_t offw = kw * d_[2] - pb_[2];
          // Input columns whose output column lands inside [0, OW).
          int64_t lo = offw >= 0 ? 0 : (-offw + s_[2] - 1) / s_[2];
          int64_t u = od[2] - 1 - offw;
          int64_t hi = u < 0 ? 0 : std::min(id[2], u / s_[2] + 1);
          for (int64_t zi = 0; zi < id[0]; ++zi) {
            int64_t zo = zi * s_[0] + kd * d_[0] - pb_[0];
            if (zo < 0 || zo >= od[0]) continue;
            for (int64_t hi_ = 0; hi_ < id[1]; ++hi_) {
              int64_t ho = hi_ * s_[1] + kh * d_[1] - pb_[1];
              if (ho < 0 || ho >= od[1]) continue;
              float* row = y + (zo * od[1] + ho) * od[2];
              const float* srow = src + (zi * id[1] + hi_) * id[2];
              if (s_[2] == 1)
                for (int64_t iw = lo; iw < hi; ++iw) row[iw + offw] += srow[iw];
              else
                for (int64_t iw = lo; iw < hi; ++iw) row[iw * s_[2] + offw] += srow[iw];
            }
          }
        }
  }

  int64_t k_[3] = {1, 1, 1}, s_[3] = {1, 1, 1}, d_[3] = {1, 1, 1}, pb_[3] = {0, 0, 0};
  int64_t group_ = 1, c_ = 0, m_ = 0;
  std::shared_ptr<const ir::Tensor> w_, b_;
};

}  // namespace

void register_conv_transpose_kernel(KernelRegistry& r) {
  r.add("ConvTranspose", [](const ir::Node& n) {
    return with_fp16_adapter(n, [](const ir::Node& m) -> std::unique_ptr<Kernel> {
      return std::make_unique<ConvTransposeKernel>(m);
    });
  });
}

}  // namespace kiln::cpu
