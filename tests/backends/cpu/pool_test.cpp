// Pooling CPU kernels against float64 loops written here, plus cases copied
// from the ONNX backend node tests (expected values from the ONNX suite).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kiln/error.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using ir::Dims;
using ir::Tensor;
using test::attr_i;
using test::attr_ints;
using test::attr_s;

enum Kind { kMax, kAvg, kLp };

struct Pool {
  Dims k, s, d, pads;
  bool ceil = false, include_pad = false;
  int64_t p = 2;
  bool col_major = false;
};

// Reference: window o covers positions o*s - pb + t*d; positions outside
// [0, in) are padding (ignored by max/lp; counted by avg only with
// count_include_pad, and only inside [-pb, in + pe)).
Tensor ref_pool(Kind kind, const Tensor& x, const Pool& c, Tensor* indices = nullptr) {
  const Dims& xd = x.dims();
  size_t r = xd.size() - 2;
  Dims yd{xd[0], xd[1]};
  for (size_t i = 0; i < r; ++i) {
    int64_t span = xd[2 + i] + c.pads[i] + c.pads[r + i] - ((c.k[i] - 1) * c.d[i] + 1);
    int64_t o = (c.ceil ? (span + c.s[i] - 1) / c.s[i] : span / c.s[i]) + 1;
    if (c.ceil && (o - 1) * c.s[i] >= xd[2 + i] + c.pads[i]) --o;
    yd.push_back(o);
  }
  auto xv = x.to_double();
  int64_t in_sz = 1, out_sz = 1;
  for (size_t i = 0; i < r; ++i) in_sz *= xd[2 + i], out_sz *= yd[2 + i];
  std::vector<float> y;
  std::vector<int64_t> idx;
  for (int64_t pl = 0; pl < xd[0] * xd[1]; ++pl)
    for (int64_t o = 0; o < out_sz; ++o) {
      Dims oc(r);  // output coordinate
      for (int64_t rem = o, i = int64_t(r) - 1; i >= 0; --i) oc[size_t(i)] = rem % yd[2 + size_t(i)], rem /= yd[2 + size_t(i)];
      int64_t taps = 1;
      for (size_t i = 0; i < r; ++i) taps *= c.k[i];
      double best = -std::numeric_limits<double>::infinity(), sum = 0;
      int64_t valid = 0, padded = 0, arg = -1;
      for (int64_t t = 0; t < taps; ++t) {
        Dims pos(r);
        bool inside = true, in_pad_extent = true;
        for (int64_t rem = t, i = int64_t(r) - 1; i >= 0; --i) {
          size_t u = size_t(i);
          int64_t kt = rem % c.k[u];
          rem /= c.k[u];
          pos[u] = oc[u] * c.s[u] - c.pads[u] + kt * c.d[u];
          inside = inside && pos[u] >= 0 && pos[u] < xd[2 + u];
          in_pad_extent = in_pad_extent && pos[u] >= -c.pads[u] && pos[u] < xd[2 + u] + c.pads[r + u];
        }
        padded += in_pad_extent;
        if (!inside) continue;
        int64_t flat = 0, flat_cm = 0, mul = 1;
        for (size_t i = 0; i < r; ++i) flat = flat * xd[2 + i] + pos[i];
        for (size_t i = 0; i < r; ++i) flat_cm += pos[i] * mul, mul *= xd[2 + i];
        double v = xv[size_t(pl * in_sz + flat)];
        ++valid;
        if (v > best) best = v, arg = pl * in_sz + (c.col_major ? flat_cm : flat);
        sum += kind == kLp ? std::pow(std::fabs(v), double(c.p)) : v;
      }
      if (kind == kMax) y.push_back(float(best)), idx.push_back(arg);
      else if (kind == kAvg) y.push_back(float(sum / double(c.include_pad ? padded : valid)));
      else y.push_back(float(std::pow(sum, 1.0 / double(c.p))));
    }
  if (indices) {
    *indices = Tensor(DataType::kInt64, yd);
    std::copy(idx.begin(), idx.end(), indices->data<int64_t>());
  }
  return Tensor::from_float(y, yd);
}

std::map<std::string, ir::Attribute> attrs_of(Kind kind, const Pool& c) {
  std::map<std::string, ir::Attribute> a{{"kernel_shape", attr_ints(c.k)}, {"strides", attr_ints(c.s)},
                                         {"dilations", attr_ints(c.d)}, {"pads", attr_ints(c.pads)},
                                         {"ceil_mode", attr_i(c.ceil)}};
  if (kind == kAvg) a["count_include_pad"] = attr_i(c.include_pad);
  if (kind == kLp) a["p"] = attr_i(c.p);
  if (kind == kMax) a["storage_order"] = attr_i(c.col_major);
  return a;
}

const char* op_of(Kind k) { return k == kMax ? "MaxPool" : k == kAvg ? "AveragePool" : "LpPool"; }

TEST(PoolCpu, MatchesReferenceAcrossAttributeSpace) {
  struct C { const char* name; Dims x; Pool pool; };
  const C cases[] = {
      {"2x2 s2", {2, 3, 8, 9}, {{2, 2}, {2, 2}, {1, 1}, {0, 0, 0, 0}}},
      {"3x3 s2 pad1 (resnet)", {1, 4, 11, 12}, {{3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}}},
      {"asym pads", {1, 2, 7, 6}, {{3, 2}, {1, 2}, {1, 1}, {2, 0, 0, 1}}},
      {"ceil", {1, 2, 7, 8}, {{3, 3}, {2, 3}, {1, 1}, {0, 0, 0, 0}, true}},
      {"ceil + pads + include_pad", {1, 2, 6, 7}, {{3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 0}, true, true}},
      {"ceil last window on pad", {1, 3, 2, 2}, {{3, 3}, {3, 3}, {1, 1}, {1, 1, 1, 1}, true, true}},
      {"dilations", {1, 2, 9, 10}, {{2, 3}, {1, 2}, {2, 2}, {1, 0, 1, 2}}},
      {"dilations ceil include_pad", {1, 1, 10, 10}, {{3, 3}, {3, 3}, {2, 2}, {1, 1, 1, 1}, true, true}},
      {"1d", {2, 3, 17}, {{4}, {3}, {1}, {1, 2}, false, true}},
      {"3d", {1, 2, 6, 7, 5}, {{2, 3, 2}, {2, 1, 2}, {1, 1, 2}, {0, 1, 1, 1, 1, 0}, false, true}},
      {"3d dilated ceil", {1, 1, 12, 12, 12}, {{3, 3, 3}, {3, 3, 3}, {2, 2, 2}, {0, 0, 0, 0, 0, 0}, true, false}},
  };
  uint32_t seed = 1;
  for (const C& c : cases)
    for (Kind kind : {kMax, kAvg, kLp}) {
      SCOPED_TRACE(std::string(c.name) + " " + op_of(kind));
      Pool pool = c.pool;
      pool.p = kind == kLp ? (seed % 2 ? 3 : 2) : 2;
      Tensor x = test::random_tensor(DataType::kFloat32, c.x, seed++);
      Tensor want = ref_pool(kind, x, pool);
      auto got = test::run_op(op_of(kind), {test::in(x)}, attrs_of(kind, pool));
      EXPECT_LT(test::max_rel_error(got[0], want), 1e-5);
    }
}

TEST(PoolCpu, MaxPoolIndicesBothStorageOrders) {
  uint32_t seed = 40;
  for (bool col : {false, true})
    for (Dims x_dims : {Dims{2, 3, 7, 6}, Dims{1, 2, 5, 4, 6}}) {
      SCOPED_TRACE(shape_str(x_dims) + (col ? " column-major" : " row-major"));
      size_t r = x_dims.size() - 2;
      Pool pool{Dims(r, 3), Dims(r, 2), Dims(r, 1), Dims(2 * r, 1)};
      pool.col_major = col;
      Tensor x = test::random_tensor(DataType::kFloat32, x_dims, seed++);
      Tensor want_idx;
      Tensor want = ref_pool(kMax, x, pool, &want_idx);
      auto got = test::run_op("MaxPool", {test::in(x)}, attrs_of(kMax, pool), 2);
      EXPECT_EQ(test::max_rel_error(got[0], want), 0.0);
      EXPECT_EQ(got[1].to_int64(), want_idx.to_int64());
    }
}

TEST(PoolCpu, AutoPadSame) {
  // SAME_UPPER puts the odd pad cell at the end, SAME_LOWER at the start.
  Tensor x = test::random_tensor(DataType::kFloat32, {1, 2, 6, 7}, 9);
  for (const char* mode : {"SAME_UPPER", "SAME_LOWER"})
    for (Kind kind : {kMax, kAvg}) {
      SCOPED_TRACE(std::string(mode) + " " + op_of(kind));
      bool upper = std::string(mode) == "SAME_UPPER";
      // in 6, k 3, s 2 -> out 3, total 1; in 7 -> out 4, total 2.
      Pool pool{{3, 3}, {2, 2}, {1, 1}, upper ? Dims{0, 1, 1, 1} : Dims{1, 1, 0, 1}};
      Tensor want = ref_pool(kind, x, pool);
      auto got = test::run_op(op_of(kind), {test::in(x)},
                              {{"kernel_shape", attr_ints({3, 3})}, {"strides", attr_ints({2, 2})}, {"auto_pad", attr_s(mode)}});
      EXPECT_LT(test::max_rel_error(got[0], want), 1e-5);
    }
}

TEST(PoolCpu, OnnxNodeTestValues) {
  std::vector<float> ramp(16);
  for (int i = 0; i < 16; ++i) ramp[size_t(i)] = float(i + 1);
  Tensor x4 = Tensor::from_float(ramp, {1, 1, 4, 4});
  // test_maxpool_2d_ceil
  auto y = test::run_op("MaxPool", {test::in(x4)},
                        {{"kernel_shape", attr_ints({3, 3})}, {"strides", attr_ints({2, 2})}, {"ceil_mode", attr_i(1)}});
  EXPECT_EQ(test::max_rel_error(y[0], Tensor::from_float({11, 12, 15, 16}, {1, 1, 2, 2})), 0.0);
  // test_averagepool_2d_dilations
  y = test::run_op("AveragePool", {test::in(x4)},
                   {{"kernel_shape", attr_ints({2, 2})}, {"dilations", attr_ints({2, 2})}, {"ceil_mode", attr_i(1)}});
  EXPECT_EQ(test::max_rel_error(y[0], Tensor::from_float({6, 7, 10, 11}, {1, 1, 2, 2})), 0.0);
  // test_averagepool_2d_precomputed_pads_count_include_pad (first row)
  std::vector<float> r25(25);
  for (int i = 0; i < 25; ++i) r25[size_t(i)] = float(i + 1);
  y = test::run_op("AveragePool", {test::in(Tensor::from_float(r25, {1, 1, 5, 5}))},
                   {{"kernel_shape", attr_ints({5, 5})}, {"pads", attr_ints({2, 2, 2, 2})}, {"count_include_pad", attr_i(1)}});
  const float row0[] = {2.52f, 3.6f, 4.8f, 4.08f, 3.24f};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(y[0].data<float>()[i], row0[i], 1e-5);
  // test_maxpool_with_argmax_2d_precomputed_strides (storage_order = 1)
  y = test::run_op("MaxPool", {test::in(Tensor::from_float(r25, {1, 1, 5, 5}))},
                   {{"kernel_shape", attr_ints({2, 2})}, {"strides", attr_ints({2, 2})}, {"storage_order", attr_i(1)}}, 2);
  EXPECT_EQ(test::max_rel_error(y[0], Tensor::from_float({7, 9, 17, 19}, {1, 1, 2, 2})), 0.0);
  EXPECT_EQ(y[1].to_int64(), (std::vector<int64_t>{6, 16, 8, 18}));
}

TEST(PoolCpu, MaxPoolUint8) {
  Tensor x = test::random_tensor(DataType::kUInt8, {1, 2, 5, 5}, 3, 0, 255);
  Pool pool{{5, 5}, {1, 1}, {1, 1}, {2, 2, 2, 2}};
  Tensor want = ref_pool(kMax, x, pool);
  auto got = test::run_op("MaxPool", {test::in(x)}, attrs_of(kMax, pool));
  ASSERT_EQ(got[0].dtype(), DataType::kUInt8);
  EXPECT_EQ(got[0].to_double(), want.to_double());
}

TEST(PoolCpu, GlobalPools) {
  uint32_t seed = 70;
  for (Dims d : {Dims{2, 3, 5, 6}, Dims{1, 4, 9}, Dims{1, 2, 3, 4, 5}}) {
    SCOPED_TRACE(shape_str(d));
    Tensor x = test::random_tensor(DataType::kFloat32, d, seed++);
    auto xv = x.to_double();
    int64_t planes = d[0] * d[1], sz = x.numel() / planes;
    std::vector<float> mx, av, lp;
    for (int64_t p = 0; p < planes; ++p) {
      double m = -1e300, s = 0, q = 0;
      for (int64_t i = 0; i < sz; ++i) {
        double v = xv[size_t(p * sz + i)];
        m = std::max(m, v), s += v, q += std::pow(std::fabs(v), 3);
      }
      mx.push_back(float(m)), av.push_back(float(s / double(sz))), lp.push_back(float(std::cbrt(q)));
    }
    Dims od(d.size(), 1);
    od[0] = d[0], od[1] = d[1];
    EXPECT_EQ(test::max_rel_error(test::run_op("GlobalMaxPool", {test::in(x)})[0], Tensor::from_float(mx, od)), 0.0);
    EXPECT_LT(test::max_rel_error(test::run_op("GlobalAveragePool", {test::in(x)})[0], Tensor::from_float(av, od)), 1e-6);
    EXPECT_LT(test::max_rel_error(test::run_op("GlobalLpPool", {test::in(x)}, {{"p", attr_i(3)}})[0],
                                  Tensor::from_float(lp, od)), 1e-5);
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

TEST(PoolCpu, RejectsBadAttributes) {
  Tensor x(DataType::kFloat32, {1, 1, 4, 4});
  auto run = [&](const char* op, std::map<std::string, ir::Attribute> a) {
    return error_of([&] { test::run_op(op, {test::in(x)}, a); });
  };
  EXPECT_EQ(run("MaxPool", {}), ErrorCode::kBadInput);  // kernel_shape required
  EXPECT_EQ(run("MaxPool", {{"kernel_shape", attr_ints({3})}}), ErrorCode::kBadInput);
  EXPECT_EQ(run("MaxPool", {{"kernel_shape", attr_ints({5, 5})}}), ErrorCode::kBadInput);
  EXPECT_EQ(run("AveragePool", {{"kernel_shape", attr_ints({2, 2})}, {"pads", attr_ints({2, 2, 2, 2})}}), ErrorCode::kBadInput);
  EXPECT_EQ(run("LpPool", {{"kernel_shape", attr_ints({2, 2})}, {"p", attr_i(0)}}), ErrorCode::kBadInput);
  Tensor xi(DataType::kInt32, {1, 1, 4, 4});
  EXPECT_EQ(error_of([&] { test::run_op("AveragePool", {test::in(xi)}, {{"kernel_shape", attr_ints({2, 2})}}); }),
            ErrorCode::kUnsupported);
}

}  // namespace
}  // namespace kiln
