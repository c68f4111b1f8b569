// kiln::QConv on the CPU against a reference written here: the integer
// accumulation in int64, the epilogue in double (with m[k] = x_scale *
// w_scales[k] rounded to float as the INT8 contract says), round half to
// even and saturation done by hand. int8 outputs must match exactly, except
// by one step where the exact value lies within 1e-3 of a .5 tie; float
// outputs within 1e-5 relative. Also: int8 MaxPool.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "backends/cpu/kernel.h"
#include "backends/cpu/parallel.h"
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
using Attrs = std::map<std::string, ir::Attribute>;

enum ZKind { kNoZ, kZInt8, kZF32, kZF16 };

struct QCase {
  Dims x;  // N, C, H, W
  int64_t k = 4, group = 1, kh = 3, kw = 3;
  Dims s{1, 1}, d{1, 1}, p{0, 0, 0, 0};
  bool bias = true;
  ZKind z = kNoZ;
  std::string act;  // "" = none
  std::vector<float> act_params;
  DataType to = DataType::kInt8;
  double spread = 40.0;  // y_scale = rms(v) / spread: larger saturates more
};

QCase qcase(Dims x, int64_t k, int64_t group, int64_t kh, int64_t kw, Dims s, Dims d, Dims p, bool bias = true) {
  QCase c;
  c.x = std::move(x), c.k = k, c.group = group, c.kh = kh, c.kw = kw;
  c.s = std::move(s), c.d = std::move(d), c.p = std::move(p), c.bias = bias;
  return c;
}

QCase with_epilogue(QCase c, ZKind z, std::string act, std::vector<float> params, DataType to) {
  c.z = z, c.act = std::move(act), c.act_params = std::move(params), c.to = to;
  return c;
}

std::string describe(const QCase& c) {
  return shape_str(c.x) + " k" + std::to_string(c.k) + " g" + std::to_string(c.group) + " " + std::to_string(c.kh) +
         "x" + std::to_string(c.kw) + " s" + shape_str(c.s) + " d" + shape_str(c.d) + " p" + shape_str(c.p) +
         " z" + std::to_string(int(c.z)) + " act " + c.act + " to " + dtype_name(c.to);
}

// One QConv node (domain "kiln") through shape inference and its CPU kernel.
Tensor run_qconv(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* z, const Attrs& attrs,
                 std::string* tactic = nullptr) {
  ir::Graph g;
  ir::Value* xv = g.add_value("x");
  xv->dtype = x.dtype(), xv->dims = x.dims(), xv->has_shape = true;
  g.inputs.push_back(xv);
  std::vector<ir::Value*> ins{xv, g.add_constant("w", w)};
  if (b || z) ins.push_back(b ? g.add_constant("b", *b) : nullptr);
  if (z) {
    ir::Value* zv = g.add_value("z");
    zv->dtype = z->dtype(), zv->dims = z->dims(), zv->has_shape = true;
    g.inputs.push_back(zv);
    ins.push_back(zv);
  }
  ir::Value* y = g.add_value("y");
  ir::Node* n = g.add_node("QConv", "qc", ins, {y});
  n->domain = "kiln";
  n->attrs = attrs;
  g.outputs = {y};
  ir::infer_shapes(g, nullptr);
  auto kernel = cpu::KernelRegistry::global().create(*n);
  if (tactic) *tactic = kernel->tactic();
  Tensor out(y->dtype, y->dims);
  kernel->run({&x, &w, b, z}, {&out});
  return out;
}

double act_ref(const std::string& a, const std::vector<float>& p, double v) {
  if (a.empty()) return v;
  if (a == "Relu") return std::max(v, 0.0);
  if (a == "LeakyRelu") return v < 0 ? v * p[0] : v;
  if (a == "Clip") return std::min(std::max(v, double(p[0])), double(p[1]));
  if (a == "Sigmoid") return 1.0 / (1.0 + std::exp(-v));
  if (a == "HardSigmoid") return std::min(std::max(p[0] * v + p[1], 0.0), 1.0);
  if (a == "HardSwish") return v * std::min(std::max(v + 3.0, 0.0), 6.0) / 6.0;
  if (a == "Tanh") return std::tanh(v);
  if (a == "SiLU") return v / (1.0 + std::exp(-v));
  ADD_FAILURE() << "unknown activation " << a;
  return v;
}

// Round half to even, then saturate to int8, on an exact double.
int64_t quantize_ref(double t) {
  double f = std::floor(t), frac = t - f;
  double r = frac > 0.5 ? f + 1 : frac < 0.5 ? f : (std::fmod(f, 2.0) == 0 ? f : f + 1);
  return int64_t(std::min(std::max(r, -128.0), 127.0));
}

// The inputs of one case and the float64 value v of every output element
// (after the activation) plus the magnitude of the terms summed into it.
struct Ref {
  Tensor x, w, b, z;
  float x_scale = 0.05f, z_scale = 0.1f, y_scale = 1.f;
  std::vector<float> w_scales;
  Dims y_dims;
  std::vector<double> v, mag;
  Attrs attrs;
};

Ref make_ref(const QCase& c, uint32_t seed) {
  Ref r;
  const int64_t n = c.x[0], ch = c.x[1], h = c.x[2], wd = c.x[3], cg = ch / c.group, mg = c.k / c.group;
  r.x = test::random_tensor(DataType::kInt8, c.x, seed, -128, 128);
  r.w = test::random_tensor(DataType::kInt8, {c.k, cg, c.kh, c.kw}, seed + 1, -127, 128);
  r.b = test::random_tensor(DataType::kFloat32, {c.k}, seed + 2, -2, 2);
  Tensor ws = test::random_tensor(DataType::kFloat32, {c.k}, seed + 3, 0.002, 0.02);
  r.w_scales.assign(ws.data<float>(), ws.data<float>() + c.k);
  const int64_t oh = (h + c.p[0] + c.p[2] - ((c.kh - 1) * c.d[0] + 1)) / c.s[0] + 1;
  const int64_t ow = (wd + c.p[1] + c.p[3] - ((c.kw - 1) * c.d[1] + 1)) / c.s[1] + 1;
  r.y_dims = {n, c.k, oh, ow};
  if (c.z == kZInt8) r.z = test::random_tensor(DataType::kInt8, r.y_dims, seed + 4, -128, 128);
  if (c.z == kZF32) r.z = test::random_tensor(DataType::kFloat32, r.y_dims, seed + 4, -3, 3);
  if (c.z == kZF16) r.z = test::random_tensor(DataType::kFloat16, r.y_dims, seed + 4, -3, 3);
  const auto xv = r.x.to_int64(), wv = r.w.to_int64();
  const auto bv = r.b.to_double();
  const std::vector<double> zv = c.z == kNoZ ? std::vector<double>() : r.z.to_double();
  for (int64_t i = 0; i < ir::numel_of(r.y_dims); ++i) {
    auto idx = test::unravel(i, r.y_dims);
    const int64_t b = idx[0], k = idx[1], g = k / mg;
    int64_t acc = 0;
    for (int64_t ci = 0; ci < cg; ++ci)
      for (int64_t a = 0; a < c.kh; ++a)
        for (int64_t e = 0; e < c.kw; ++e) {
          int64_t ih = idx[2] * c.s[0] - c.p[0] + a * c.d[0], iw = idx[3] * c.s[1] - c.p[1] + e * c.d[1];
          if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
          acc += xv[size_t(test::ravel({b, g * cg + ci, ih, iw}, c.x))] *
                 wv[size_t(test::ravel({k, ci, a, e}, r.w.dims()))];
        }
    const float m = r.x_scale * r.w_scales[size_t(k)];  // the contract's float product
    double pre = double(acc) * double(m), mag = std::fabs(pre);
    if (c.bias) pre += bv[size_t(k)], mag += std::fabs(bv[size_t(k)]);
    if (c.z != kNoZ) {
      double zt = c.z == kZInt8 ? double(r.z_scale) * zv[size_t(i)] : zv[size_t(i)];
      pre += zt, mag += std::fabs(zt);
    }
    r.v.push_back(act_ref(c.act, c.act_params, pre));
    r.mag.push_back(mag);
  }
  double ss = 0;
  for (double v : r.v) ss += v * v;
  r.y_scale = float(std::max(std::sqrt(ss / double(r.v.size())), 1e-3) / c.spread);
  r.attrs = {{"group", attr_i(c.group)}, {"strides", attr_ints(c.s)}, {"dilations", attr_ints(c.d)},
             {"pads", attr_ints(c.p)}, {"x_scale", attr_f(r.x_scale)}, {"w_scales", attr_floats(r.w_scales)},
             {"to", attr_i(int64_t(c.to))}};
  if (c.to == DataType::kInt8) r.attrs["y_scale"] = attr_f(r.y_scale);
  if (c.z == kZInt8) r.attrs["z_scale"] = attr_f(r.z_scale);
  if (!c.act.empty()) {
    r.attrs["activation"] = attr_s(c.act);
    r.attrs["activation_params"] = attr_floats(c.act_params);
  }
  return r;
}

Tensor run_case(const QCase& c, const Ref& r, std::string* tactic = nullptr) {
  return run_qconv(r.x, r.w, c.bias ? &r.b : nullptr, c.z == kNoZ ? nullptr : &r.z, r.attrs, tactic);
}

// Compares against the reference; returns how many int8 outputs were
// allowed one step off at a near-tie.
int expect_matches(const QCase& c, const Ref& r, const Tensor& got) {
  EXPECT_EQ(got.dtype(), c.to);
  EXPECT_EQ(got.dims(), r.y_dims);
  if (got.dims() != r.y_dims || got.dtype() != c.to) return 0;
  const auto gv = got.to_double();
  int ties = 0, failures = 0;
  for (size_t i = 0; i < gv.size() && failures < 5; ++i) {
    if (c.to == DataType::kInt8) {
      const double t = r.v[i] / double(r.y_scale);
      const int64_t want = quantize_ref(t), g = int64_t(gv[i]);
      if (g == want) continue;
      const bool near_tie = std::fabs(t - std::floor(t) - 0.5) <= 1e-3;
      if (near_tie && std::llabs(g - want) <= 1) {
        ++ties;
        continue;
      }
      ADD_FAILURE() << "element " << i << ": got " << g << ", want " << want << " (v / y_scale = " << t << ")";
    } else {
      const double tol = (c.to == DataType::kFloat32 ? 1e-5 : 1e-3) * std::max({1.0, std::fabs(r.v[i]), r.mag[i]});
      if (std::fabs(gv[i] - r.v[i]) <= tol) continue;
      ADD_FAILURE() << "element " << i << ": got " << gv[i] << ", want " << r.v[i];
    }
    ++failures;
  }
  return ties;
}

void check_case(const QCase& c, uint32_t seed, const char* want_tactic = nullptr) {
  SCOPED_TRACE(describe(c));
  Ref r = make_ref(c, seed);
  std::string tactic;
  Tensor got = run_case(c, r, &tactic);
  if (want_tactic) {
    EXPECT_EQ(tactic.rfind(want_tactic, 0), 0u) << tactic;
  }
  EXPECT_LE(expect_matches(c, r, got), std::max<int>(2, int(got.numel() / 500)));
}

// Shapes chosen to reach both tactics (dot: long reductions and >= 8
// channels per group; direct: the rest) and their edge cases.
TEST(QConvCpu, MatchesReferenceAcrossShapes) {
  uint32_t seed = 100;
  const char* dot = "cpu.qconv.dot";
  const char* direct = "cpu.qconv.direct";
  // Padding, odd position count, K not a multiple of 4.
  check_case(qcase({1, 3, 7, 9}, 9, 1, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}), seed += 10, dot);
  check_case(qcase({1, 3, 7, 9}, 5, 1, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}), seed += 10, direct);
  // Stride 2 with asymmetric pads.
  check_case(qcase({2, 8, 11, 10}, 8, 1, 3, 3, {2, 2}, {1, 1}, {0, 1, 1, 0}), seed += 10, dot);
  // Dilation, non-square kernel, stride on one axis.
  check_case(qcase({1, 6, 12, 13}, 10, 1, 2, 3, {1, 2}, {2, 3}, {2, 1, 0, 3}), seed += 10, dot);
  check_case(qcase({1, 6, 12, 13}, 7, 1, 2, 3, {1, 2}, {2, 3}, {2, 1, 0, 3}), seed += 10, direct);
  // 1x1, no bias: many channels (dot) and few (direct).
  check_case(qcase({1, 40, 6, 6}, 12, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, false), seed += 10, dot);
  check_case(qcase({2, 8, 5, 7}, 16, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, false), seed += 10, direct);
  // Grouped: 2 groups of 8 -> 16 channels (dot); 4 groups of 4 -> 3 channels (direct).
  check_case(qcase({2, 16, 9, 8}, 32, 2, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}), seed += 10, dot);
  check_case(qcase({2, 16, 9, 8}, 12, 4, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}), seed += 10, direct);
  // Depthwise (multiplier 1 and 2), stride 2, padding.
  check_case(qcase({2, 6, 10, 11}, 6, 6, 3, 3, {2, 2}, {1, 1}, {1, 1, 1, 1}), seed += 10, direct);
  check_case(qcase({1, 5, 9, 9}, 10, 5, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}), seed += 10, direct);
  // Depthwise with dilation and a 5x5 window larger than the padded border.
  check_case(qcase({1, 4, 9, 12}, 4, 4, 5, 5, {1, 2}, {2, 1}, {2, 3, 4, 1}), seed += 10, direct);
  // Direct on wide rows: 16- and 32-column interior blocks (the last one
  // overlapping), strided and dilated, several channels per group.
  check_case(qcase({1, 4, 6, 40}, 4, 2, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}), seed += 10, direct);
  check_case(qcase({1, 4, 7, 150}, 4, 1, 3, 3, {1, 2}, {1, 2}, {1, 2, 0, 1}), seed += 10, direct);
  check_case(qcase({1, 3, 5, 100}, 3, 3, 1, 5, {1, 1}, {1, 1}, {0, 2, 0, 2}), seed += 10, direct);
  check_case(qcase({1, 2, 5, 50}, 2, 1, 3, 3, {1, 2}, {1, 1}, {1, 1, 1, 1}), seed += 10, direct);
  // Large reduction (64 x 3 x 3) and few positions: channel blocks split over threads.
  check_case(qcase({1, 64, 5, 5}, 96, 1, 3, 3, {1, 1}, {1, 1}, {0, 0, 0, 0}), seed += 10, dot);
  // Many positions: several position chunks per image.
  check_case(qcase({1, 16, 40, 40}, 8, 1, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}), seed += 10, dot);
  // Heavy saturation.
  QCase sat = qcase({1, 8, 8, 8}, 8, 1, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1});
  sat.spread = 400;
  check_case(sat, seed += 10, dot);
}

TEST(QConvCpu, EveryActivationResidualAndOutputType) {
  const std::vector<std::pair<std::string, std::vector<float>>> acts = {
      {"", {}},          {"Relu", {}},     {"LeakyRelu", {0.1f}},           {"Clip", {-1.5f, 2.f}},
      {"Sigmoid", {}},   {"HardSigmoid", {0.2f, 0.5f}}, {"HardSwish", {}}, {"Tanh", {}}, {"SiLU", {}}};
  uint32_t seed = 300;
  for (DataType to : {DataType::kInt8, DataType::kFloat32, DataType::kFloat16})
    for (ZKind z : {kNoZ, kZInt8, kZF32, kZF16})
      for (const auto& a : acts) {
        if (to == DataType::kFloat16 && a.first != "" && a.first != "Relu") continue;  // fp16 path: spot checks
        QCase dense = with_epilogue(qcase({1, 6, 7, 6}, 8, 1, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}), z, a.first, a.second, to);
        check_case(dense, seed += 7, "cpu.qconv.dot");
        QCase dw = with_epilogue(qcase({1, 6, 7, 6}, 6, 6, 3, 3, {2, 1}, {1, 1}, {1, 0, 1, 1}), z, a.first, a.second, to);
        check_case(dw, seed += 7, "cpu.qconv.direct");
      }
}

TEST(QConvCpu, RandomShapes) {
  std::mt19937 rng(2024);
  auto pick = [&](int lo, int hi) { return int64_t(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  for (int t = 0; t < 40; ++t) {
    QCase c;
    c.group = pick(0, 3) == 0 ? pick(2, 4) : 1;
    const int64_t cg = pick(1, 9), mg = pick(1, 12);
    const bool dw = pick(0, 4) == 0;
    if (dw) c.group = pick(1, 6);  // one input channel per group
    c.x = {pick(1, 2), c.group * (dw ? 1 : cg), pick(6, 14), pick(6, pick(0, 3) ? 14 : 90)};
    c.k = c.group * mg;
    c.kh = pick(1, 3), c.kw = pick(1, 3);
    c.s = {pick(1, 2), pick(1, 2)};
    c.d = {pick(1, 2), pick(1, 2)};
    c.p = {pick(0, 2), pick(0, 2), pick(0, 2), pick(0, 2)};
    c.bias = pick(0, 1) == 1;
    c.z = ZKind(pick(0, 3));
    c.to = pick(0, 2) == 0 ? DataType::kFloat32 : DataType::kInt8;
    if (pick(0, 1)) c.act = "Relu";
    check_case(c, 1000 + uint32_t(t) * 11);
  }
}

TEST(QConvCpu, SameBytesForAnyThreadCount) {
  const QCase cases[] = {
      with_epilogue(qcase({2, 32, 13, 11}, 40, 1, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}), kZInt8, "SiLU", {}, DataType::kInt8),
      with_epilogue(qcase({1, 64, 4, 5}, 128, 2, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}), kZF32, "Tanh", {}, DataType::kFloat32),
      with_epilogue(qcase({2, 24, 15, 14}, 24, 24, 3, 3, {2, 2}, {1, 1}, {1, 1, 1, 1}), kZInt8, "HardSwish", {},
                    DataType::kInt8),
      with_epilogue(qcase({2, 8, 9, 80}, 8, 2, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}), kZF16, "Relu", {}, DataType::kFloat16),
  };
  uint32_t seed = 7000;
  for (const QCase& c : cases) {
    SCOPED_TRACE(describe(c));
    Ref r = make_ref(c, seed += 5);
    std::vector<Tensor> outs;
    for (int threads : {1, 2, 7}) {
      cpu::set_num_threads(threads);
      outs.push_back(run_case(c, r));
    }
    cpu::set_num_threads(0);
    expect_matches(c, r, outs[0]);
    for (size_t i = 1; i < outs.size(); ++i)
      EXPECT_EQ(std::memcmp(outs[0].raw(), outs[i].raw(), outs[0].nbytes()), 0) << "thread setting " << i;
  }
}

// x_scale = w_scale = 1 and y_scale = 2: v / y_scale = acc / 2 is exact, so
// every odd sum is a true .5 tie and must round to even (no tolerance here).
TEST(QConvCpu, ExactTiesRoundHalfToEven) {
  uint32_t seed = 800;
  for (int64_t group : {1, 4}) {
    SCOPED_TRACE("group " + std::to_string(group));
    const int64_t k = group == 1 ? 8 : 4;
    Tensor x = test::random_tensor(DataType::kInt8, {1, 4, 6, 7}, seed++, -6, 7);
    Tensor w = test::random_tensor(DataType::kInt8, {k, 4 / group, 3, 3}, seed++, -5, 6);
    Attrs a{{"group", attr_i(group)}, {"pads", attr_ints({1, 1, 1, 1})}, {"x_scale", attr_f(1.f)},
            {"w_scales", attr_floats(std::vector<float>(size_t(k), 1.f))}, {"y_scale", attr_f(2.f)},
            {"to", attr_i(int64_t(DataType::kInt8))}};
    Tensor got = run_qconv(x, w, nullptr, nullptr, a);
    Attrs f = a;
    f.erase("y_scale");
    f["to"] = attr_i(int64_t(DataType::kFloat32));
    Tensor sums = run_qconv(x, w, nullptr, nullptr, f);  // exact integer sums, checked against ConvInteger below
    int ties = 0;
    for (int64_t i = 0; i < got.numel(); ++i) {
      const double acc = sums.data<float>()[i];
      ties += std::fmod(std::fabs(acc), 2.0) == 1.0;
      ASSERT_EQ(int64_t(got.data<int8_t>()[i]), quantize_ref(acc / 2)) << "sum " << acc;
    }
    EXPECT_GT(ties, 20);
    auto want = test::run_op("ConvInteger", {test::in(x), test::in(w)}, {{"group", attr_i(group)}, {"pads", attr_ints({1, 1, 1, 1})}});
    EXPECT_EQ(sums.to_int64(), want[0].to_int64());
  }
}

// Unit scales, no bias, fp32 output: exactly ONNX ConvInteger's int32 sums
// (zero points 0), checked against kiln's ConvInteger kernel.
TEST(QConvCpu, UnitScalesMatchConvInteger) {
  struct C { Dims x; int64_t k, group, kh, kw; Dims s, d, p; };
  const C cases[] = {{{1, 8, 9, 7}, 6, 1, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}},
                     {{2, 6, 8, 8}, 6, 3, 3, 2, {2, 1}, {1, 2}, {0, 1, 1, 0}},
                     {{1, 5, 6, 6}, 5, 5, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}}};
  uint32_t seed = 900;
  for (const C& c : cases) {
    SCOPED_TRACE(shape_str(c.x));
    Tensor x = test::random_tensor(DataType::kInt8, c.x, seed++, -128, 128);
    Tensor w = test::random_tensor(DataType::kInt8, {c.k, c.x[1] / c.group, c.kh, c.kw}, seed++, -127, 128);
    Attrs win{{"group", attr_i(c.group)}, {"strides", attr_ints(c.s)}, {"dilations", attr_ints(c.d)},
              {"pads", attr_ints(c.p)}};
    auto want = test::run_op("ConvInteger", {test::in(x), test::in(w)}, win);
    Attrs q = win;
    q["x_scale"] = attr_f(1.f);
    q["w_scales"] = attr_floats(std::vector<float>(size_t(c.k), 1.f));
    q["to"] = attr_i(int64_t(DataType::kFloat32));
    Tensor got = run_qconv(x, w, nullptr, nullptr, q);
    ASSERT_EQ(got.dims(), want[0].dims());
    EXPECT_EQ(got.to_int64(), want[0].to_int64());
  }
}

TEST(QConvCpu, RejectsBadAttributesNamingTheNode) {
  Tensor x = test::random_tensor(DataType::kInt8, {1, 4, 6, 6}, 1, -128, 128);
  Tensor w = test::random_tensor(DataType::kInt8, {2, 4, 3, 3}, 2, -127, 128);
  Tensor b = test::random_tensor(DataType::kFloat32, {2}, 3);
  Tensor z8 = test::random_tensor(DataType::kInt8, {1, 2, 4, 4}, 4, -128, 128);
  Tensor zf = test::random_tensor(DataType::kFloat32, {1, 2, 4, 4}, 5);
  const float nan = std::nanf(""), inf = INFINITY;
  const Attrs good{{"x_scale", attr_f(0.1f)}, {"w_scales", attr_floats({0.01f, 0.02f})}, {"y_scale", attr_f(0.5f)},
                   {"to", attr_i(int64_t(DataType::kInt8))}};
  EXPECT_NO_THROW(run_qconv(x, w, &b, nullptr, good));
  auto fails = [&](ErrorCode want, const Attrs& a, const Tensor* z = nullptr, const Tensor* wt = nullptr,
                   const Tensor* bt = nullptr, const Tensor* xt = nullptr) {
    try {
      run_qconv(xt ? *xt : x, wt ? *wt : w, bt ? bt : &b, z, a);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), want) << e.what();
      EXPECT_NE(std::string(e.what()).find("QConv 'qc'"), std::string::npos) << e.what();
    }
  };
  auto with = [&](const std::string& k, ir::Attribute v) { Attrs a = good; a[k] = v; return a; };
  auto without = [&](const std::string& k) { Attrs a = good; a.erase(k); return a; };
  const ErrorCode bad = ErrorCode::kBadInput;
  fails(bad, without("y_scale"));                                  // int8 output needs y_scale
  fails(bad, with("w_scales", attr_floats({0.01f})));              // one per output channel
  fails(bad, with("w_scales", attr_floats({0.01f, nan})));
  fails(bad, with("w_scales", attr_floats({0.01f, 0.f})));
  fails(bad, with("x_scale", attr_f(nan)));
  fails(bad, with("x_scale", attr_f(-0.1f)));
  fails(bad, with("y_scale", attr_f(inf)));
  fails(bad, with("y_scale", attr_f(0.f)));
  fails(bad, with("x_scale", attr_i(1)));                          // wrong attribute type
  fails(bad, without("x_scale"));
  fails(bad, without("w_scales"));
  fails(bad, without("to"));
  fails(bad, with("to", attr_i(int64_t(DataType::kInt32))));
  Attrs f32 = with("to", attr_i(int64_t(DataType::kFloat32)));
  fails(bad, f32);                                                 // y_scale with a float output
  f32.erase("y_scale");
  EXPECT_NO_THROW(run_qconv(x, w, &b, &zf, f32));
  fails(bad, good, &z8);                                           // int8 residual needs z_scale
  fails(bad, with("z_scale", attr_f(nan)), &z8);
  fails(bad, with("z_scale", attr_f(0.5f)), &zf);                  // z_scale with a float residual
  fails(bad, with("z_scale", attr_f(0.5f)));                       // z_scale without a residual
  Tensor zbad = test::random_tensor(DataType::kInt8, {1, 2, 4, 5}, 6, -128, 128);
  fails(bad, with("z_scale", attr_f(0.5f)), &zbad);                // residual dims
  Tensor w128 = w.clone();
  w128.data<int8_t>()[3] = -128;
  fails(bad, good, nullptr, &w128);                                // weights are symmetric
  Tensor wrank = w.reshaped({2, 4, 9});
  fails(bad, good, nullptr, &wrank);
  Tensor b3 = test::random_tensor(DataType::kFloat32, {3}, 7);
  fails(bad, good, nullptr, nullptr, &b3);
  fails(bad, with("group", attr_i(3)));
  fails(bad, with("kernel_shape", attr_ints({2, 2})));
  fails(bad, with("pads", attr_ints({1, 1})));
  fails(ErrorCode::kUnsupported, with("activation", attr_s("Gelu")));
  Tensor xf = test::random_tensor(DataType::kFloat32, {1, 4, 6, 6}, 8);
  fails(ErrorCode::kUnsupported, good, nullptr, nullptr, nullptr, &xf);  // float input
}

// int8 MaxPool: max commutes with quantization, so int8 runs int8 (padding never wins).
TEST(Int8MaxPool, MatchesReference) {
  Tensor x = test::random_tensor(DataType::kInt8, {2, 3, 7, 8}, 11, -128, 128);
  auto y = test::run_op("MaxPool", {test::in(x)},
                        {{"kernel_shape", attr_ints({3, 3})}, {"strides", attr_ints({2, 2})},
                         {"pads", attr_ints({1, 1, 1, 1})}});
  ASSERT_EQ(y[0].dtype(), DataType::kInt8);
  ASSERT_EQ(y[0].dims(), (Dims{2, 3, 4, 4}));
  const auto xv = x.to_int64(), yv = y[0].to_int64();
  for (int64_t i = 0; i < y[0].numel(); ++i) {
    auto o = test::unravel(i, y[0].dims());
    int64_t best = -1000;
    for (int64_t a = 0; a < 3; ++a)
      for (int64_t e = 0; e < 3; ++e) {
        int64_t ih = o[2] * 2 - 1 + a, iw = o[3] * 2 - 1 + e;
        if (ih >= 0 && ih < 7 && iw >= 0 && iw < 8) best = std::max(best, xv[size_t(test::ravel({o[0], o[1], ih, iw}, x.dims()))]);
      }
    EXPECT_EQ(yv[size_t(i)], best) << "element " << i;
  }
}

}  // namespace
}  // namespace kiln
