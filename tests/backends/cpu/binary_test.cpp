// Broadcasting multi-input kernels against float64 / exact integer
// references computed here with explicit numpy-style index mapping.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "kiln/error.h"
#include "support/op_test.h"

using namespace kiln;
using namespace kiln::test;
using ir::Dims;
using ir::Tensor;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Tensor make(DataType dt, ir::Dims dims, const std::vector<double>& v) {
  return test::tensor_of(dt, std::move(dims), v);
}

Dims bcast(const Dims& a, const Dims& b) {
  size_t r = std::max(a.size(), b.size());
  Dims o(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    o[i] = da == 1 ? db : da;
  }
  return o;
}

// Flat index into a tensor of dims `d` for output element `flat` of `out`.
int64_t src_index(const Dims& d, const Dims& out, int64_t flat) {
  int64_t idx = 0, stride = 1;
  for (size_t j = 0; j < out.size(); ++j) {
    size_t ax = out.size() - 1 - j;
    int64_t coord = flat % out[ax];
    flat /= out[ax];
    if (j < d.size()) {
      int64_t dim = d[d.size() - 1 - j];
      idx += (dim == 1 ? 0 : coord) * stride;
      stride *= dim;
    }
  }
  return idx;
}

// Broadcast reference over any number of inputs, in float64.
Tensor reference(const std::vector<Tensor>& ins, DataType out_dt,
                 const std::function<double(const std::vector<double>&)>& f) {
  Dims out;
  for (auto& t : ins) out = bcast(out, t.dims());
  std::vector<std::vector<double>> vals;
  for (auto& t : ins) vals.push_back(t.to_double());
  int64_t n = ir::numel_of(out);
  std::vector<double> res(static_cast<size_t>(n));
  std::vector<double> args(ins.size());
  for (int64_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < ins.size(); ++k) args[k] = vals[k][size_t(src_index(ins[k].dims(), out, i))];
    res[size_t(i)] = f(args);
  }
  return make(out_dt, out, res);
}

struct Pattern { Dims a, b; const char* kind; };
std::vector<Pattern> patterns() {
  return {
      {{2, 3, 4, 5}, {2, 3, 4, 5}, "same_shape"},
      {{2, 3, 4, 5}, {}, "scalar"},
      {{}, {2, 3, 4, 5}, "scalar"},
      {{2, 3, 4, 5}, {5}, "broadcast"},           // row
      {{2, 3, 4, 5}, {2, 3, 4, 1}, "channel"},    // column
      {{2, 3, 4, 5}, {1, 3, 1, 1}, "channel"},    // middle axis (per-channel NCHW)
      {{2, 1, 4, 1}, {1, 3, 1, 5}, "broadcast"},  // both sides
      {{}, {}, "scalar"},
      {{0, 3}, {3}, "broadcast"},
      {{2, 16, 48, 48}, {1, 16, 1, 1}, "channel"},  // large: threaded
      {{3, 70000}, {3, 70000}, "same_shape"},
  };
}

}  // namespace

TEST(BinaryKernels, FloatArithmeticBroadcasts) {
  struct Op { const char* name; std::function<double(double, double)> f; double lo, hi; };
  std::vector<Op> ops = {
      {"Add", [](double a, double b) { return a + b; }, -3, 3},
      {"Sub", [](double a, double b) { return a - b; }, -3, 3},
      {"Mul", [](double a, double b) { return a * b; }, -3, 3},
      {"Div", [](double a, double b) { return a / b; }, 0.5, 3},
      {"Max", [](double a, double b) { return std::max(a, b); }, -3, 3},
      {"Min", [](double a, double b) { return std::min(a, b); }, -3, 3},
      {"Pow", [](double a, double b) { return std::pow(a, b); }, 0.1, 3},
      {"Sum", [](double a, double b) { return a + b; }, -3, 3},
      {"Mean", [](double a, double b) { return (a + b) / 2; }, -3, 3},
  };
  uint32_t seed = 10;
  for (const Op& op : ops)
    for (const Pattern& p : patterns()) {
      Tensor a = random_tensor(DataType::kFloat32, p.a, seed++, op.lo, op.hi);
      Tensor b = random_tensor(DataType::kFloat32, p.b, seed++, op.lo, op.hi);
      std::string tactic;
      Tensor got = run_op(op.name, {in(a), in(b)}, {}, 1, &tactic)[0];
      Tensor want = reference({a, b}, DataType::kFloat32, [&](auto& v) { return op.f(v[0], v[1]); });
      EXPECT_LT(max_rel_error(got, want), 1e-6) << op.name << " " << shape_str(p.a) << " " << shape_str(p.b);
      if (std::string(op.name) != "Pow" && ir::numel_of(want.dims()) > 0) {
        EXPECT_EQ(tactic, std::string("cpu.eltwise.") + p.kind) << op.name << " " << shape_str(p.a) << shape_str(p.b);
      }
    }
}

TEST(BinaryKernels, ModAndPReluAndFp16) {
  Tensor a = random_tensor(DataType::kFloat32, {3, 4, 5}, 1, -10, 10);
  Tensor b = random_tensor(DataType::kFloat32, {4, 1}, 2, 0.5, 3);
  Tensor m = run_op("Mod", {in(a), in(b)}, {{"fmod", attr_i(1)}})[0];
  EXPECT_LT(max_rel_error(m, reference({a, b}, DataType::kFloat32, [](auto& v) { return std::fmod(v[0], v[1]); })), 1e-6);
  Tensor slope = random_tensor(DataType::kFloat32, {4, 1}, 3, 0, 1);
  Tensor pr = run_op("PRelu", {in(a), in(slope)})[0];
  EXPECT_LT(max_rel_error(pr, reference({a, slope}, DataType::kFloat32,
                                        [](auto& v) { return v[0] < 0 ? v[0] * v[1] : v[0]; })), 1e-6);
  // fp16: computed in fp32 from the fp16 inputs, rounded once.
  Tensor ha = random_tensor(DataType::kFloat16, {2, 3, 40}, 4), hb = random_tensor(DataType::kFloat16, {3, 1}, 5);
  Tensor hs = run_op("Mul", {in(ha), in(hb)})[0];
  ASSERT_EQ(hs.dtype(), DataType::kFloat16);
  Tensor want = reference({ha, hb}, DataType::kFloat32, [](auto& v) { return v[0] * v[1]; });
  for (int64_t i = 0; i < hs.numel(); ++i)
    ASSERT_EQ(hs.data<uint16_t>()[i], float_to_half(want.data<float>()[i])) << i;
}

TEST(BinaryKernels, IntegerArithmeticFollowsOnnx) {
  // Div truncates toward zero (C cast of the true quotient, as the ONNX
  // reference computes it); Mod takes the divisor's sign, fmod=1 the dividend's.
  std::vector<double> x = {-7, 7, -7, 7, -4, 5, 0, -9};
  std::vector<double> y = {2, -2, -2, 2, 3, 8, 3, 4};
  for (DataType dt : {DataType::kInt64, DataType::kInt32, DataType::kInt8}) {
    Tensor a = make(dt, {8}, x), b = make(dt, {8}, y);
    Tensor d = run_op("Div", {in(a), in(b)})[0];
    Tensor m = run_op("Mod", {in(a), in(b)})[0];
    Tensor f = run_op("Mod", {in(a), in(b)}, {{"fmod", attr_i(1)}})[0];
    auto dv = d.to_int64(), mv = m.to_int64(), fv = f.to_int64();
    for (size_t i = 0; i < x.size(); ++i) {
      int64_t p = int64_t(x[i]), q = int64_t(y[i]);
      EXPECT_EQ(dv[i], p / q) << dtype_name(dt) << " " << p << "/" << q;
      int64_t r = p % q;
      EXPECT_EQ(fv[i], r);
      EXPECT_EQ(mv[i], (r != 0 && ((r < 0) != (q < 0))) ? r + q : r) << p << " mod " << q;
    }
  }
  // Wrapping and the division edge cases that would trap in C.
  const int64_t mn = std::numeric_limits<int64_t>::min(), mx = std::numeric_limits<int64_t>::max();
  Tensor a = Tensor::from_int64({mx, mn, 5, mn}, {4}), b = Tensor::from_int64({1, -1, 0, -1}, {4});
  EXPECT_EQ(run_op("Add", {in(a), in(b)})[0].to_int64()[0], mn);
  auto dv = run_op("Div", {in(a), in(b)})[0].to_int64();
  EXPECT_EQ(dv[1], mn);  // INT64_MIN / -1 wraps
  EXPECT_EQ(dv[2], 0);   // x / 0 gives 0 instead of trapping
  EXPECT_EQ(run_op("Mod", {in(a), in(b)})[0].to_int64()[3], 0);
  // uint8 wraps modulo 256.
  Tensor u = make(DataType::kUInt8, {2}, {250, 3}), v = make(DataType::kUInt8, {2}, {10, 5});
  auto s = run_op("Add", {in(u), in(v)})[0].to_int64(), d8 = run_op("Sub", {in(u), in(v)})[0].to_int64();
  EXPECT_EQ(s[0], 4);
  EXPECT_EQ(d8[1], 254);
  // Random int32 broadcast against an exact reference.
  Tensor ra = random_tensor(DataType::kInt32, {3, 1, 5}, 8, -1000, 1000);
  Tensor rb = random_tensor(DataType::kInt32, {4, 1}, 9, 1, 50);
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Max", "Min"}) {
    Tensor got = run_op(op, {in(ra), in(rb)})[0];
    std::string o = op;
    Tensor want = reference({ra, rb}, DataType::kInt32, [&](auto& v) {
      int64_t p = int64_t(v[0]), q = int64_t(v[1]);
      if (o == "Add") return double(p + q);
      if (o == "Sub") return double(p - q);
      if (o == "Mul") return double(p * q);
      if (o == "Div") return double(p / q);
      if (o == "Max") return double(std::max(p, q));
      return double(std::min(p, q));
    });
    EXPECT_EQ(got.to_int64(), want.to_int64()) << op;
  }
}

TEST(BinaryKernels, PowTypes) {
  Tensor f = make(DataType::kFloat32, {3}, {1, 2, 3});
  Tensor i32 = make(DataType::kInt32, {3}, {4, 5, 6}), i64 = make(DataType::kInt64, {3}, {4, 5, 6});
  Tensor fe = make(DataType::kFloat32, {3}, {4, 5, 6});
  for (const Tensor* e : {&i32, &i64}) {
    Tensor y = run_op("Pow", {in(f), in(*e)})[0];
    ASSERT_EQ(y.dtype(), DataType::kFloat32);
    EXPECT_EQ(y.to_double(), (std::vector<double>{1, 32, 729}));
  }
  Tensor yi = run_op("Pow", {in(make(DataType::kInt32, {3}, {1, 2, 3})), in(fe)})[0];
  ASSERT_EQ(yi.dtype(), DataType::kInt32);
  EXPECT_EQ(yi.to_int64(), (std::vector<int64_t>{1, 32, 729}));
  Tensor yl = run_op("Pow", {in(make(DataType::kInt64, {4}, {1, 2, 3, -3})), in(make(DataType::kInt64, {4}, {4, 40, 6, 3}))})[0];
  EXPECT_EQ(yl.to_int64(), (std::vector<int64_t>{1, int64_t(1) << 40, 729, -27}));
  // Scalar exponent fast paths against pow().
  Tensor x = random_tensor(DataType::kFloat32, {1000}, 3, 0, 4);
  for (double e : {2.0, 1.0, 0.5, 3.0, -1.5}) {
    Tensor y = run_op("Pow", {in(x), in(make(DataType::kFloat32, {}, {e}))})[0];
    Tensor want = reference({x}, DataType::kFloat32, [e](auto& v) { return std::pow(v[0], e); });
    EXPECT_LT(max_rel_error(y, want), 1e-6) << e;
  }
}

TEST(BinaryKernels, ComparisonsAndLogic) {
  Tensor a = random_tensor(DataType::kFloat32, {2, 3, 4}, 1, -2, 2);
  Tensor b = random_tensor(DataType::kFloat32, {3, 1}, 2, -2, 2);
  a.data<float>()[5] = float(kNaN);
  b.data<float>()[1] = a.data<float>()[7];  // force some equality
  struct { const char* op; std::function<bool(double, double)> f; } cmp[] = {
      {"Equal", [](double p, double q) { return p == q; }},
      {"Less", [](double p, double q) { return p < q; }},
      {"Greater", [](double p, double q) { return p > q; }},
      {"LessOrEqual", [](double p, double q) { return p <= q; }},
      {"GreaterOrEqual", [](double p, double q) { return p >= q; }},
  };
  for (auto& c : cmp) {
    Tensor got = run_op(c.op, {in(a), in(b)})[0];
    ASSERT_EQ(got.dtype(), DataType::kBool);
    Tensor want = reference({a, b}, DataType::kBool, [&](auto& v) { return double(c.f(v[0], v[1])); });
    EXPECT_EQ(got.to_int64(), want.to_int64()) << c.op;
    Tensor ai = random_tensor(DataType::kInt64, {5, 1}, 3, -3, 3), bi = random_tensor(DataType::kInt64, {4}, 4, -3, 3);
    Tensor wi = reference({ai, bi}, DataType::kBool, [&](auto& v) { return double(c.f(v[0], v[1])); });
    EXPECT_EQ(run_op(c.op, {in(ai), in(bi)})[0].to_int64(), wi.to_int64()) << c.op << " int64";
  }
  Tensor p = make(DataType::kBool, {1, 4, 1, 2}, {1, 0, 1, 1, 0, 0, 1, 0});
  Tensor q = make(DataType::kBool, {3, 1, 2, 2}, {1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1});
  struct { const char* op; std::function<bool(bool, bool)> f; } logic[] = {
      {"And", [](bool s, bool t) { return s && t; }},
      {"Or", [](bool s, bool t) { return s || t; }},
      {"Xor", [](bool s, bool t) { return s != t; }},
      {"Equal", [](bool s, bool t) { return s == t; }},
  };
  for (auto& l : logic) {
    Tensor want = reference({p, q}, DataType::kBool, [&](auto& v) { return double(l.f(v[0] != 0, v[1] != 0)); });
    EXPECT_EQ(run_op(l.op, {in(p), in(q)})[0].to_int64(), want.to_int64()) << l.op;
  }
  Tensor ia = random_tensor(DataType::kInt32, {3, 1, 4}, 5, -1000, 1000), ib = random_tensor(DataType::kInt32, {5, 1}, 6, -1000, 1000);
  struct { const char* op; std::function<int64_t(int64_t, int64_t)> f; } bits[] = {
      {"BitwiseAnd", [](int64_t s, int64_t t) { return s & t; }},
      {"BitwiseOr", [](int64_t s, int64_t t) { return s | t; }},
      {"BitwiseXor", [](int64_t s, int64_t t) { return s ^ t; }},
  };
  for (auto& bo : bits) {
    Tensor want = reference({ia, ib}, DataType::kInt32, [&](auto& v) { return double(bo.f(int64_t(v[0]), int64_t(v[1]))); });
    EXPECT_EQ(run_op(bo.op, {in(ia), in(ib)})[0].to_int64(), want.to_int64()) << bo.op;
  }
  EXPECT_THROW(run_op("BitwiseAnd", {in(a), in(a)}), Error);  // floats are not bitwise types
  Tensor u = make(DataType::kUInt8, {4}, {16, 4, 1, 255}), s = make(DataType::kUInt8, {4}, {1, 2, 9, 4});
  EXPECT_EQ(run_op("BitShift", {in(u), in(s)}, {{"direction", attr_s("LEFT")}})[0].to_int64(),
            (std::vector<int64_t>{32, 16, 0, 240}));
  EXPECT_EQ(run_op("BitShift", {in(u), in(s)}, {{"direction", attr_s("RIGHT")}})[0].to_int64(),
            (std::vector<int64_t>{8, 1, 0, 15}));
}

TEST(BinaryKernels, WhereBroadcastsThreeWays) {
  Tensor c = random_tensor(DataType::kBool, {4, 1, 6}, 1);
  for (DataType dt : {DataType::kFloat32, DataType::kInt64, DataType::kUInt8, DataType::kFloat16}) {
    for (auto shapes : std::vector<std::pair<Dims, Dims>>{{{3, 1}, {6}}, {{4, 3, 6}, {}}, {{}, {4, 3, 6}}, {{1}, {1, 1}}}) {
      Tensor x = random_tensor(dt, shapes.first, 2, 0, 100), y = random_tensor(dt, shapes.second, 3, 0, 100);
      Tensor got = run_op("Where", {in(c), in(x), in(y)})[0];
      Tensor want = reference({c, x, y}, dt, [](auto& v) { return v[0] != 0 ? v[1] : v[2]; });
      EXPECT_EQ(max_rel_error(got, want), 0.0) << dtype_name(dt) << shape_str(shapes.first) << shape_str(shapes.second);
    }
  }
}

TEST(BinaryKernels, VariadicOps) {
  Tensor a = random_tensor(DataType::kFloat32, {3, 1}, 1, -5, 5);
  Tensor b = random_tensor(DataType::kFloat32, {4}, 2, -5, 5);
  Tensor c = random_tensor(DataType::kFloat32, {2, 1, 1}, 3, -5, 5);
  struct { const char* op; std::function<double(const std::vector<double>&)> f; } ops[] = {
      {"Sum", [](auto& v) { return v[0] + v[1] + v[2]; }},
      {"Mean", [](auto& v) { return (v[0] + v[1] + v[2]) / 3; }},
      {"Max", [](auto& v) { return std::max({v[0], v[1], v[2]}); }},
      {"Min", [](auto& v) { return std::min({v[0], v[1], v[2]}); }},
  };
  for (auto& o : ops) {
    Tensor got = run_op(o.op, {in(a), in(b), in(c)})[0];
    EXPECT_EQ(got.dims(), (Dims{2, 3, 4}));
    EXPECT_LT(max_rel_error(got, reference({a, b, c}, DataType::kFloat32, o.f)), 1e-6) << o.op;
    EXPECT_EQ(max_rel_error(run_op(o.op, {in(b)})[0], b), 0.0) << o.op << " one input";
  }
  // Max/Min propagate NaN like numpy maximum/minimum, from either side.
  Tensor n1 = make(DataType::kFloat32, {2}, {kNaN, 1}), n2 = make(DataType::kFloat32, {2}, {1, kNaN});
  for (const char* op : {"Max", "Min"}) {
    Tensor r = run_op(op, {in(n1), in(n2)})[0];
    EXPECT_TRUE(std::isnan(r.data<float>()[0]) && std::isnan(r.data<float>()[1])) << op;
  }
}

TEST(BinaryKernels, RejectsBadInputs) {
  Tensor f = random_tensor(DataType::kFloat32, {3, 4}, 1);
  Tensor i = random_tensor(DataType::kInt32, {3, 4}, 2);
  auto code_of = [](const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'node'"), std::string::npos) << e.what();
      return e.code();
    }
    return ErrorCode::kInternal;
  };
  EXPECT_EQ(code_of([&] { run_op("Add", {in(f), in(i)}); }), ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("Add", {in(f), in(random_tensor(DataType::kFloat32, {3}, 3))}); }), ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("PRelu", {in(random_tensor(DataType::kFloat32, {4}, 3)), in(f)}); }),
            ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("Where", {in(f), in(f), in(f)}); }), ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("And", {in(f), in(f)}); }), ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("Mean", {in(i), in(i)}); }), ErrorCode::kBadInput);
}
