// CPU Conv (1-D/2-D/3-D, groups, dilations, fused bias + residual + activation).
// Tactics, chosen once in the factory:
//   cpu.conv.gemm1x1    1x1, stride 1, no pads: Y[g] = W[g] * X[g] straight on NCHW
//   cpu.conv.depthwise  group == C_in (1-D/2-D): direct, see conv_depthwise.cpp
//   cpu.conv.im2col     everything else: im2col in parallel chunks + a GEMM per group
// Constant weights are packed for the GEMM (conv_gemm.h) here in the factory.
// Bias, the optional residual input Z (input 3) and the fused activation are
// applied in one epilogue while each output block is hot: Y = act(conv + B + Z).
#include <algorithm>
#include <cstring>

#include "backends/cpu/conv_common.h"
#include "backends/cpu/conv_depthwise.h"
#include "backends/cpu/conv_gemm.h"
#include "backends/cpu/conv_im2col.h"
#include "backends/cpu/parallel.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

ConvGeom read_geom(const ir::Node& n, size_t r) {
  ConvGeom g;
  auto k = n.ints("kernel_shape"), s = n.ints("strides"), d = n.ints("dilations"), p = n.ints("pads");
  if (k.size() != r || s.size() != r || d.size() != r || p.size() != 2 * r)
    throw_internal(n.label() + ": window attributes were not resolved by shape inference");
  size_t off = 3 - r;
  for (size_t i = 0; i < r; ++i) {
    g.k[off + i] = k[i];
    g.s[off + i] = s[i];
    g.d[off + i] = d[i];
    g.pb[off + i] = p[i];
  }
  return g;
}

void spatial3(const ir::Dims& dims, int64_t out[3]) {
  size_t r = dims.size() - 2, off = 3 - r;
  out[0] = out[1] = out[2] = 1;
  for (size_t i = 0; i < r; ++i) out[off + i] = dims[2 + i];
}

class ConvKernel : public Kernel {
 public:
  enum Algo { kGemm1x1, kIm2col, kDepthwise };

  explicit ConvKernel(const ir::Node& n) {
    require_dtype(n, "input", n.in(0)->dtype, {DataType::kFloat32});
    const ir::Dims& xd = n.in(0)->dims;
    const ir::Dims& wd = n.in(1)->dims;
    size_t r = xd.size() - 2;
    if (r > 3) throw_unsupported(n.label() + ": Conv with " + std::to_string(r) + " spatial axes is not supported (1-3)");
    g_ = read_geom(n, r);
    group_ = n.i("group", 1);
    c_ = xd[1];
    m_ = wd[0];
    act_ = Activation::from_node(n);
    if (const ir::Value* z = n.in(3)) {
      require_dtype(n, "residual", z->dtype, {DataType::kFloat32});
      if (z->dims != n.outputs[0]->dims)
        throw_bad_input(n.label() + ": residual '" + z->name + "' has shape " + shape_str(z->dims) +
                        " but the output has shape " + shape_str(n.outputs[0]->dims));
      residual_ = true;
    }
    w_ = constant_f32(n, 1);
    b_ = constant_f32(n, 2);
    auto pads = n.ints("pads");
    bool unit = g_.taps() == 1 && g_.s[0] * g_.s[1] * g_.s[2] == 1 &&
                std::all_of(pads.begin(), pads.end(), [](int64_t v) { return v == 0; });
    const ir::Dims& yd = n.outputs[0]->dims;
    if (group_ == c_ && group_ > 1 && r <= 2) algo_ = kDepthwise;
    else if (unit) algo_ = kGemm1x1;
    else algo_ = kIm2col;
    int64_t kg = (c_ / group_) * g_.taps();
    check_blas_dim(n, kg);
    check_blas_dim(n, numel_of_spatial(yd));
    if (w_ && algo_ != kDepthwise) {
      packed_ = pack_weights(w_->data<float>());
      w_.reset();  // the packed copy is all run() needs
    }
  }

  std::string tactic() const override {
    static const char* names[] = {"cpu.conv.gemm1x1", "cpu.conv.im2col", "cpu.conv.depthwise"};
    std::string t = names[algo_];
    if (residual_) t += "+add";
    if (act_.kind != Activation::kNone) t += "+" + act_.name();
    return t;
  }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& x = *in[0];
    ir::Tensor& y = *out[0];
    if (y.numel() == 0) return;
    auto weights = [&] { return w_ ? w_->data<float>() : in[1]->data<float>(); };
    const float* b = b_ ? b_->data<float>() : (in.size() > 2 && in[2] ? in[2]->data<float>() : nullptr);
    const float* zs = residual_ ? in[3]->data<float>() : nullptr;
    int64_t id[3], od[3];
    spatial3(x.dims(), id);
    spatial3(y.dims(), od);
    const int64_t n_batch = x.dims()[0];
    const float* xs = x.data<float>();
    float* ys = y.data<float>();
    if (algo_ == kDepthwise) {
      DwGeom dg{id[1], id[2], od[1], od[2], g_.k[1], g_.k[2], g_.s[1], g_.s[2], g_.d[1], g_.d[2], g_.pb[1], g_.pb[2]};
      depthwise_conv2d(xs, weights(), b, zs, ys, n_batch, c_, m_, dg, act_);
      return;
    }
    const int64_t cg = c_ / group_, mg = m_ / group_, kg = cg * g_.taps();
    const int64_t ihw = id[0] * id[1] * id[2], ohw = od[0] * od[1] * od[2];
    std::vector<PackedGemm> local;
    const std::vector<PackedGemm>& gemms = packed_.empty() ? (local = pack_weights(weights())) : packed_;
    for (int64_t n = 0; n < n_batch; ++n)
      for (int64_t gi = 0; gi < group_; ++gi) {
        const float* xg = xs + (n * c_ + gi * cg) * ihw;
        const float* bg = b ? b + gi * mg : nullptr;
        float* yg = ys + (n * m_ + gi * mg) * ohw;
        const float* zg = zs ? zs + (n * m_ + gi * mg) * ohw : nullptr;
        const PackedGemm& gemm = gemms[size_t(gi)];
        if (algo_ == kGemm1x1) {
          gemm.run(xg, ohw, ohw, yg, ohw, bg, act_, zg);
        } else {
          // Chunks of whole output rows bound the column buffer (64 MiB).
          const int64_t rows = od[0] * od[1], row_cols = od[2];
          const int64_t max_rows = std::max<int64_t>(1, (int64_t(16) << 20) / std::max<int64_t>(kg * row_cols, 1));
          float* col = scratch(size_t(kg * std::min(rows, max_rows) * row_cols), 2);
          for (int64_t r0 = 0; r0 < rows; r0 += max_rows) {
            int64_t r1 = std::min(rows, r0 + max_rows), cols = (r1 - r0) * row_cols;
            im2col(xg, cg, id, od, g_, r0, r1, col);
            gemm.run(col, cols, cols, yg + r0 * row_cols, ohw, bg, act_, zg ? zg + r0 * row_cols : nullptr);
          }
        }
      }
  }

 private:
  std::vector<PackedGemm> pack_weights(const float* w) const {
    const int64_t mg = m_ / group_, kg = (c_ / group_) * g_.taps();
    std::vector<PackedGemm> v(static_cast<size_t>(group_));
    for (int64_t gi = 0; gi < group_; ++gi) v[size_t(gi)].pack(w + gi * mg * kg, mg, kg, kg);
    return v;
  }

  static int64_t numel_of_spatial(const ir::Dims& d) {
    int64_t v = 1;
    for (size_t i = 2; i < d.size(); ++i) v *= d[i];
    return v;
  }

  Algo algo_ = kIm2col;
  ConvGeom g_;
  int64_t group_ = 1, c_ = 0, m_ = 0;
  Activation act_;
  bool residual_ = false;  // input 3 (Z) is added before the activation
  std::shared_ptr<const ir::Tensor> w_, b_;
  std::vector<PackedGemm> packed_;  // per group, from constant weights
};

}  // namespace

void register_conv_kernels(KernelRegistry& r) {
  r.add("Conv", [](const ir::Node& n) {
    return with_fp16_adapter(n, [](const ir::Node& m) -> std::unique_ptr<Kernel> {
      return std::make_unique<ConvKernel>(m);
    });
  });
  register_conv_transpose_kernel(r);
  register_conv_integer_kernel(r);
}

}  // namespace kiln::cpu
