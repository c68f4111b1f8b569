// CPU ConvInteger: sum over the window of (x - x_zero_point) * (w - w_zero_point)
// in int32 (wrapping like the ONNX reference). Padding contributes zero after
// the zero point is removed. A direct loop over a 3-D view of the spatial
// axes, parallel over (n, output channel); integer convs are rare in float
// models, so this favors simplicity over speed.
#include <algorithm>

#include "backends/cpu/conv_common.h"
#include "backends/cpu/parallel.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

class ConvIntegerKernel : public Kernel {
 public:
  explicit ConvIntegerKernel(const ir::Node& n) {
    const ir::Dims& xd = n.in(0)->dims;
    size_t r = xd.size() - 2;
    if (r > 3)
      throw_unsupported(n.label() + ": ConvInteger with " + std::to_string(r) + " spatial axes is not supported (1-3)");
    read_window3(n, r, k_, s_, d_, pb_);
    group_ = n.i("group", 1);
  }
  std::string tactic() const override { return "cpu.convinteger.direct"; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& xt = *in[0];
    const ir::Tensor& wt = *in[1];
    ir::Tensor& yt = *out[0];
    const int64_t c = xt.dims()[1], m = wt.dims()[0], cg = c / group_, mg = m / group_;
    int64_t id[3] = {1, 1, 1}, od[3] = {1, 1, 1};
    size_t r = xt.dims().size() - 2, off = 3 - r;
    for (size_t i = 0; i < r; ++i) {
      id[off + i] = xt.dims()[2 + i];
      od[off + i] = yt.dims()[2 + i];
    }
    auto zp = [&](size_t k) {
      const ir::Tensor* t = in.size() > k ? in[k] : nullptr;
      return t && t->numel() ? t->to_int64() : std::vector<int64_t>{0};
    };
    const std::vector<int64_t> xz = zp(2), wz = zp(3);
    std::vector<int64_t> xv = xt.to_int64(), wv = wt.to_int64();
    for (auto& v : xv) v -= xz[0];
    const int64_t taps = k_[0] * k_[1] * k_[2];
    for (int64_t oc = 0; oc < m; ++oc)
      for (int64_t q = 0; q < cg * taps; ++q) wv[size_t(oc * cg * taps + q)] -= wz.size() == 1 ? wz[0] : wz[size_t(oc)];
    const int64_t isz = id[0] * id[1] * id[2], osz = od[0] * od[1] * od[2];
    int32_t* y = yt.data<int32_t>();
    parallel_for(xt.dims()[0] * m, [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        int64_t n = pl / m, oc = pl % m, g = oc / mg;
        const int64_t* w = wv.data() + oc * cg * taps;
        for (int64_t o = 0; o < osz; ++o) {
          int64_t oz = o / (od[1] * od[2]), oh = (o / od[2]) % od[1], ow = o % od[2];
          uint32_t acc = 0;  // wraps like int32 arithmetic in the reference
          for (int64_t ci = 0; ci < cg; ++ci) {
            const int64_t* x = xv.data() + (n * c + g * cg + ci) * isz;
            for (int64_t t = 0; t < taps; ++t) {
              int64_t kz = t / (k_[1] * k_[2]), kh = (t / k_[2]) % k_[1], kw = t % k_[2];
              int64_t z = oz * s_[0] - pb_[0] + kz * d_[0], h = oh * s_[1] - pb_[1] + kh * d_[1],
                      ww = ow * s_[2] - pb_[2] + kw * d_[2];
              if (z < 0 || z >= id[0] || h < 0 || h >= id[1] || ww < 0 || ww >= id[2]) continue;
              acc += uint32_t(x[(z * id[1] + h) * id[2] + ww] * w[ci * taps + t]);
            }
          }
          y[pl * osz + o] = int32_t(acc);
        }
      }
    });
  }

 private:
  int64_t k_[3] = {1, 1, 1}, s_[3] = {1, 1, 1}, d_[3] = {1, 1, 1}, pb_[3] = {0, 0, 0};
  int64_t group_ = 1;
};

}  // namespace

void register_conv_integer_kernel(KernelRegistry& r) {
  r.add("ConvInteger", [](const ir::Node& n) -> std::unique_ptr<Kernel> { return std::make_unique<ConvIntegerKernel>(n); });
}

}  // namespace kiln::cpu
