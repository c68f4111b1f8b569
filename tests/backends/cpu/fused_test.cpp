// FusedElementwise (domain "kiln") against a float64 reference written here:
// every output element is computed by broadcasting each input explicitly and
// applying the op chain in double precision.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "backends/cpu/kernel.h"
#include "ir/op_registry.h"
#include "kiln/error.h"
#include "support/op_test.h"

using namespace kiln;
using namespace kiln::test;
using ir::Dims;
using ir::Tensor;

namespace {

struct Chain {
  std::vector<std::string> ops;
  std::vector<int64_t> operand, swap;
  std::vector<float> alpha, beta;
  Chain& un(const std::string& op, float a = 0.f, float b = 0.f) { return push(op, -1, 0, a, b); }
  Chain& bin(const std::string& op, int64_t k, int64_t sw = 0) { return push(op, k, sw, 0.f, 0.f); }
  Chain& push(const std::string& op, int64_t k, int64_t sw, float a, float b) {
    ops.push_back(op), operand.push_back(k), swap.push_back(sw), alpha.push_back(a), beta.push_back(b);
    return *this;
  }
  std::map<std::string, ir::Attribute> attrs() const {
    ir::Attribute s;
    s.kind = ir::Attribute::Kind::kStrings;
    s.strings = ops;
    return {{"ops", s}, {"operand", attr_ints(operand)}, {"swap", attr_ints(swap)},
            {"alpha", attr_floats(alpha)}, {"beta", attr_floats(beta)}};
  }
};

// One FusedElementwise node through shape inference and its CPU kernel.
Tensor run_fused(const std::vector<Tensor>& ins, const std::map<std::string, ir::Attribute>& attrs,
                 std::string* tactic = nullptr) {
  ir::Graph g;
  std::vector<ir::Value*> vs;
  for (size_t k = 0; k < ins.size(); ++k) {
    ir::Value* v = g.add_value("in" + std::to_string(k));
    v->dtype = ins[k].dtype();
    v->dims = ins[k].dims();
    v->has_shape = true;
    g.inputs.push_back(v);
    vs.push_back(v);
  }
  ir::Value* out = g.add_value("out");
  ir::Node* n = g.add_node("FusedElementwise", "fused", vs, {out});
  n->domain = "kiln";
  n->attrs = attrs;
  g.outputs = {out};
  ir::infer_shapes(g, nullptr);
  auto kernel = cpu::KernelRegistry::global().create(*n);
  if (tactic) *tactic = kernel->tactic();
  std::vector<const Tensor*> in_ptrs;
  for (auto& t : ins) in_ptrs.push_back(&t);
  Tensor result(out->dtype, out->dims);
  kernel->run(in_ptrs, {&result});
  return result;
}

double clamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

double ref_op(const std::string& op, double x, double y, float a, float b) {
  if (op == "Relu") return x < 0 ? 0.0 : x;
  if (op == "LeakyRelu") return x < 0 ? double(a) * x : x;
  if (op == "Sigmoid") return 1.0 / (1.0 + std::exp(-x));
  if (op == "HardSigmoid") return clamp(double(a) * x + double(b), 0.0, 1.0);
  if (op == "HardSwish") return x * clamp(x / 6.0 + 0.5, 0.0, 1.0);
  if (op == "Tanh") return std::tanh(x);
  if (op == "Exp") return std::exp(x);
  if (op == "Neg") return -x;
  if (op == "Abs") return std::fabs(x);
  if (op == "Sqrt") return std::sqrt(x);
  if (op == "Clip") return std::isnan(x) ? x : clamp(x, double(a), double(b));
  if (op == "Erf") return std::erf(x);
  if (op == "Elu") return x < 0 ? double(a) * std::expm1(x) : x;
  if (op == "Softplus") return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
  if (op == "Add") return x + y;
  if (op == "Sub") return x - y;
  if (op == "Mul") return x * y;
  if (op == "Div") return x / y;
  if (op == "Max") return std::isnan(x) || std::isnan(y) ? std::nan("") : std::max(x, y);
  if (op == "Min") return std::isnan(x) || std::isnan(y) ? std::nan("") : std::min(x, y);
  if (op == "Pow") return std::pow(x, y);
  ADD_FAILURE() << "no reference for " << op;
  return 0;
}

// Element `i` of `t` broadcast (numpy rules) to `out`.
double at(const Tensor& t, const Dims& out, int64_t i, const std::vector<double>& v) {
  const Dims& d = t.dims();
  int64_t idx = 0, stride = 1;
  for (size_t a = out.size(); a-- > 0;) {
    int64_t coord = i % out[a];
    i /= out[a];
    size_t from_end = out.size() - 1 - a;
    if (from_end >= d.size()) continue;
    int64_t dim = d[d.size() - 1 - from_end];
    if (dim != 1) idx += coord * stride;
    stride *= dim;
  }
  return v[size_t(idx)];
}

std::vector<double> reference(const std::vector<Tensor>& ins, const Chain& c, Dims* out_dims) {
  Dims out;
  for (const Tensor& t : ins) {  // numpy broadcast, written out again here
    const Dims& d = t.dims();
    Dims r(std::max(out.size(), d.size()), 1);
    for (size_t a = 0; a < r.size(); ++a) {
      size_t fe = r.size() - 1 - a;
      int64_t x = fe < out.size() ? out[out.size() - 1 - fe] : 1, y = fe < d.size() ? d[d.size() - 1 - fe] : 1;
      r[a] = x == 1 ? y : x;
    }
    out = r;
  }
  *out_dims = out;
  std::vector<std::vector<double>> vals;
  for (const Tensor& t : ins) vals.push_back(t.to_double());
  int64_t n = 1;
  for (int64_t d : out) n *= d;
  std::vector<double> res(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double v = at(ins[0], out, i, vals[0]);
    for (size_t j = 0; j < c.ops.size(); ++j) {
      double o = c.operand[j] < 0 ? 0.0 : at(ins[size_t(c.operand[j])], out, i, vals[size_t(c.operand[j])]);
      v = c.swap[j] ? ref_op(c.ops[j], o, v, c.alpha[j], c.beta[j]) : ref_op(c.ops[j], v, o, c.alpha[j], c.beta[j]);
    }
    res[size_t(i)] = v;
  }
  return res;
}

// Runs the chain and compares with the reference: |got-ref| <= tol*max(1,|ref|), NaN where the reference is NaN.
void expect_chain(const std::vector<Tensor>& ins, const Chain& c, double tol = 2e-6, const std::string& what = "") {
  Dims want_dims;
  std::vector<double> want = reference(ins, c, &want_dims);
  std::string tactic;
  Tensor got = run_fused(ins, c.attrs(), &tactic);
  EXPECT_EQ(tactic, "cpu.fused_eltwise");
  ASSERT_EQ(got.dims(), want_dims) << what;
  std::vector<double> g = got.to_double();
  int bad = 0;
  for (size_t i = 0; i < g.size() && bad < 5; ++i) {
    bool ok = std::isnan(want[i]) ? std::isnan(g[i])
                                  : std::fabs(g[i] - want[i]) <= tol * std::max(1.0, std::fabs(want[i]));
    if (!ok) {
      ++bad;
      ADD_FAILURE() << what << " element " << i << ": got " << g[i] << ", want " << want[i];
    }
  }
}

Tensor rnd(Dims d, uint32_t seed, double lo = -2, double hi = 2) {
  return random_tensor(DataType::kFloat32, std::move(d), seed, lo, hi);
}

TEST(FusedElementwise, SqueezeExciteTail) {
  // s = HardSigmoid(fc) on [N,C,1,1], y = Mul(x, s) on [N,C,H,W]; short rows (gathered) and long rows (in place).
  for (Dims hw : {Dims{5, 7}, Dims{1, 1}, Dims{33, 33}}) {
    Tensor fc = rnd({2, 8, 1, 1}, 1, -4, 4), x = rnd({2, 8, hw[0], hw[1]}, 2);
    expect_chain({fc, x}, Chain().un("HardSigmoid", 1.f / 6, 0.5f).bin("Mul", 1, 1), 2e-6, "hardsigmoid");
    expect_chain({fc, x}, Chain().un("Sigmoid").bin("Mul", 1, 1), 1e-5, "sigmoid");
  }
}

TEST(FusedElementwise, SiluReadsX0Twice) {
  Tensor x = rnd({3, 5, 7}, 3, -6, 6);
  expect_chain({x}, Chain().un("Sigmoid").bin("Mul", 0, 1), 1e-5);
  expect_chain({x}, Chain().un("Tanh").bin("Mul", 0).bin("Add", 0), 1e-5);
}

TEST(FusedElementwise, OperandBroadcastKinds) {
  Tensor x = rnd({2, 6, 5, 9}, 4);
  std::vector<std::pair<const char*, Dims>> kinds = {
      {"scalar", {}},      {"one", {1}},          {"channel", {1, 6, 1, 1}}, {"full", {2, 6, 5, 9}},
      {"row", {9}},        {"column", {5, 1}},    {"n-plane", {2, 1, 5, 9}}, {"nc", {2, 6, 1, 1}},
      {"mixed", {2, 1, 5, 1}}};
  for (auto& [what, d] : kinds) {
    Tensor c = rnd(d, 5, 0.5, 2);
    expect_chain({x, c}, Chain().bin("Mul", 1).bin("Add", 1).un("Relu"), 2e-6, what);
    expect_chain({x, c}, Chain().bin("Sub", 1, 1).bin("Div", 1, 1), 2e-6, std::string(what) + " swapped");
    // The operand is the larger side: x0 broadcasts into it.
    expect_chain({c, x}, Chain().bin("Add", 1).un("HardSwish"), 2e-6, std::string(what) + " as x0");
    expect_chain({c, x}, Chain().bin("Sub", 1).bin("Div", 1, 1), 2e-6, std::string(what) + " as x0, sub/div");
    expect_chain({c, x}, Chain().bin("Div", 1, 1).bin("Sub", 1, 1), 2e-6, std::string(what) + " as x0, swapped");
  }
}

TEST(FusedElementwise, ScaleShiftAndManyOperands) {
  Tensor x = rnd({3, 4, 6, 5}, 6), s = rnd({1, 4, 1, 1}, 7), b = rnd({4, 1, 1}, 8), r = rnd({3, 4, 6, 5}, 9);
  Tensor lo = rnd({}, 10, -0.5, -0.4);
  expect_chain({x, s, b, r, lo}, Chain().bin("Mul", 1).bin("Add", 2).bin("Add", 3).bin("Max", 4).un("Clip", -1.f, 1.5f));
}

TEST(FusedElementwise, EveryUnaryOp) {
  struct U { const char* op; float a, b; double lo, hi, tol; };
  std::vector<U> ops = {{"Relu", 0, 0, -3, 3, 2e-6},        {"LeakyRelu", 0.1f, 0, -3, 3, 2e-6},
                        {"Sigmoid", 0, 0, -10, 10, 1e-5},   {"HardSigmoid", 0.2f, 0.5f, -4, 4, 2e-6},
                        {"HardSwish", 0, 0, -5, 5, 2e-6},   {"Tanh", 0, 0, -5, 5, 1e-5},
                        {"Exp", 0, 0, -10, 10, 1e-5},       {"Neg", 0, 0, -3, 3, 2e-6},
                        {"Abs", 0, 0, -3, 3, 2e-6},         {"Sqrt", 0, 0, 0, 9, 2e-6},
                        {"Clip", -0.5f, 0.75f, -2, 2, 2e-6}, {"Erf", 0, 0, -4, 4, 1e-5},
                        {"Elu", 1.5f, 0, -5, 3, 1e-5},      {"Softplus", 0, 0, -10, 10, 1e-5}};
  for (const U& u : ops) {
    // 1031 elements: several blocks plus a ragged tail.
    Tensor x = rnd({1031}, 11, u.lo, u.hi), c = rnd({1}, 12, 0.5, 1.5);
    expect_chain({x, c}, Chain().un(u.op, u.a, u.b).bin("Mul", 1), u.tol, u.op);
    expect_chain({x, c}, Chain().bin("Mul", 1).un(u.op, u.a, u.b), u.tol, std::string(u.op) + " last");
  }
  // Sqrt of a negative value is NaN, as in the reference.
  expect_chain({rnd({40}, 13, -1, 1)}, Chain().un("Sqrt").un("Neg"), 2e-6, "sqrt nan");
}

TEST(FusedElementwise, EveryBinaryOpBothSides) {
  Tensor x = rnd({2, 3, 17}, 14, 0.5, 3), y = rnd({3, 1}, 15, 0.5, 2), z = rnd({2, 3, 17}, 16, -2, 2);
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"})
    for (int sw : {0, 1}) {
      expect_chain({x, y}, Chain().bin(op, 1, sw).un("Neg"), 1e-5, std::string(op) + (sw ? " swap" : ""));
      expect_chain({x, z}, Chain().un("Abs").bin(op, 1, sw), 1e-5, std::string(op) + " full");
    }
}

TEST(FusedElementwise, PowConstantExponents) {
  Tensor x = rnd({4, 9}, 17, -3, 3);
  for (float e : {2.f, 1.f, 3.f, 0.5f, -1.f}) {
    Tensor ex = Tensor::from_float({e}, {});
    expect_chain({x, ex}, Chain().un("Abs").bin("Pow", 1).bin("Sub", 1), 1e-5, "abs^" + std::to_string(e));
    expect_chain({x, ex}, Chain().bin("Pow", 1).un("Tanh"), 1e-5, "x^" + std::to_string(e));
  }
}

TEST(FusedElementwise, ShapeGrowsInStages) {
  // Exp on [1,C,1,1], Mul by [1,C,H,1], Tanh, Add [N,C,H,W]: three stage shapes.
  Tensor a = rnd({1, 5, 1, 1}, 18), b = rnd({1, 5, 7, 1}, 19), c = rnd({2, 5, 7, 300}, 20);
  expect_chain({a, b, c}, Chain().un("Exp").bin("Mul", 1).un("Tanh").bin("Add", 2).un("Softplus"), 1e-5);
  // An input no op reads still widens the output.
  Tensor w = rnd({3, 1, 1, 1}, 21);
  expect_chain({a, w}, Chain().un("Sigmoid").un("Neg"), 1e-5, "widened");
}

TEST(FusedElementwise, LargeAndMultiThreaded) {
  Tensor x = rnd({2, 16, 64, 65}, 22), s = rnd({2, 16, 1, 1}, 23), r = rnd({1, 1, 64, 65}, 24);
  expect_chain({x, s, r}, Chain().bin("Mul", 1).bin("Add", 2).un("HardSwish"), 2e-6, "row mode");
  Tensor y = rnd({4, 64, 20, 5}, 25), t = rnd({1, 64, 20, 1}, 26);
  expect_chain({y, t}, Chain().bin("Sub", 1).un("Relu").bin("Mul", 0), 2e-6, "gather mode");
}

TEST(FusedElementwise, EmptyTensor) {
  Tensor x(DataType::kFloat32, {0, 3}), c = rnd({3}, 27);
  Tensor got = run_fused({x, c}, Chain().bin("Add", 1).un("Relu").attrs());
  EXPECT_EQ(got.dims(), (Dims{0, 3}));
  Tensor y(DataType::kFloat32, {2, 0, 4}), d = rnd({1, 1, 1}, 28);
  EXPECT_EQ(run_fused({d, y}, Chain().un("Sigmoid").bin("Mul", 1).attrs()).dims(), (Dims{2, 0, 4}));
}

TEST(FusedElementwise, RandomChains) {
  // Random shapes, broadcast patterns and chains of bounded ops.
  const std::vector<std::string> unary = {"Relu", "Tanh", "Sigmoid", "HardSwish", "Neg", "Abs", "LeakyRelu"};
  const std::vector<std::string> binary = {"Add", "Sub", "Mul", "Max", "Min"};
  std::mt19937 rng(1234);
  auto pick = [&](int n) { return int(rng() % uint32_t(n)); };
  for (int trial = 0; trial < 60; ++trial) {
    Dims out(size_t(1 + pick(4)));
    for (auto& d : out) d = 1 + pick(trial % 3 == 0 ? 40 : 9);
    int num = 1 + pick(3);
    std::vector<Tensor> ins;
    for (int k = 0; k < num; ++k) {
      Dims d(out.begin() + pick(int(out.size())), out.end());
      for (auto& x : d)
        if (pick(3) == 0) x = 1;
      ins.push_back(rnd(d, uint32_t(100 + trial * 7 + k)));
    }
    Chain c;
    int len = 2 + pick(4);
    for (int j = 0; j < len; ++j) {
      if (pick(2)) c.un(unary[size_t(pick(int(unary.size())))], 0.1f);
      else c.bin(binary[size_t(pick(int(binary.size())))], pick(num), pick(2));
    }
    expect_chain(ins, c, 1e-5, "trial " + std::to_string(trial));
  }
}

TEST(FusedElementwise, MalformedAttributesNameTheNode) {
  Tensor x = rnd({2, 3}, 29), c = rnd({3}, 30);
  auto expect_error = [&](std::map<std::string, ir::Attribute> attrs, ErrorCode code, const std::string& what,
                          std::vector<Tensor> ins = {}) {
    try {
      run_fused(ins.empty() ? std::vector<Tensor>{x, c} : ins, attrs);
      ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << what << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("FusedElementwise 'fused'"), std::string::npos) << e.what();
    }
  };
  Chain good = Chain().bin("Add", 1).un("Relu");
  auto with = [&](const std::string& key, ir::Attribute a) {
    auto m = good.attrs();
    m[key] = a;
    return m;
  };
  ir::Attribute bad_op;
  bad_op.kind = ir::Attribute::Kind::kStrings;
  bad_op.strings = {"Add", "Log"};
  expect_error(with("ops", bad_op), ErrorCode::kBadInput, "unknown op");
  expect_error(with("operand", attr_ints({2, -1})), ErrorCode::kBadInput, "operand out of range");
  expect_error(with("operand", attr_ints({1, 0})), ErrorCode::kBadInput, "unary with operand");
  expect_error(with("operand", attr_ints({-1, -1})), ErrorCode::kBadInput, "binary without operand");
  expect_error(with("swap", attr_ints({0, 1})), ErrorCode::kBadInput, "swap on unary");
  expect_error(with("swap", attr_ints({2, 0})), ErrorCode::kBadInput, "swap not 0/1");
  expect_error(with("alpha", attr_floats({0.f})), ErrorCode::kBadInput, "alpha size");
  expect_error(with("beta", attr_f(1.f)), ErrorCode::kBadInput, "beta type");
  auto no_ops = good.attrs();
  no_ops.erase("ops");
  expect_error(no_ops, ErrorCode::kBadInput, "missing ops");
  expect_error(Chain().attrs(), ErrorCode::kBadInput, "empty chain");
  expect_error(good.attrs(), ErrorCode::kUnsupported, "int32 input", {Tensor(DataType::kInt32, {2, 3}), c});
  expect_error(good.attrs(), ErrorCode::kBadInput, "shapes that do not broadcast", {x, rnd({4}, 31)});
  // The same checks guard the kernel when it is created without inference.
  ir::Graph g;
  ir::Value* a = g.add_value("a");
  a->dims = {2, 3};
  ir::Value* o = g.add_value("o");
  o->dims = {2, 3};
  ir::Node* n = g.add_node("FusedElementwise", "fused", {a}, {o});
  n->domain = "kiln";
  n->attrs = good.attrs();  // operand 1 does not exist on a one-input node
  try {
    cpu::KernelRegistry::global().create(*n);
    ADD_FAILURE() << "kernel accepted a bad operand";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadInput) << e.what();
    EXPECT_NE(std::string(e.what()).find("FusedElementwise 'fused'"), std::string::npos) << e.what();
  }
}

}  // namespace
