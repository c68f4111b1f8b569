// CPU kiln::QConv: INT8 2-D convolution with exact int32 accumulation and the
// fused epilogue of the INT8 contract (attributes: src/ir/ops/qconv.cpp). The
// CUDA tactics are tested against this kernel, so the epilogue follows the
// contract step by step, per output element of channel k:
//   v = float(acc) * m[k]          m[k] = x_scale * w_scales[k], in float, once
//   v = act(v + B[k] + Z)          the float Conv's epilogue(); an int8 Z is
//                                  z_scale * float(z), an fp16 Z is widened
//   Y = saturate(nearbyint(v / y_scale))  for int8 (half to even under the
//       default rounding mode; NaN -> 0), else v as fp32 / fp16
// Tactics, chosen once in the factory:
//   cpu.qconv.dot     im2col into int16 rows, one per output position with its
//                     C/group x kh x kw taps contiguous (padded to 16), then
//                     blocks of 4 channels x 2 positions of int16 dot products,
//                     written as plain reductions that GCC turns into vpmaddwd
//                     (pairs of int16 products summed into int32: exact for
//                     int8 operands). For long reductions and many channels.
//   cpu.qconv.direct  depthwise and other thin convolutions (short reduction or
//                     few channels per group, where the dot form would mostly
//                     gather and pad): per output plane, each tap adds
//                     int16 products (int8 x int8 fits int16) along output rows.
// Work is split into blocks (dot: image, group, position chunk and, for small
// images, channel part; direct: image and output channel) that each compute
// whole output elements, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/conv_common.h"
#include "backends/cpu/parallel.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

constexpr int64_t kAlign = 16;             // int16 lanes of one AVX2 vector
constexpr int64_t kMaxReduction = 132104;  // |acc| <= 16256 * R fits int32 (|w| <= 127)

// Eight exact dot products of length r (a multiple of kAlign): weight rows
// w, w + ldw, w + 2 ldw, w + 3 ldw against the positions a and b.
inline void dot4x2(const int16_t* w, int64_t ldw, const int16_t* a, const int16_t* b, int64_t r, int32_t out[8]) {
  const int16_t* __restrict w0 = w;
  const int16_t* __restrict w1 = w + ldw;
  const int16_t* __restrict w2 = w + 2 * ldw;
  const int16_t* __restrict w3 = w + 3 * ldw;
  int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
  for (int64_t i = 0; i < r; ++i) {
    const int32_t xa = a[i], xb = b[i];
    s00 += w0[i] * xa, s01 += w0[i] * xb;
    s10 += w1[i] * xa, s11 += w1[i] * xb;
    s20 += w2[i] * xa, s21 += w2[i] * xb;
    s30 += w3[i] * xa, s31 += w3[i] * xb;
  }
  out[0] = s00, out[1] = s01, out[2] = s10, out[3] = s11, out[4] = s20, out[5] = s21, out[6] = s30, out[7] = s31;
}

inline int8_t requantize(float v, float y_scale) {
  float t = v / y_scale;
  t = t == t ? t : 0.f;  // NaN -> 0, like Reformat
  t = std::min(std::max(t, -128.f), 127.f);  // integer bounds: clamping first equals saturating after rounding
  return int8_t(int(std::nearbyint(t)));
}

class QConvKernel : public Kernel {
 public:
  explicit QConvKernel(const ir::Node& n) {
    const ir::Value* x = n.in(0);
    const ir::Value* w = n.in(1);
    require_dtype(n, "input", x->dtype, {DataType::kInt8});
    if (x->dims.size() != 4) throw_unsupported(n.label() + ": QConv is 2-D only ([N, C, H, W])");
    if (!w || !w->constant || w->constant->dtype() != DataType::kInt8 || w->dims.size() != 4)
      throw_bad_input(n.label() + ": QConv needs a constant int8 weight [K, C/group, kh, kw]");
    int64_t k3[3], s3[3], d3[3], pb3[3];
    read_window3(n, 2, k3, s3, d3, pb3);
    kh_ = k3[1], kw_ = k3[2], sh_ = s3[1], sw_ = s3[2], dh_ = d3[1], dw_ = d3[2], pt_ = pb3[1], pl_ = pb3[2];
    group_ = n.i("group", 1);
    c_ = x->dims[1];
    k_ = w->dims[0];
    if (group_ < 1 || c_ % group_ || k_ % group_ || w->dims[1] * group_ != c_ || w->dims[2] != kh_ || w->dims[3] != kw_)
      throw_bad_input(n.label() + ": weight " + shape_str(w->dims) + " does not match the input and window");
    cg_ = c_ / group_;
    mg_ = k_ / group_;
    r_ = cg_ * kh_ * kw_;
    if (r_ > kMaxReduction)
      throw_unsupported(n.label() + ": reduction of " + std::to_string(r_) + " taps could overflow int32");

    to_ = n.outputs[0]->dtype;
    require_dtype(n, "output", to_, {DataType::kInt8, DataType::kFloat32, DataType::kFloat16});
    if (to_ == DataType::kInt8) y_scale_ = n.f("y_scale", 0.f);
    if (to_ == DataType::kInt8 && !(y_scale_ > 0.f && std::isfinite(y_scale_)))
      throw_bad_input(n.label() + ": y_scale must be finite and > 0");
    const float xs = n.f("x_scale", 0.f);
    const std::vector<float> ws = n.floats("w_scales");
    if (int64_t(ws.size()) != k_) throw_bad_input(n.label() + ": w_scales needs one entry per output channel");
    for (float s : ws) m_.push_back(xs * s);  // the contract's float product, once
    if (n.in(2)) {
      auto bt = constant_f32(n, 2);
      if (!bt || bt->numel() != k_) throw_bad_input(n.label() + ": bias must be a constant fp32 [K]");
      bias_.assign(bt->data<float>(), bt->data<float>() + k_);
    }
    act_ = Activation::from_node(n);
    if (const ir::Value* z = n.in(3)) {
      zt_ = z->dtype;
      require_dtype(n, "residual", zt_, {DataType::kInt8, DataType::kFloat32, DataType::kFloat16});
      if (z->dims != n.outputs[0]->dims) throw_bad_input(n.label() + ": residual dims differ from the output's");
      residual_ = true;
      if (zt_ == DataType::kInt8) z_scale_ = n.f("z_scale", 0.f);
      if (!(z_scale_ > 0.f && std::isfinite(z_scale_))) throw_bad_input(n.label() + ": z_scale must be finite and > 0");
    }

    const int8_t* wv = w->constant->data<int8_t>();
    direct_ = r_ < 16 || mg_ < 8;
    if (direct_) {
      wq8_.assign(wv, wv + k_ * r_);
    } else {
      // Per group, rows padded to a multiple of 4 and taps to kAlign (zeros).
      rp_ = (r_ + kAlign - 1) / kAlign * kAlign;
      mg4_ = (mg_ + 3) / 4 * 4;
      wq_.assign(size_t(group_ * mg4_ * rp_), 0);
      for (int64_t g = 0; g < group_; ++g)
        for (int64_t m = 0; m < mg_; ++m) std::copy_n(wv + (g * mg_ + m) * r_, r_, wq_.data() + (g * mg4_ + m) * rp_);
    }
  }

  std::string tactic() const override {
    std::string t = direct_ ? "cpu.qconv.direct" : "cpu.qconv.dot";
    if (residual_) t += "+add";
    if (act_.kind != Activation::kNone) t += "+" + act_.name();
    return t;
  }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& x = *in[0];
    ir::Tensor& y = *out[0];
    if (y.numel() == 0) return;
    Io io;
    io.x = x.data<int8_t>();
    io.z = residual_ ? in[3]->raw() : nullptr;
    io.y = y.raw();
    io.n = x.dims()[0];
    io.h = x.dims()[2], io.w = x.dims()[3];
    io.oh = y.dims()[2], io.ow = y.dims()[3];
    if (direct_) {
      run_direct(io);
    } else {
      run_dot(io);
    }
  }

 private:
  struct Io {
    const int8_t* x;
    const void* z;
    void* y;
    int64_t n, h, w, oh, ow;
  };

  // Output elements [off, off + len) of channel k (flat offset into Y/Z)
  // from their accumulators. tmp / ztmp hold len floats.
  void finish(const int32_t* acc, int64_t len, int64_t k, int64_t off, const Io& io, float* tmp, float* ztmp) const {
    const float mk = m_[size_t(k)];
    for (int64_t i = 0; i < len; ++i) tmp[i] = float(acc[i]) * mk;
    const float* zf = nullptr;
    float zs = 1.f;
    if (residual_) {
      if (zt_ == DataType::kFloat32) {
        zf = static_cast<const float*>(io.z) + off;
      } else if (zt_ == DataType::kInt8) {
        const int8_t* zq = static_cast<const int8_t*>(io.z) + off;
        for (int64_t i = 0; i < len; ++i) ztmp[i] = float(zq[i]);
        zf = ztmp;
        zs = z_scale_;
      } else {
        const uint16_t* zh = static_cast<const uint16_t*>(io.z) + off;
        for (int64_t i = 0; i < len; ++i) ztmp[i] = half_to_float(zh[i]);
        zf = ztmp;
      }
    }
    epilogue(tmp, len, bias_.empty() ? 0.f : bias_[size_t(k)], zf, act_, zs);
    if (to_ == DataType::kInt8) {
      int8_t* yq = static_cast<int8_t*>(io.y) + off;
      const float ys = y_scale_;
      for (int64_t i = 0; i < len; ++i) yq[i] = requantize(tmp[i], ys);
    } else if (to_ == DataType::kFloat32) {
      std::memcpy(static_cast<float*>(io.y) + off, tmp, size_t(len) * sizeof(float));
    } else {
      uint16_t* yh = static_cast<uint16_t*>(io.y) + off;
      for (int64_t i = 0; i < len; ++i) yh[i] = float_to_half(tmp[i]);
    }
  }

  // Output columns [lo, hi) whose tap at offset `off` (= b * dilation - pad)
  // lands inside a row of `w` input columns: 0 <= ow * stride + off < w.
  static void valid_cols(int64_t off, int64_t stride, int64_t w, int64_t ow, int64_t& lo, int64_t& hi) {
    lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
    hi = w - 1 - off < 0 ? 0 : std::min(ow, (w - 1 - off) / stride + 1);
    hi = std::max(hi, lo);
  }

  // Rows of the column matrix for output positions [p0, p1): row p holds the
  // window of position p over the group's channels (xg), zeros for padding.
  // Filled tap by tap so the inner loop is a plain strided copy.
  void gather(const int8_t* xg, const Io& io, int64_t p0, int64_t p1, int16_t* col) const {
    std::fill(col, col + (p1 - p0) * rp_, int16_t(0));
    const int64_t hw = io.h * io.w;
    for (int64_t c = 0; c < cg_; ++c)
      for (int64_t a = 0; a < kh_; ++a)
        for (int64_t b = 0; b < kw_; ++b) {
          const int64_t r = (c * kh_ + a) * kw_ + b, off = b * dw_ - pl_;
          int64_t lo, hi;
          valid_cols(off, sw_, io.w, io.ow, lo, hi);
          for (int64_t p = p0; p < p1;) {
            const int64_t oh = p / io.ow, ow0 = p % io.ow, ow1 = std::min(io.ow, ow0 + (p1 - p));
            const int64_t ih = oh * sh_ - pt_ + a * dh_;
            if (ih >= 0 && ih < io.h) {
              const int8_t* row = xg + c * hw + ih * io.w;
              const int64_t base = (p - p0 - ow0) * rp_ + r;  // + ow * rp_: position (oh, ow), tap r
              for (int64_t ow = std::max(ow0, lo), e = std::min(ow1, hi); ow < e; ++ow)
                col[base + ow * rp_] = row[ow * sw_ + off];
            }
            p += ow1 - ow0;
          }
        }
  }

  void run_dot(const Io& io) const {
    const int64_t P = io.oh * io.ow;
    // A chunk's column rows stay in L2 while every channel block sweeps them.
    int64_t pc = std::max<int64_t>(16, (int64_t(192) << 10) / (rp_ * 2));
    pc = std::min<int64_t>({pc, 512, (P + 1) / 2 * 2});
    pc = (pc + 1) / 2 * 2;
    const int64_t chunks = (P + pc - 1) / pc, items = io.n * group_ * chunks, nkb = mg4_ / 4;
    // Few blocks (small images): also split the channels so every thread has
    // work; each part re-gathers its chunk, so parts keep >= 4 channel blocks.
    int64_t kparts = 1;
    const int64_t want = 4 * int64_t(num_threads());
    if (items < want) kparts = std::max<int64_t>(1, std::min((want + items - 1) / items, nkb / 4));
    const int64_t hw = io.h * io.w;
    parallel_blocks(items * kparts, 1, [&](int64_t b0, int64_t b1) {
      int16_t* col = reinterpret_cast<int16_t*>(scratch(size_t(pc * rp_ / 2 + 1), 0));
      int32_t* acc = reinterpret_cast<int32_t*>(scratch(size_t(4 * pc), 1));
      float* tmp = scratch(size_t(pc), 2);
      float* ztmp = scratch(size_t(pc), 3);
      for (int64_t it = b0; it < b1; ++it) {
        const int64_t kp = it % kparts, chunk = (it / kparts) % chunks, ng = it / kparts / chunks;
        const int64_t g = ng % group_, n = ng / group_;
        const int64_t p0 = chunk * pc, p1 = std::min(P, p0 + pc), np = p1 - p0;
        gather(io.x + (n * c_ + g * cg_) * hw, io, p0, p1, col);
        const int64_t kb0 = nkb * kp / kparts, kb1 = nkb * (kp + 1) / kparts;
        for (int64_t kb = kb0; kb < kb1; ++kb) {
          const int16_t* wb = wq_.data() + (g * mg4_ + kb * 4) * rp_;
          for (int64_t j = 0; j < np; j += 2) {
            const int16_t* a = col + j * rp_;
            const int16_t* bcol = j + 1 < np ? a + rp_ : a;  // odd tail: the duplicate is dropped
            int32_t s[8];
            dot4x2(wb, rp_, a, bcol, rp_, s);
            for (int q = 0; q < 4; ++q) {
              acc[q * pc + j] = s[2 * q];
              acc[q * pc + j + 1] = s[2 * q + 1];
            }
          }
          const int64_t rows = std::min<int64_t>(4, mg_ - kb * 4);
          for (int64_t q = 0; q < rows; ++q) {
            const int64_t k = g * mg_ + kb * 4 + q;
            finish(acc + q * pc, np, k, (n * k_ + k) * P + p0, io, tmp, ztmp);
          }
        }
      }
    });
  }

  // Direct path. The group's input channels are staged as int16 planes, each
  // split into `stride` column phases so a tap reads a contiguous run: input
  // column ow * sw + b * dw - pl is phase fm, index ow + fd. Tap t of a row
  // reads ph[off[t] + ow] for the output columns [lo, hi) of its kernel column.
  struct Direct {
    std::vector<int64_t> lo, hi, shift;  // per kernel column b
    int64_t wj = 0, plane = 0;           // staged columns per phase row, int16s per channel
    int64_t inner_lo = 0, inner_hi = 0;  // output columns whose every tap is inside the row
  };
  struct RowTaps {
    explicit RowTaps(size_t taps) : off(taps), b(taps), w(taps), src(taps) {}
    std::vector<int64_t> off, b;
    std::vector<int16_t> w;
    std::vector<const int16_t*> src;  // ph + off + inner_lo: where interior blocks start reading
    int64_t n = 0;
  };

  // Columns [o0, o0 + B) of a row whose taps all lie inside it: a
  // fixed-length loop per tap that GCC vectorizes with the accumulators held
  // in registers across taps. It must stay a loop (unroll 1): fully unrolled
  // it comes out scalar; the zero-weight skip keeps GCC from jamming taps.
  template <int B>
  static void tap_block(const RowTaps& rt, int64_t o0, int64_t inner_lo, int32_t* ar) {
    int32_t s[B] = {};
    for (int64_t t = 0; t < rt.n; ++t) {
      const int16_t* p = rt.src[size_t(t)] + (o0 - inner_lo);
      const int16_t wv = rt.w[size_t(t)];
      if (wv == 0) continue;
#pragma GCC unroll 1
      for (int i = 0; i < B; ++i) s[i] += int16_t(p[i] * wv);  // |x * w| <= 16256: exact in int16
    }
    std::copy_n(s, B, ar + o0);
  }

  // Columns [c0, c1) of a row, tap by tap over each tap's valid columns: the
  // edge columns, or whole rows too narrow for a block.
  static void tap_span(const Direct& d, const RowTaps& rt, const int16_t* ph, int64_t c0, int64_t c1, int32_t* ar) {
    std::fill(ar + c0, ar + c1, 0);
    for (int64_t t = 0; t < rt.n; ++t) {
      const size_t b = size_t(rt.b[size_t(t)]);
      const int64_t base = rt.off[size_t(t)];
      const int16_t wv = rt.w[size_t(t)];
      if (wv == 0) continue;
      for (int64_t o = std::max(c0, d.lo[b]), e = std::min(c1, d.hi[b]); o < e; ++o)
        ar[o] += int16_t(ph[base + o] * wv);
    }
  }

  // Output row oh of one plane (weights wk, staged input ph) into ar.
  void direct_row(const Direct& d, const Io& io, const int16_t* ph, const int8_t* wk, int64_t oh, RowTaps& rt,
                  int32_t* ar) const {
    const int64_t L = d.inner_lo, H = d.inner_hi;
    rt.n = 0;
    for (int64_t c = 0; c < cg_; ++c)
      for (int64_t a = 0; a < kh_; ++a) {
        const int64_t ih = oh * sh_ - pt_ + a * dh_;
        if (ih < 0 || ih >= io.h) continue;
        for (int64_t b = 0; b < kw_; ++b) {
          const size_t t = size_t(rt.n++);
          rt.off[t] = c * d.plane + ih * d.wj + d.shift[size_t(b)];
          rt.b[t] = b;
          rt.w[t] = wk[(c * kh_ + a) * kw_ + b];
          if (H > L) rt.src[t] = ph + rt.off[t] + L;  // column L: every tap is inside the row there
        }
      }
    if (H - L < 16) {
      tap_span(d, rt, ph, 0, io.ow, ar);
      return;
    }
    tap_span(d, rt, ph, 0, L, ar);
    tap_span(d, rt, ph, H, io.ow, ar);
    if (H - L >= 32)
      for (int64_t o = L; o < H; o += 32) tap_block<32>(rt, std::min(o, H - 32), L, ar);
    else
      for (int64_t o = L; o < H; o += 16) tap_block<16>(rt, std::min(o, H - 16), L, ar);
  }

  void run_direct(const Io& io) const {
    const int64_t P = io.oh * io.ow;
    Direct d;
    d.wj = (io.w + sw_ - 1) / sw_;
    d.plane = sw_ * io.h * d.wj;
    d.inner_lo = 0, d.inner_hi = io.ow;
    for (int64_t b = 0; b < kw_; ++b) {
      const int64_t off = b * dw_ - pl_, fm = ((off % sw_) + sw_) % sw_;
      int64_t lo, hi;
      valid_cols(off, sw_, io.w, io.ow, lo, hi);
      d.lo.push_back(lo), d.hi.push_back(hi);
      d.shift.push_back(fm * io.h * d.wj + (off - fm) / sw_);
      d.inner_lo = std::max(d.inner_lo, lo), d.inner_hi = std::min(d.inner_hi, hi);
    }
    const int64_t block = std::max<int64_t>(1, 16384 / std::max<int64_t>(P * r_, 1));
    parallel_blocks(io.n * k_, block, [&](int64_t b0, int64_t b1) {
      int16_t* ph = reinterpret_cast<int16_t*>(scratch(size_t(cg_ * d.plane / 2 + 1), 0));
      int32_t* acc = reinterpret_cast<int32_t*>(scratch(size_t(P), 1));
      float* tmp = scratch(size_t(P), 2);
      float* ztmp = scratch(size_t(P), 3);
      RowTaps rt(static_cast<size_t>(r_));
      int64_t staged = -1;  // (image, group) whose channels ph holds
      for (int64_t pl = b0; pl < b1; ++pl) {
        const int64_t n = pl / k_, k = pl % k_, g = k / mg_;
        if (n * group_ + g != staged) {
          for (int64_t c = 0; c < cg_; ++c)
            stage(io.x + (n * c_ + g * cg_ + c) * io.h * io.w, io, d.wj, ph + c * d.plane);
          staged = n * group_ + g;
        }
        for (int64_t oh = 0; oh < io.oh; ++oh) direct_row(d, io, ph, wq8_.data() + k * r_, oh, rt, acc + oh * io.ow);
        finish(acc, P, k, (n * k_ + k) * P, io, tmp, ztmp);
      }
    });
  }

  // Input plane xp as int16 in `stride` column phases: phase f, row ih holds
  // columns f, f + stride, ... (wj entries per row).
  void stage(const int8_t* xp, const Io& io, int64_t wj, int16_t* ph) const {
    if (sw_ == 1) {
      for (int64_t i = 0; i < io.h * io.w; ++i) ph[i] = xp[i];
      return;
    }
    if (sw_ == 2) {  // the common strided case, with a constant stride the compiler can vectorize
      for (int64_t ih = 0; ih < io.h; ++ih) {
        const int8_t* src = xp + ih * io.w;
        int16_t* even = ph + ih * wj;
        int16_t* odd = ph + (io.h + ih) * wj;
        for (int64_t j = 0; j < io.w / 2; ++j) even[j] = src[2 * j], odd[j] = src[2 * j + 1];
        if (io.w % 2) even[io.w / 2] = src[io.w - 1];
      }
      return;
    }
    for (int64_t f = 0; f < sw_; ++f)
      for (int64_t ih = 0; ih < io.h; ++ih) {
        const int8_t* src = xp + ih * io.w + f;
        int16_t* dst = ph + (f * io.h + ih) * wj;
        for (int64_t j = 0, e = (io.w - f + sw_ - 1) / sw_; j < e; ++j) dst[j] = src[j * sw_];
      }
  }

  int64_t kh_ = 1, kw_ = 1, sh_ = 1, sw_ = 1, dh_ = 1, dw_ = 1, pt_ = 0, pl_ = 0;
  int64_t group_ = 1, c_ = 0, k_ = 0, cg_ = 0, mg_ = 0, r_ = 0, rp_ = 0, mg4_ = 0;
  bool direct_ = false, residual_ = false;
  DataType to_ = DataType::kInt8, zt_ = DataType::kFloat32;
  float y_scale_ = 1.f, z_scale_ = 1.f;
  std::vector<float> m_, bias_;
  Activation act_;
  std::vector<int8_t> wq8_;   // direct: [K][C/group * kh * kw]
  std::vector<int16_t> wq_;  // dot: [group][mg4][rp], widened once for the int16 dot products
};

}  // namespace

void register_qconv_kernels(KernelRegistry& r) {
  r.add("QConv", [](const ir::Node& n) -> std::unique_ptr<Kernel> { return std::make_unique<QConvKernel>(n); },
        "kiln");
}

}  // namespace kiln::cpu
