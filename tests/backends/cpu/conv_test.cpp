// Conv / ConvTranspose CPU kernels against float64 loops written here.
#include <gtest/gtest.h>

#include <cmath>

#include "backends/cpu/conv_gemm.h"
#include "ir/op_registry.h"
#include "kiln/error.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using ir::Dims;
using ir::Tensor;
using test::attr_f;
using test::attr_floats;
using test::attr_i;
using test::attr_ints;
using test::attr_s;

struct Win {
  Dims s, d, p;  // strides, dilations, pads (begins then ends)
  int64_t group = 1;
};

// 3-D view helpers: spatial dims padded with leading 1s.
std::vector<int64_t> v3(const Dims& dims, size_t from, int64_t fill) {
  size_t r = dims.size() - from;
  std::vector<int64_t> o(3, fill);
  for (size_t i = 0; i < r; ++i) o[3 - r + i] = dims[from + i];
  return o;
}

// Direct definition: y[n,m,o] = b[m] + sum_{c in group, k} x[n,c,o*s - p + k*d] w[m,c,k].
Tensor ref_conv(const Tensor& x, const Tensor& w, const Tensor* b, const Win& win) {
  const Dims& xd = x.dims();
  const Dims& wd = w.dims();
  size_t r = xd.size() - 2;
  Dims yd{xd[0], wd[0]};
  for (size_t i = 0; i < r; ++i)
    yd.push_back((xd[2 + i] + win.p[i] + win.p[r + i] - ((wd[2 + i] - 1) * win.d[i] + 1)) / win.s[i] + 1);
  auto id = v3(xd, 2, 1), od = v3(yd, 2, 1), kd = v3(wd, 2, 1);
  Dims s2{0, 0}, d2{0, 0}, p2{0, 0};
  s2.insert(s2.end(), win.s.begin(), win.s.end());
  d2.insert(d2.end(), win.d.begin(), win.d.end());
  p2.insert(p2.end(), win.p.begin(), win.p.begin() + long(r));
  auto st = v3(s2, 2, 1), dl = v3(d2, 2, 1), pb = v3(p2, 2, 0);
  auto xv = x.to_double(), wv = w.to_double();
  std::vector<double> bv = b ? b->to_double() : std::vector<double>();
  int64_t cg = xd[1] / win.group, mg = wd[0] / win.group;
  std::vector<float> y;
  for (int64_t n = 0; n < yd[0]; ++n)
    for (int64_t m = 0; m < yd[1]; ++m)
      for (int64_t a = 0; a < od[0]; ++a)
        for (int64_t bb = 0; bb < od[1]; ++bb)
          for (int64_t c = 0; c < od[2]; ++c) {
            double acc = b ? bv[size_t(m)] : 0.0;
            int64_t g = m / mg;
            for (int64_t ci = 0; ci < cg; ++ci)
              for (int64_t ka = 0; ka < kd[0]; ++ka)
                for (int64_t kb = 0; kb < kd[1]; ++kb)
                  for (int64_t kc = 0; kc < kd[2]; ++kc) {
                    int64_t za = a * st[0] - pb[0] + ka * dl[0];
                    int64_t zb = bb * st[1] - pb[1] + kb * dl[1];
                    int64_t zc = c * st[2] - pb[2] + kc * dl[2];
                    if (za < 0 || za >= id[0] || zb < 0 || zb >= id[1] || zc < 0 || zc >= id[2]) continue;
                    int64_t xc = g * cg + ci;
                    double xval = xv[size_t((((n * xd[1] + xc) * id[0] + za) * id[1] + zb) * id[2] + zc)];
                    double wval = wv[size_t((((m * cg + ci) * kd[0] + ka) * kd[1] + kb) * kd[2] + kc)];
                    acc += xval * wval;
                  }
            y.push_back(float(acc));
          }
  return Tensor::from_float(y, yd);
}

Tensor conv(const Tensor& x, const Tensor& w, const Tensor* b, const Win& win, bool const_w = true,
            std::string* tactic = nullptr, std::map<std::string, ir::Attribute> extra = {}) {
  std::map<std::string, ir::Attribute> attrs = extra;
  attrs["strides"] = attr_ints(win.s);
  attrs["dilations"] = attr_ints(win.d);
  attrs["pads"] = attr_ints(win.p);
  attrs["group"] = attr_i(win.group);
  std::vector<test::OpInput> ins{test::in(x), const_w ? test::cin(w) : test::in(w)};
  if (b) ins.push_back(const_w ? test::cin(*b) : test::in(*b));
  return test::run_op("Conv", ins, attrs, 1, tactic)[0];
}

struct Case {
  const char* name;
  Dims x, w;
  Win win;
  bool bias;
  const char* tactic;
};

TEST(ConvCpu, MatchesReferenceAcrossAttributeSpace) {
  const Case cases[] = {
      {"3x3 pad1", {2, 4, 9, 11}, {6, 4, 3, 3}, {{1, 1}, {1, 1}, {1, 1, 1, 1}}, true, "cpu.conv.im2col"},
      {"3x3 stride2 asym pads", {1, 3, 10, 9}, {5, 3, 3, 3}, {{2, 2}, {1, 1}, {0, 1, 2, 0}}, true, "cpu.conv.im2col"},
      {"5x3 stride (3,1) dil (1,2)", {1, 2, 13, 12}, {4, 2, 5, 3}, {{3, 1}, {1, 2}, {2, 1, 1, 2}}, false, "cpu.conv.im2col"},
      {"1x1 gemm", {2, 8, 7, 5}, {12, 8, 1, 1}, {{1, 1}, {1, 1}, {0, 0, 0, 0}}, true, "cpu.conv.gemm1x1"},
      {"1x1 stride2", {1, 8, 7, 6}, {4, 8, 1, 1}, {{2, 2}, {1, 1}, {0, 0, 0, 0}}, true, "cpu.conv.im2col"},
      {"1x1 with end pads", {1, 3, 4, 4}, {2, 3, 1, 1}, {{1, 1}, {1, 1}, {0, 0, 1, 2}}, true, "cpu.conv.im2col"},
      {"group 2", {2, 6, 8, 8}, {4, 3, 3, 3}, {{1, 2}, {2, 1}, {2, 1, 2, 1}, 2}, true, "cpu.conv.im2col"},
      {"group 3 1x1", {1, 6, 5, 5}, {9, 2, 1, 1}, {{1, 1}, {1, 1}, {0, 0, 0, 0}, 3}, true, "cpu.conv.gemm1x1"},
      {"depthwise 3x3 s1", {2, 5, 37, 41}, {5, 1, 3, 3}, {{1, 1}, {1, 1}, {1, 1, 1, 1}, 5}, true, "cpu.conv.depthwise"},
      {"depthwise 3x3 s2", {1, 4, 15, 14}, {4, 1, 3, 3}, {{2, 2}, {1, 1}, {1, 1, 1, 1}, 4}, true, "cpu.conv.depthwise"},
      {"depthwise 5x5 s2 asym", {1, 3, 20, 19}, {3, 1, 5, 5}, {{2, 2}, {1, 1}, {1, 2, 2, 1}, 3}, false, "cpu.conv.depthwise"},
      {"depthwise 5x5 s1", {1, 3, 23, 21}, {3, 1, 5, 5}, {{1, 1}, {1, 1}, {2, 2, 2, 2}, 3}, true, "cpu.conv.depthwise"},
      {"depthwise 3x3 s2 no pad", {1, 2, 9, 35}, {2, 1, 3, 3}, {{2, 2}, {1, 1}, {0, 0, 0, 0}, 2}, true, "cpu.conv.depthwise"},
      {"depthwise dil2 s3", {1, 3, 17, 40}, {3, 1, 3, 3}, {{3, 2}, {2, 2}, {2, 0, 0, 2}, 3}, true, "cpu.conv.depthwise"},
      {"depthwise multiplier 2", {2, 3, 6, 7}, {6, 1, 3, 2}, {{1, 1}, {1, 1}, {1, 0, 1, 1}, 3}, true, "cpu.conv.depthwise"},
      {"depthwise tiny 7x7 plane", {1, 8, 7, 7}, {8, 1, 3, 3}, {{1, 1}, {1, 1}, {1, 1, 1, 1}, 8}, true, "cpu.conv.depthwise"},
      {"depthwise stride 3 wide", {1, 2, 9, 70}, {2, 1, 3, 3}, {{1, 3}, {1, 1}, {1, 1, 1, 1}, 2}, true, "cpu.conv.depthwise"},
      {"depthwise 17x1 kernel", {1, 2, 20, 5}, {2, 1, 17, 1}, {{1, 1}, {1, 1}, {8, 0, 8, 0}, 2}, true, "cpu.conv.depthwise"},
      {"depthwise 1x1 plane", {1, 6, 1, 1}, {6, 1, 3, 3}, {{1, 1}, {1, 1}, {1, 1, 1, 1}, 6}, true, "cpu.conv.depthwise"},
      {"1d", {2, 3, 20}, {4, 3, 4}, {{2}, {2}, {1, 3}}, true, "cpu.conv.im2col"},
      {"wide K (two K blocks)", {1, 100, 6, 5}, {20, 100, 3, 3}, {{1, 1}, {1, 1}, {1, 1, 1, 1}}, true, "cpu.conv.im2col"},
      {"many columns (several N blocks)", {1, 5, 40, 30}, {14, 5, 1, 1}, {{1, 1}, {1, 1}, {0, 0, 0, 0}}, true, "cpu.conv.gemm1x1"},
      {"1d depthwise", {1, 4, 33}, {4, 1, 3}, {{1}, {1}, {1, 1}, 4}, true, "cpu.conv.depthwise"},
      {"3d", {1, 2, 5, 6, 7}, {3, 2, 3, 2, 3}, {{1, 2, 1}, {1, 1, 2}, {1, 0, 1, 1, 1, 0}}, true, "cpu.conv.im2col"},
      {"3d depthwise", {1, 3, 4, 5, 6}, {3, 1, 2, 3, 3}, {{1, 1, 2}, {1, 1, 1}, {0, 1, 1, 1, 1, 1}, 3}, true, "cpu.conv.im2col"},
  };
  uint32_t seed = 1;
  // Both the AVX-512 kernels (where the CPU has them) and the portable path.
  for (bool avx512 : {true, false})
  for (const Case& c : cases) {
    cpu::set_avx512_enabled(avx512);
    SCOPED_TRACE(std::string(c.name) + (avx512 && cpu::avx512_enabled() ? " [avx512]" : " [portable]"));
    Tensor x = test::random_tensor(DataType::kFloat32, c.x, seed++);
    Tensor w = test::random_tensor(DataType::kFloat32, c.w, seed++);
    Tensor b = test::random_tensor(DataType::kFloat32, {c.w[0]}, seed++);
    Tensor want = ref_conv(x, w, c.bias ? &b : nullptr, c.win);
    std::string tactic;
    Tensor got = conv(x, w, c.bias ? &b : nullptr, c.win, true, &tactic);
    EXPECT_EQ(tactic, c.tactic);
    EXPECT_LT(test::max_rel_error(got, want), 1e-4);
    // Weights computed at run time take the unpacked path.
    Tensor got_rt = conv(x, w, c.bias ? &b : nullptr, c.win, false);
    EXPECT_LT(test::max_rel_error(got_rt, want), 1e-4);
  }
  cpu::set_avx512_enabled(true);
}

TEST(ConvCpu, OnnxAutoPadSameLowerExample) {
  // test_conv_with_autopad_same from the ONNX suite: 5x5 ramp, 3x3 ones, stride 2, SAME_LOWER.
  std::vector<float> xs(25);
  for (int i = 0; i < 25; ++i) xs[size_t(i)] = float(i);
  Tensor x = Tensor::from_float(xs, {1, 1, 5, 5});
  Tensor w = Tensor::from_float(std::vector<float>(9, 1.f), {1, 1, 3, 3});
  auto y = test::run_op("Conv", {test::in(x), test::in(w)},
                        {{"auto_pad", attr_s("SAME_LOWER")}, {"kernel_shape", attr_ints({3, 3})}, {"strides", attr_ints({2, 2})}});
  Tensor want = Tensor::from_float({12, 27, 24, 63, 108, 81, 72, 117, 84}, {1, 1, 3, 3});
  EXPECT_EQ(test::max_rel_error(y[0], want), 0.0);
}

// Inference resolves auto_pad into explicit pads; the kernel result matches
// the reference computed with those pads.
TEST(ConvCpu, AutoPadResolvesToExplicitPads) {
  struct P { const char* mode; Dims x; Dims k; Dims s; Dims d; Dims pads; };
  const P cases[] = {
      {"SAME_UPPER", {1, 2, 6, 7}, {3, 3}, {2, 2}, {1, 1}, {0, 1, 1, 1}},
      {"SAME_LOWER", {1, 2, 6, 7}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 0, 1}},
      {"SAME_UPPER", {1, 2, 8, 5}, {3, 2}, {1, 1}, {2, 1}, {2, 0, 2, 1}},
      {"VALID", {1, 2, 6, 7}, {3, 3}, {2, 1}, {1, 1}, {0, 0, 0, 0}},
  };
  uint32_t seed = 100;
  for (const P& c : cases) {
    SCOPED_TRACE(c.mode);
    ir::Graph g;
    ir::Value* xv = g.add_value("x");
    xv->dims = c.x;
    xv->has_shape = true;
    g.inputs.push_back(xv);
    Tensor w = test::random_tensor(DataType::kFloat32, {3, 2, c.k[0], c.k[1]}, seed++);
    ir::Value* wv = g.add_constant("w", w);
    ir::Value* yv = g.add_value("y");
    ir::Node* n = g.add_node("Conv", "c", {xv, wv}, {yv});
    n->attrs["auto_pad"] = attr_s(c.mode);
    n->attrs["strides"] = attr_ints(c.s);
    n->attrs["dilations"] = attr_ints(c.d);
    ir::infer_shapes(g);
    EXPECT_EQ(n->ints("pads"), c.pads);
    EXPECT_EQ(n->ints("kernel_shape"), c.k);
    EXPECT_FALSE(n->has("auto_pad"));
    Tensor x = test::random_tensor(DataType::kFloat32, c.x, seed++);
    Tensor want = ref_conv(x, w, nullptr, {c.s, c.d, c.pads});
    EXPECT_EQ(yv->dims, want.dims());
    auto got = test::run_op("Conv", {test::in(x), test::cin(w)},
                            {{"auto_pad", attr_s(c.mode)}, {"strides", attr_ints(c.s)}, {"dilations", attr_ints(c.d)}});
    EXPECT_LT(test::max_rel_error(got[0], want), 1e-4);
  }
}

// The fused epilogue y = act(conv + b + z) in float64, per activation name
// ("" for none); parameters as the attribute carries them.
double ref_act(const std::string& a, const std::vector<float>& p, double v) {
  if (a == "Relu") return std::max(v, 0.0);
  if (a == "Clip") return std::min(std::max(v, double(p[0])), double(p[1]));
  if (a == "LeakyRelu") return v < 0 ? double(p[0]) * v : v;
  if (a == "Sigmoid") return 1 / (1 + std::exp(-v));
  if (a == "HardSigmoid") return std::min(std::max(double(p[0]) * v + double(p[1]), 0.0), 1.0);
  if (a == "HardSwish") return v * std::min(std::max(v + 3, 0.0), 6.0) / 6;
  if (a == "Tanh") return std::tanh(v);
  if (a == "SiLU") return v / (1 + std::exp(-v));
  return v;
}

// Bias, residual input Z (input 3) and every fused activation on every
// tactic and kernel variant (AVX-512 GEMM / depthwise plane kernels and the
// portable OpenBLAS / flat-loop paths), with packed and run-time weights.
TEST(ConvCpu, EpilogueBiasResidualActivationOnEveryTactic) {
  struct T { const char* name; Dims x, w; Win win; bool bias; const char* tactic; };
  const T cases[] = {
      {"1x1 batch 2", {2, 8, 7, 5}, {12, 8, 1, 1}, {{1, 1}, {1, 1}, {0, 0, 0, 0}}, true, "cpu.conv.gemm1x1"},
      {"1x1 group 3 no bias", {2, 6, 5, 5}, {9, 2, 1, 1}, {{1, 1}, {1, 1}, {0, 0, 0, 0}, 3}, false, "cpu.conv.gemm1x1"},
      {"1x1 many columns", {1, 5, 40, 30}, {14, 5, 1, 1}, {{1, 1}, {1, 1}, {0, 0, 0, 0}}, true, "cpu.conv.gemm1x1"},
      {"3x3 batch 2", {2, 4, 9, 11}, {6, 4, 3, 3}, {{1, 1}, {1, 1}, {1, 1, 1, 1}}, true, "cpu.conv.im2col"},
      {"3x3 group 2 batch 2", {2, 6, 8, 8}, {4, 3, 3, 3}, {{1, 2}, {2, 1}, {2, 1, 2, 1}, 2}, true, "cpu.conv.im2col"},
      {"3x3 two K blocks", {1, 100, 6, 5}, {20, 100, 3, 3}, {{1, 1}, {1, 1}, {1, 1, 1, 1}}, true, "cpu.conv.im2col"},
      {"3x3 stride 2 no bias", {2, 3, 30, 41}, {14, 3, 3, 3}, {{2, 2}, {1, 1}, {1, 1, 1, 1}}, false, "cpu.conv.im2col"},
      {"1d", {2, 3, 20}, {4, 3, 4}, {{2}, {2}, {1, 3}}, true, "cpu.conv.im2col"},
      {"3d", {2, 2, 4, 5, 6}, {3, 2, 3, 2, 3}, {{1, 2, 1}, {1, 1, 2}, {1, 0, 1, 1, 1, 0}}, true, "cpu.conv.im2col"},
      {"dw 3x3 s1 batch 2", {2, 5, 37, 41}, {5, 1, 3, 3}, {{1, 1}, {1, 1}, {1, 1, 1, 1}, 5}, true, "cpu.conv.depthwise"},
      {"dw 3x3 s2", {2, 4, 15, 14}, {4, 1, 3, 3}, {{2, 2}, {1, 1}, {1, 1, 1, 1}, 4}, true, "cpu.conv.depthwise"},
      {"dw 5x5 s1 no bias", {1, 3, 23, 21}, {3, 1, 5, 5}, {{1, 1}, {1, 1}, {2, 2, 2, 2}, 3}, false, "cpu.conv.depthwise"},
      {"dw 5x5 s2", {2, 3, 20, 19}, {3, 1, 5, 5}, {{2, 2}, {1, 1}, {1, 2, 2, 1}, 3}, true, "cpu.conv.depthwise"},
      {"dw dil2 s3", {2, 3, 17, 40}, {3, 1, 3, 3}, {{3, 2}, {2, 2}, {2, 0, 0, 2}, 3}, true, "cpu.conv.depthwise"},
      {"dw multiplier 2", {2, 3, 6, 7}, {6, 1, 3, 2}, {{1, 1}, {1, 1}, {1, 0, 1, 1}, 3}, true, "cpu.conv.depthwise"},
      {"dw 1d", {2, 4, 33}, {4, 1, 3}, {{1}, {1}, {1, 1}, 4}, true, "cpu.conv.depthwise"},
  };
  struct A { const char* name; std::vector<float> params; };
  const A acts[] = {{"", {}},          {"Relu", {}},      {"Clip", {-0.5f, 0.75f}}, {"LeakyRelu", {0.1f}},
                    {"Sigmoid", {}},   {"HardSigmoid", {0.2f, 0.5f}}, {"HardSwish", {}}, {"Tanh", {}}, {"SiLU", {}}};
  uint32_t seed = 700;
  for (const T& c : cases) {
    Tensor x = test::random_tensor(DataType::kFloat32, c.x, seed++, -1.5, 1.5);
    Tensor w = test::random_tensor(DataType::kFloat32, c.w, seed++);
    Tensor b = test::random_tensor(DataType::kFloat32, {c.w[0]}, seed++);
    Tensor plain = ref_conv(x, w, c.bias ? &b : nullptr, c.win);
    Tensor z = test::random_tensor(DataType::kFloat32, plain.dims(), seed++, -2, 2);
    const auto pv = plain.to_double(), zv = z.to_double();
    for (bool avx512 : {true, false})
      for (const A& a : acts)
        for (bool residual : {false, true})
          for (bool const_w : {true, false}) {
            cpu::set_avx512_enabled(avx512);
            SCOPED_TRACE(std::string(c.name) + " act=" + a.name + (residual ? " +Z" : "") +
                         (const_w ? "" : " run-time W") + (avx512 && cpu::avx512_enabled() ? " [avx512]" : " [portable]"));
            std::vector<float> want(pv.size());
            for (size_t i = 0; i < pv.size(); ++i) want[i] = float(ref_act(a.name, a.params, pv[i] + (residual ? zv[i] : 0)));
            std::map<std::string, ir::Attribute> attrs{{"strides", attr_ints(c.win.s)}, {"dilations", attr_ints(c.win.d)},
                                                       {"pads", attr_ints(c.win.p)}, {"group", attr_i(c.win.group)}};
            std::string expect_tactic = std::string(c.tactic) + (residual ? "+add" : "");
            if (*a.name) {
              attrs["activation"] = attr_s(a.name);
              attrs["activation_params"] = attr_floats(a.params);
              std::string lower = a.name;
              for (char& ch : lower) ch = char(std::tolower(ch));
              expect_tactic += "+" + lower;
            }
            std::vector<test::OpInput> ins{test::in(x), const_w ? test::cin(w) : test::in(w),
                                           c.bias ? test::cin(b) : test::none()};
            if (residual) ins.push_back(test::in(z));
            std::string tactic;
            Tensor got = test::run_op("Conv", ins, attrs, 1, &tactic)[0];
            EXPECT_EQ(tactic, expect_tactic);
            EXPECT_LT(test::max_rel_error(got, Tensor::from_float(want, plain.dims())), 1e-4);
          }
  }
  cpu::set_avx512_enabled(true);
}

// Saturated and near-zero inputs of the vectorized sigmoid / tanh / SiLU:
// y = act(0 * x + bias + z) with z spanning [-100, 100] and tiny values.
TEST(ConvCpu, TranscendentalEpilogueExtremes) {
  std::vector<float> zs;
  for (float v : {-100.f, -88.f, -30.f, -10.f, -1.f, -0.3f, -0.1f, -1e-3f, -1e-6f, 0.f, 1e-6f, 1e-3f, 0.1f, 0.24f,
                  0.26f, 0.3f, 1.f, 10.f, 30.f, 88.f, 100.f})
    zs.push_back(v);
  while (zs.size() % 16 != 5) zs.push_back(float(zs.size()) * 0.37f - 4.f);  // a masked tail too
  const int64_t n = int64_t(zs.size());
  Tensor x(DataType::kFloat32, {1, 1, 1, n}), w = Tensor::from_float({1.f}, {1, 1, 1, 1});
  Tensor z = Tensor::from_float(zs, {1, 1, 1, n});
  for (bool avx512 : {true, false})
    for (const char* a : {"Sigmoid", "Tanh", "SiLU"}) {
      cpu::set_avx512_enabled(avx512);
      SCOPED_TRACE(std::string(a) + (avx512 ? "" : " [portable]"));
      auto got = test::run_op("Conv", {test::in(x), test::cin(w), test::none(), test::in(z)},
                              {{"activation", attr_s(a)}, {"activation_params", attr_floats({})}})[0];
      for (int64_t i = 0; i < n; ++i) {
        double want = ref_act(a, {}, zs[size_t(i)]);
        // Relative near zero (tanh, SiLU), absolute where it saturates.
        EXPECT_NEAR(got.data<float>()[i], want, 2e-6 * std::max(std::fabs(want), 1e-3)) << "z=" << zs[size_t(i)];
      }
    }
  cpu::set_avx512_enabled(true);
}

TEST(ConvCpu, Fp16RunsThroughFp32) {
  Tensor x = test::random_tensor(DataType::kFloat16, {1, 3, 8, 8}, 21);
  Tensor w = test::random_tensor(DataType::kFloat16, {4, 3, 3, 3}, 22);
  Tensor want = ref_conv(x, w, nullptr, {{1, 1}, {1, 1}, {1, 1, 1, 1}});
  std::string tactic;
  auto got = test::run_op("Conv", {test::in(x), test::cin(w)}, {{"pads", attr_ints({1, 1, 1, 1})}}, 1, &tactic);
  ASSERT_EQ(got[0].dtype(), DataType::kFloat16);
  EXPECT_EQ(tactic, "cpu.conv.im2col.fp16");
  auto g = got[0].to_double(), e = want.to_double();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], e[i], 1e-2 * std::max(1.0, std::fabs(e[i])));
  // An FP16 residual is converted with the other inputs.
  Tensor z = test::random_tensor(DataType::kFloat16, want.dims(), 23);
  got = test::run_op("Conv", {test::in(x), test::cin(w), test::none(), test::in(z)}, {{"pads", attr_ints({1, 1, 1, 1})}},
                     1, &tactic);
  EXPECT_EQ(tactic, "cpu.conv.im2col+add.fp16");
  g = got[0].to_double();
  auto zv = z.to_double();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], e[i] + zv[i], 1e-2 * std::max(1.0, std::fabs(e[i] + zv[i])));
}

// Scatter definition: y[n, g*mg+m, i*s + k*d - pb] += x[n, c, i] * w[c, m, k]
// for c in group g; `out` gives the output spatial extents.
Tensor ref_convt(const Tensor& x, const Tensor& w, const Tensor* b, const Win& win, const Dims& out) {
  const Dims& xd = x.dims();
  const Dims& wd = w.dims();
  size_t r = xd.size() - 2;
  int64_t g = win.group, cg = xd[1] / g, mg = wd[1], m_all = mg * g;
  Dims yd{xd[0], m_all};
  yd.insert(yd.end(), out.begin(), out.end());
  Dims s2{0, 0}, d2{0, 0}, p2{0, 0};
  s2.insert(s2.end(), win.s.begin(), win.s.end());
  d2.insert(d2.end(), win.d.begin(), win.d.end());
  p2.insert(p2.end(), win.p.begin(), win.p.begin() + long(r));
  auto id = v3(xd, 2, 1), od = v3(yd, 2, 1), kd = v3(wd, 2, 1), st = v3(s2, 2, 1), dl = v3(d2, 2, 1),
       pb = v3(p2, 2, 0);
  auto xv = x.to_double(), wv = w.to_double();
  std::vector<double> y(size_t(ir::numel_of(yd)), 0.0);
  int64_t ohw = od[0] * od[1] * od[2];
  for (int64_t n = 0; n < xd[0]; ++n)
    for (int64_t m = 0; m < m_all; ++m) {
      double* yp = y.data() + (n * m_all + m) * ohw;
      if (b)
        for (int64_t q = 0; q < ohw; ++q) yp[q] = b->to_double()[size_t(m)];
      int64_t gi = m / mg, mi = m % mg;
      for (int64_t ci = 0; ci < cg; ++ci) {
        int64_t c = gi * cg + ci;
        for (int64_t a = 0; a < id[0]; ++a)
          for (int64_t bb = 0; bb < id[1]; ++bb)
            for (int64_t cc = 0; cc < id[2]; ++cc) {
              double xval = xv[size_t((((n * xd[1] + c) * id[0] + a) * id[1] + bb) * id[2] + cc)];
              for (int64_t ka = 0; ka < kd[0]; ++ka)
                for (int64_t kb = 0; kb < kd[1]; ++kb)
                  for (int64_t kc = 0; kc < kd[2]; ++kc) {
                    int64_t oa = a * st[0] + ka * dl[0] - pb[0], ob = bb * st[1] + kb * dl[1] - pb[1],
                            oc = cc * st[2] + kc * dl[2] - pb[2];
                    if (oa < 0 || oa >= od[0] || ob < 0 || ob >= od[1] || oc < 0 || oc >= od[2]) continue;
                    yp[(oa * od[1] + ob) * od[2] + oc] +=
                        xval * wv[size_t((((c * mg + mi) * kd[0] + ka) * kd[1] + kb) * kd[2] + kc)];
                  }
            }
      }
    }
  return Tensor::from_float(std::vector<float>(y.begin(), y.end()), yd);
}

TEST(ConvTransposeCpu, MatchesReference) {
  struct C {
    const char* name;
    Dims x, w;
    Win win;                                        // pads here are the effective (resolved) ones
    std::map<std::string, ir::Attribute> attrs;     // what the node carries
    Dims out;
  };
  const C cases[] = {
      {"default", {1, 2, 4, 5}, {2, 3, 3, 3}, {{1, 1}, {1, 1}, {0, 0, 0, 0}}, {}, {6, 7}},
      {"strides + output_padding", {2, 3, 3, 4}, {3, 2, 3, 3}, {{3, 2}, {1, 1}, {0, 0, 0, 0}},
       {{"strides", attr_ints({3, 2})}, {"output_padding", attr_ints({1, 1})}}, {10, 10}},
      {"pads", {1, 1, 3, 3}, {1, 2, 3, 3}, {{3, 2}, {1, 1}, {1, 2, 1, 2}},
       {{"strides", attr_ints({3, 2})}, {"pads", attr_ints({1, 2, 1, 2})}}, {7, 3}},
      {"dilations", {1, 2, 4, 4}, {2, 2, 2, 3}, {{1, 2}, {2, 3}, {0, 1, 1, 0}},
       {{"strides", attr_ints({1, 2})}, {"dilations", attr_ints({2, 3})}, {"pads", attr_ints({0, 1, 1, 0})}}, {5, 12}},
      {"group 2", {2, 4, 3, 3}, {4, 3, 3, 3}, {{2, 2}, {1, 1}, {1, 1, 1, 1}, 2},
       {{"group", attr_i(2)}, {"strides", attr_ints({2, 2})}, {"pads", attr_ints({1, 1, 1, 1})}}, {5, 5}},
      // output_shape larger than the natural 9x7: tail rows/cols stay at bias.
      {"output_shape", {1, 1, 3, 3}, {1, 2, 3, 3}, {{3, 2}, {1, 1}, {0, 0, 0, 0}},
       {{"strides", attr_ints({3, 2})}, {"output_shape", attr_ints({10, 8})}}, {10, 8}},
      // output_shape smaller than natural (11x9 -> 10x8): SAME_LOWER-style begins (default).
      {"output_shape crops", {1, 1, 3, 3}, {1, 2, 3, 3}, {{4, 3}, {1, 1}, {1, 1, 0, 0}},
       {{"strides", attr_ints({4, 3})}, {"output_shape", attr_ints({10, 8})}}, {10, 8}},
      {"auto_pad SAME_UPPER", {1, 1, 3, 3}, {1, 2, 3, 3}, {{2, 2}, {1, 1}, {0, 0, 1, 1}},
       {{"strides", attr_ints({2, 2})}, {"auto_pad", attr_s("SAME_UPPER")}}, {6, 6}},
      {"auto_pad SAME_LOWER", {1, 1, 3, 3}, {1, 2, 3, 3}, {{2, 2}, {1, 1}, {1, 1, 0, 0}},
       {{"strides", attr_ints({2, 2})}, {"auto_pad", attr_s("SAME_LOWER")}}, {6, 6}},
      {"1d", {1, 2, 5}, {2, 3, 3}, {{2}, {1}, {1, 0}}, {{"strides", attr_ints({2})}, {"pads", attr_ints({1, 0})}}, {10}},
      {"3d", {1, 1, 3, 4, 5}, {1, 2, 3, 3, 3}, {{1, 1, 1}, {1, 1, 1}, {0, 0, 0, 0, 0, 0}}, {}, {5, 6, 7}},
  };
  uint32_t seed = 300;
  for (const C& c : cases) {
    SCOPED_TRACE(c.name);
    Tensor x = test::random_tensor(DataType::kFloat32, c.x, seed++);
    Tensor w = test::random_tensor(DataType::kFloat32, c.w, seed++);
    Tensor b = test::random_tensor(DataType::kFloat32, {c.w[1] * c.win.group}, seed++);
    Tensor want = ref_convt(x, w, &b, c.win, c.out);
    for (bool cw : {true, false}) {
      std::string tactic;
      auto got = test::run_op("ConvTranspose", {test::in(x), cw ? test::cin(w) : test::in(w), test::cin(b)}, c.attrs,
                              1, &tactic);
      EXPECT_EQ(tactic, "cpu.convtranspose.gemm_col2im");
      EXPECT_LT(test::max_rel_error(got[0], want), 1e-4);
    }
  }
}

// ConvInteger: exact integer reference with zero points (padding counts as zero
// after the zero point is removed).
TEST(ConvIntegerCpu, MatchesReference) {
  struct C { Dims x, w; Win win; bool per_channel; };
  const C cases[] = {
      {{1, 2, 5, 6}, {3, 2, 3, 3}, {{1, 1}, {1, 1}, {1, 1, 1, 1}}, false},
      {{2, 4, 7, 5}, {4, 2, 2, 3}, {{2, 1}, {1, 2}, {0, 1, 1, 0}, 2}, true},
      {{1, 3, 9}, {2, 3, 4}, {{2}, {1}, {1, 2}}, true},
  };
  uint32_t seed = 500;
  for (const C& c : cases) {
    SCOPED_TRACE(shape_str(c.x) + " x " + shape_str(c.w));
    Tensor x = test::random_tensor(DataType::kUInt8, c.x, seed++, 0, 255);
    Tensor w = test::random_tensor(DataType::kInt8, c.w, seed++, -128, 127);
    Tensor xz(DataType::kUInt8, {});
    xz.data<uint8_t>()[0] = 119;
    Tensor wz(DataType::kInt8, c.per_channel ? Dims{c.w[0]} : Dims{});
    for (int64_t i = 0; i < wz.numel(); ++i) wz.data<int8_t>()[i] = int8_t(3 - 2 * i);
    // Reference: the float64 conv of the shifted values, then the padding
    // correction is unnecessary because shifted padding is zero by definition.
    std::vector<float> xs, ws;
    for (int64_t v : x.to_int64()) xs.push_back(float(v - 119));
    auto wv = w.to_int64();
    int64_t per = w.numel() / c.w[0];
    for (size_t i = 0; i < wv.size(); ++i) ws.push_back(float(wv[i] - wz.to_int64()[c.per_channel ? i / size_t(per) : 0]));
    Tensor want = ref_conv(Tensor::from_float(xs, c.x), Tensor::from_float(ws, c.w), nullptr, c.win);
    auto got = test::run_op("ConvInteger", {test::in(x), test::in(w), test::in(xz), test::in(wz)},
                            {{"strides", attr_ints(c.win.s)}, {"dilations", attr_ints(c.win.d)}, {"pads", attr_ints(c.win.p)},
                             {"group", attr_i(c.win.group)}});
    ASSERT_EQ(got[0].dtype(), DataType::kInt32);
    ASSERT_EQ(got[0].dims(), want.dims());
    EXPECT_EQ(got[0].to_int64(), std::vector<int64_t>(want.to_int64()));
  }
}

ErrorCode error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::kInternal;
}

TEST(ConvCpu, RejectsInconsistentShapes) {
  Tensor x = test::random_tensor(DataType::kFloat32, {1, 4, 5, 5}, 1);
  auto run = [&](Dims wd, std::map<std::string, ir::Attribute> attrs) {
    return error_of([&] { test::run_op("Conv", {test::in(x), test::cin(Tensor(DataType::kFloat32, wd))}, attrs); });
  };
  EXPECT_EQ(run({2, 3, 3, 3}, {}), ErrorCode::kBadInput);                                     // channels
  EXPECT_EQ(run({3, 2, 3, 3}, {{"group", attr_i(2)}}), ErrorCode::kBadInput);                 // M % group
  EXPECT_EQ(run({2, 4, 3, 3}, {{"kernel_shape", attr_ints({5, 5})}}), ErrorCode::kBadInput);  // kernel_shape
  EXPECT_EQ(run({2, 4, 7, 7}, {}), ErrorCode::kBadInput);                                     // window > input
  EXPECT_EQ(run({2, 4, 3, 3}, {{"pads", attr_ints({1, 1})}}), ErrorCode::kBadInput);          // pads length
  EXPECT_EQ(run({2, 4, 3}, {}), ErrorCode::kBadInput);                                        // weight rank
  EXPECT_EQ(run({2, 4, 3, 3}, {{"auto_pad", attr_s("SAME")}}), ErrorCode::kBadInput);
  EXPECT_EQ(run({2, 4, 3, 3}, {{"activation", attr_s("Gelu")}}), ErrorCode::kUnsupported);
  EXPECT_EQ(run({2, 4, 3, 3}, {{"strides", attr_ints({0, 1})}}), ErrorCode::kBadInput);
  EXPECT_EQ(run({2, 4, 3, 3}, {{"activation", attr_s("SiLU")}, {"activation_params", attr_floats({1.f})}}),
            ErrorCode::kBadInput);
  // Residual input Z: exactly the output's dims (here [1,2,3,3]) and dtype.
  Tensor w(DataType::kFloat32, {2, 4, 3, 3});
  auto run_z = [&](const Tensor& z) {
    return error_of([&] { test::run_op("Conv", {test::in(x), test::cin(w), test::none(), test::in(z)}); });
  };
  Tensor z(DataType::kFloat32, {1, 2, 3, 3});
  EXPECT_NO_THROW(test::run_op("Conv", {test::in(x), test::cin(w), test::none(), test::in(z)}));
  EXPECT_EQ(run_z(Tensor(DataType::kFloat32, {1, 2, 1, 1})), ErrorCode::kBadInput);  // no broadcasting
  EXPECT_EQ(run_z(Tensor(DataType::kFloat32, {1, 2, 3, 4})), ErrorCode::kBadInput);
  EXPECT_EQ(run_z(Tensor(DataType::kInt32, {1, 2, 3, 3})), ErrorCode::kBadInput);
  EXPECT_EQ(error_of([&] { test::run_op("Conv", {test::in(x), test::cin(w), test::none(), test::in(z), test::in(z)}); }),
            ErrorCode::kBadInput);  // too many inputs
}

}  // namespace
}  // namespace kiln
