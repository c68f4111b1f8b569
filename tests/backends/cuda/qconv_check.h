// Shared by the CUDA QConv parity tests (qconv_test.cpp: every tactic
// family; qconv_gemm_test.cpp: the 1x1 GEMM tiles): a QConv node with random
// int8 data, its CPU reference output, and a check that runs every tactic
// the registry offers in three layout mixes (all row-major; X, Z, Y
// channels-last as the builder gives them; X channels-last with row-major Z
// and Y) against that reference.
//
// Tolerances: int8 outputs may differ from the CPU by one step where v /
// y_scale lies within a rounding error of a .5 tie (the CUTLASS epilogue
// fuses acc * m + B into one FMA and multiplies by 1 / y_scale, as the
// contract allows); such ties are rare, so at most 0.1% of the elements (and
// at least 2) may differ, each by 1. Float outputs: fp32 within 1e-5 of
// max(1, max |ref|) (a few float roundings of values of that size), 1e-4
// with Sigmoid (the GPU's __expf); fp16 within 2e-3 (one fp16 rounding, 2^-11
// relative, flipped by a float rounding difference).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "backends/cpu/kernel.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/parity.h"
#include "ir/op_registry.h"
#include "support/op_test.h"

namespace kiln::qconv_check {

using test::attr_f;
using test::attr_floats;
using test::attr_i;
using test::attr_ints;
using test::attr_s;
using test::random_tensor;

#ifdef KILN_WITH_CUTLASS
inline constexpr bool kCutlassBuilt = true;
#else
inline constexpr bool kCutlassBuilt = false;
#endif

struct QCase {
  std::string name;
  int64_t n = 1, c = 16, h = 8, w = 8, k = 16, r = 3, s = 3, group = 1;
  std::vector<int64_t> strides{1, 1}, pads{1, 1, 1, 1}, dil{1, 1};
  bool bias = true;
  std::optional<DataType> z;  // residual dtype
  DataType to = DataType::kInt8;
  std::string act;  // "" = none
  std::vector<float> act_params;
  std::vector<std::string> cutlass;  // cutlass_sm90_i8 configs expected channels-last
  std::vector<std::string> gemm;     // cutlass_sm90_i8gemm configs expected channels-last
  bool dp4a = false;                 // qconv_dp4a expected channels-last
  uint32_t seed = 1;
};

struct Built {
  std::unique_ptr<ir::Graph> g;
  ir::Node* node = nullptr;
  std::vector<std::optional<ir::Tensor>> host;  // per node input
  ir::Tensor ref;                               // CPU output, row-major
};

inline Built build(const QCase& c) {
  Built b;
  b.g = std::make_unique<ir::Graph>();
  ir::Graph& g = *b.g;
  const int64_t cg = c.c / c.group;
  ir::Value* x = g.add_value("x");
  x->dtype = DataType::kInt8;
  x->dims = {c.n, c.c, c.h, c.w};
  x->has_shape = true;
  g.inputs.push_back(x);
  ir::Tensor xt = random_tensor(DataType::kInt8, x->dims, c.seed, -128.0, 128.0);
  ir::Tensor wt = random_tensor(DataType::kInt8, {c.k, cg, c.r, c.s}, c.seed + 1, -127.0, 128.0);
  ir::Value* w = g.add_constant("w", wt);
  // Scales that spread v over the int8 range, a few values saturating.
  const float x_scale = 0.02f;
  std::vector<float> ws;
  ir::Tensor u = random_tensor(DataType::kFloat32, {c.k}, c.seed + 2, 0.0, 1.0);
  double mean_ws = 0;
  for (int64_t k = 0; k < c.k; ++k) {
    ws.push_back(0.002f + 0.004f * u.data<float>()[k]);
    mean_ws += ws.back() / double(c.k);
  }
  const double sigma = std::sqrt(double(cg * c.r * c.s)) * 73.6 * 73.3 * x_scale * mean_ws;
  const float y_scale = float(2.5 * sigma / 127.0);
  std::vector<ir::Value*> ins{x, w};
  b.host = {xt, wt};
  if (c.bias || c.z) {
    if (c.bias) {
      ir::Tensor bt = random_tensor(DataType::kFloat32, {c.k}, c.seed + 3, -0.5 * sigma, 0.5 * sigma);
      ins.push_back(g.add_constant("b", bt));
      b.host.emplace_back(bt);
    } else {
      ins.push_back(nullptr);
      b.host.emplace_back(std::nullopt);
    }
  }
  ir::Value* z = nullptr;
  if (c.z) {
    z = g.add_value("z");
    z->dtype = *c.z;
    z->has_shape = true;
    g.inputs.push_back(z);
    ins.push_back(z);
  }
  ir::Value* y = g.add_value("y");
  b.node = g.add_node("QConv", "qconv", ins, {y});
  ir::Node& n = *b.node;
  n.domain = "kiln";
  n.attrs["group"] = attr_i(c.group);
  n.attrs["strides"] = attr_ints(c.strides);
  n.attrs["pads"] = attr_ints(c.pads);
  n.attrs["dilations"] = attr_ints(c.dil);
  n.attrs["x_scale"] = attr_f(x_scale);
  n.attrs["w_scales"] = attr_floats(ws);
  n.attrs["to"] = attr_i(int64_t(c.to));
  if (c.to == DataType::kInt8) n.attrs["y_scale"] = attr_f(y_scale);
  if (c.z == DataType::kInt8) n.attrs["z_scale"] = attr_f(float(sigma / 100.0));
  if (!c.act.empty()) {
    n.attrs["activation"] = attr_s(c.act);
    n.attrs["activation_params"] = attr_floats(c.act_params);
  }
  g.outputs.push_back(y);
  // Z has the output's dims: infer once without it to learn them.
  const int64_t p = (c.h + c.pads[0] + c.pads[2] - (c.r - 1) * c.dil[0] - 1) / c.strides[0] + 1;
  const int64_t q = (c.w + c.pads[1] + c.pads[3] - (c.s - 1) * c.dil[1] - 1) / c.strides[1] + 1;
  if (z) {
    z->dims = {c.n, c.k, p, q};
    b.host.emplace_back(c.z == DataType::kInt8
                            ? random_tensor(DataType::kInt8, z->dims, c.seed + 4, -128.0, 128.0)
                            : random_tensor(*c.z, z->dims, c.seed + 4, -sigma, sigma));
  }
  ir::infer_shapes(g, nullptr);
  EXPECT_EQ(y->dims, (ir::Dims{c.n, c.k, p, q}));
  // The reference: the CPU kernel on row-major tensors.
  auto kernel = cpu::KernelRegistry::global().create(n);
  std::vector<const ir::Tensor*> in;
  for (auto& t : b.host) in.push_back(t ? &*t : nullptr);
  b.ref = ir::Tensor(y->dtype, y->dims);
  std::vector<ir::Tensor*> out{&b.ref};
  kernel->run(in, out);
  return b;
}

// Adds a failure unless `got` matches `ref` within the rules above.
inline void compare(const ir::Tensor& got, const ir::Tensor& ref, double fp32_tol, const std::string& what) {
  ASSERT_EQ(got.dims(), ref.dims()) << what;
  ASSERT_EQ(got.dtype(), ref.dtype()) << what;
  const int64_t n = ref.numel();
  if (ref.dtype() == DataType::kInt8) {
    int64_t diffs = 0;
    int worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int d = std::abs(int(got.data<int8_t>()[i]) - int(ref.data<int8_t>()[i]));
      diffs += d != 0;
      worst = std::max(worst, d);
    }
    EXPECT_LE(worst, 1) << what;
    EXPECT_LE(diffs, std::max<int64_t>(2, n / 1000)) << what << ": " << diffs << " of " << n << " elements differ";
    return;
  }
  const std::vector<double> a = got.to_double(), b = ref.to_double();
  double scale = 1, err = 0;
  for (double v : b)
    if (std::isfinite(v)) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) {
      ADD_FAILURE() << what << ": NaN mismatch at " << i;
      return;
    }
    if (!std::isnan(b[i])) err = std::max(err, std::fabs(a[i] - b[i]) / scale);
  }
  EXPECT_LE(err, ref.dtype() == DataType::kFloat16 ? 2e-3 : fp32_tol) << what;
}

// Runs every tactic in each layout mix; returns the tactic names offered
// with X, Z and Y channels-last.
inline std::set<std::string> check_case(const QCase& c, double fp32_tol = 1e-5) {
  SCOPED_TRACE(c.name);
  Built b = build(c);
  std::set<std::string> nhwc_names;
  int checked = 0;
  std::vector<const ir::Tensor*> in;
  for (auto& t : b.host) in.push_back(t ? &*t : nullptr);
  const char* mixes[] = {"linear", "nhwc", "x-nhwc"};
  for (int mix = 0; mix < 3; ++mix) {
    ir::Value* x = b.node->inputs[0];
    ir::Value* z = b.node->in(3);
    ir::Value* y = b.node->outputs[0];
    x->layout = mix == 0 ? ir::Layout::kLinear : ir::Layout::kNHWC;
    y->layout = mix == 1 ? ir::Layout::kNHWC : ir::Layout::kLinear;
    if (z) z->layout = y->layout;
    std::vector<cuda::Tactic> tactics;
    try {
      tactics = cuda::Registry::global().tactics(*b.node);
    } catch (const Error& e) {
      ADD_FAILURE() << mixes[mix] << ": " << e.what();
      continue;
    }
    for (const cuda::Tactic& t : tactics) {
      if (mix == 1) nhwc_names.insert(t.name);
      const std::string what = std::string(mixes[mix]) + " " + t.name;
      try {
        // Two poisons: an unwritten int8 element cannot match both. 0xFF
        // makes unwritten fp16 / fp32 elements NaN (and catches a NaN of old
        // output contents leaking into a result through 0 * Y).
        for (uint8_t poison : {uint8_t(0x55), uint8_t(0xAA), uint8_t(0xFF)})
          compare(test::run_tactic(*b.node, t, in, poison)[0], b.ref, fp32_tol, what);
        ++checked;
      } catch (const Error& e) {
        ADD_FAILURE() << what << ": " << e.what();
      }
    }
  }
  EXPECT_GT(checked, 0);
  EXPECT_TRUE(nhwc_names.count("qconv_direct")) << "the fallback must run every QConv";
  if (c.dp4a) {
    EXPECT_TRUE(nhwc_names.count("qconv_dp4a"));
  }
  if (kCutlassBuilt && test::sm90_device()) {
    for (const std::string& cfg : c.cutlass) EXPECT_TRUE(nhwc_names.count("cutlass_sm90_i8:" + cfg)) << cfg;
    for (const std::string& cfg : c.gemm) EXPECT_TRUE(nhwc_names.count("cutlass_sm90_i8gemm:" + cfg)) << cfg;
  }
  return nhwc_names;
}

// Any CUTLASS tactic: an implicit-GEMM conv tile or a 1x1 GEMM tile.
inline bool any_cutlass(const std::set<std::string>& names) {
  for (const std::string& s : names)
    if (s.rfind("cutlass_sm90_i8:", 0) == 0 || s.rfind("cutlass_sm90_i8gemm:", 0) == 0) return true;
  return false;
}

inline bool any_gemm(const std::set<std::string>& names) {
  for (const std::string& s : names)
    if (s.rfind("cutlass_sm90_i8gemm:", 0) == 0) return true;
  return false;
}

}  // namespace kiln::qconv_check
