#include "engine/test_ops.h"

#include <mutex>

#include "backends/cpu/kernel.h"
#include "ir/op_registry.h"
#include "kiln/error.h"
#include "support/op_test.h"

namespace kiln::test {

namespace {

struct ConvGeom {
  int64_t n, c, h, w, m, kh, kw, oh, ow, pt, pl;
};

ConvGeom conv_geom(const ir::Node& n) {
  const ir::Value& x = ir::input_checked(n, 0);
  const ir::Value& w = ir::input_checked(n, 1);
  if (x.dims.size() != 4 || w.dims.size() != 4 || x.dims[1] != w.dims[1])
    throw_bad_input(n.label() + ": test Conv needs X[N,C,H,W] and W[M,C,kh,kw]");
  auto pads = n.ints("pads", {0, 0, 0, 0});
  if (pads.size() != 4) throw_bad_input(n.label() + ": pads must have 4 values");
  for (int64_t p : pads)
    if (p < 0 || p > 16) throw_bad_input(n.label() + ": bad pad");
  ConvGeom g{x.dims[0], x.dims[1], x.dims[2], x.dims[3], w.dims[0], w.dims[2], w.dims[3], 0, 0, pads[0], pads[1]};
  g.oh = g.h + pads[0] + pads[2] - g.kh + 1;
  g.ow = g.w + pads[1] + pads[3] - g.kw + 1;
  if (g.oh <= 0 || g.ow <= 0) throw_bad_input(n.label() + ": kernel larger than padded input");
  if (const ir::Value* b = n.in(2))
    if (b->dims != ir::Dims{g.m}) throw_bad_input(n.label() + ": bias must be [M]");
  return g;
}

void require_f32(const ir::Node& n) {
  for (const ir::Value* v : n.inputs)
    if (v && v->dtype != DataType::kFloat32) throw_unsupported(n.label() + ": test ops take fp32 only");
}

void infer_same(ir::Node& n) {
  const ir::Value& a = ir::input_checked(n, 0);
  for (size_t k = 1; k < n.inputs.size(); ++k)
    if (ir::input_checked(n, k).dims != a.dims) throw_bad_input(n.label() + ": test ops need equal shapes");
  if (n.outputs.size() != 1) throw_bad_input(n.label() + ": one output expected");
  ir::set_output(n, 0, a.dtype, a.dims);
}

void register_once() {
  auto& ops = ir::OpRegistry::global();
  ops.add({kTestDomain, "Relu", infer_same, true});
  ops.add({kTestDomain, "Add",
           [](ir::Node& n) {
             if (n.inputs.size() != 2) throw_bad_input(n.label() + ": Add takes 2 inputs");
             infer_same(n);
           },
           true});
  ops.add({kTestDomain, "Conv",
           [](ir::Node& n) {
             ConvGeom g = conv_geom(n);
             if (n.outputs.size() != 1) throw_bad_input(n.label() + ": one output expected");
             ir::set_output(n, 0, ir::input_checked(n, 0).dtype, {g.n, g.m, g.oh, g.ow});
           },
           true});
  ops.add({kTestDomain, "NoKernel", infer_same, false});

  auto& kernels = cpu::KernelRegistry::global();
  kernels.add(
      "Relu",
      [](const ir::Node& n) {
        require_f32(n);
        return cpu::make_kernel("test_relu", [](const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) {
          const float* x = in[0]->data<float>();
          float* y = out[0]->data<float>();
          for (int64_t i = 0; i < in[0]->numel(); ++i) y[i] = x[i] > 0 ? x[i] : 0.f;
        });
      },
      kTestDomain);
  kernels.add(
      "Add",
      [](const ir::Node& n) {
        require_f32(n);
        return cpu::make_kernel("test_add", [](const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) {
          const float *a = in[0]->data<float>(), *b = in[1]->data<float>();
          float* y = out[0]->data<float>();
          for (int64_t i = 0; i < in[0]->numel(); ++i) y[i] = a[i] + b[i];
        });
      },
      kTestDomain);
  kernels.add(
      "Conv",
      [](const ir::Node& n) {
        require_f32(n);
        ConvGeom g = conv_geom(n);
        return cpu::make_kernel("test_conv_direct", [g](const std::vector<const ir::Tensor*>& in,
                                                        const std::vector<ir::Tensor*>& out) {
          const float *x = in[0]->data<float>(), *w = in[1]->data<float>();
          const float* b = in.size() > 2 && in[2] ? in[2]->data<float>() : nullptr;
          float* y = out[0]->data<float>();
          for (int64_t ni = 0; ni < g.n; ++ni)
            for (int64_t m = 0; m < g.m; ++m)
              for (int64_t oy = 0; oy < g.oh; ++oy)
                for (int64_t ox = 0; ox < g.ow; ++ox) {
                  float acc = b ? b[m] : 0.f;
                  for (int64_t c = 0; c < g.c; ++c)
                    for (int64_t ky = 0; ky < g.kh; ++ky)
                      for (int64_t kx = 0; kx < g.kw; ++kx) {
                        int64_t iy = oy + ky - g.pt, ix = ox + kx - g.pl;
                        if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                        acc += x[((ni * g.c + c) * g.h + iy) * g.w + ix] * w[((m * g.c + c) * g.kh + ky) * g.kw + kx];
                      }
                  y[((ni * g.m + m) * g.oh + oy) * g.ow + ox] = acc;
                }
        });
      },
      kTestDomain);
}

// Plain float64 convolution, written independently of the kernel above.
std::vector<double> conv_ref(const std::vector<double>& x, const ir::Dims& xd, const ir::Tensor& w,
                             const ir::Tensor* b, int64_t pad) {
  auto wv = w.to_double();
  std::vector<double> bv = b ? b->to_double() : std::vector<double>(size_t(w.dims()[0]), 0.0);
  const int64_t N = xd[0], C = xd[1], H = xd[2], W = xd[3], M = w.dims()[0], K = w.dims()[2];
  const int64_t OH = H + 2 * pad - K + 1, OW = W + 2 * pad - K + 1;
  std::vector<double> y(size_t(N * M * OH * OW));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double s = bv[size_t(m)];
          for (int64_t c = 0; c < C; ++c)
            for (int64_t a = 0; a < K; ++a)
              for (int64_t e = 0; e < K; ++e) {
                int64_t yy = i - pad + a, xx = j - pad + e;
                if (yy >= 0 && yy < H && xx >= 0 && xx < W)
                  s += x[size_t(((n * C + c) * H + yy) * W + xx)] * wv[size_t(((m * C + c) * K + a) * K + e)];
              }
          y[size_t(((n * M + m) * OH + i) * OW + j)] = s;
        }
  return y;
}

}  // namespace

void register_test_ops() {
  static std::once_flag once;
  std::call_once(once, register_once);
}

std::unique_ptr<ir::Graph> make_test_graph(const std::string& domain) {
  register_test_ops();
  auto g = std::make_unique<ir::Graph>();
  g->name = "engine_test";
  auto input = [&](const char* name, ir::Dims dims) {
    ir::Value* v = g->add_value(name);
    v->dtype = DataType::kFloat32;
    v->dims = std::move(dims);
    v->has_shape = true;
    v->batch_axis = 0;
    g->inputs.push_back(v);
    return v;
  };
  ir::Value* x = input("X", {2, 2, 5, 5});
  ir::Value* y = input("Y", {2, 3, 5, 5});
  ir::Value* w = g->add_constant("W", random_tensor(DataType::kFloat32, {3, 2, 3, 3}, 11));
  ir::Value* b = g->add_constant("B", random_tensor(DataType::kFloat32, {3}, 12));
  ir::Value* w2 = g->add_constant("W2", random_tensor(DataType::kFloat32, {3, 3, 1, 1}, 13));
  ir::Value* k = g->add_constant("K", ir::Tensor::from_int64({7, -1, 1LL << 40, 0}, {4}));
  ir::Value *c = g->add_value("C"), *r = g->add_value("R"), *z = g->add_value("Z"), *q = g->add_value("Q");
  auto node = [&](const char* op, const char* name, std::vector<ir::Value*> ins, ir::Value* out) {
    ir::Node* n = g->add_node(op, name, std::move(ins), {out});
    n->domain = domain;
    n->opset = 18;
    return n;
  };
  ir::Node* conv = node("Conv", "conv", {x, w, b}, c);
  conv->attrs["pads"] = attr_ints({1, 1, 1, 1});
  node("Relu", "relu", {c}, r);
  node("Add", "add", {r, y}, z);
  node("Conv", "proj", {z, w2, nullptr}, q);
  if (domain.empty()) g->nodes().back()->inputs.pop_back();  // built-in Conv: drop the omitted bias
  g->outputs = {z, q, r, k, y};
  ir::infer_shapes(*g);
  return g;
}

Reference reference(const ir::Graph& g, const std::vector<float>& x, const std::vector<float>& y) {
  Reference ref;
  std::vector<double> xd(x.begin(), x.end());
  auto c = conv_ref(xd, g.value("X")->dims, *g.value("W")->constant, g.value("B")->constant.get(), 1);
  ref.r.resize(c.size());
  ref.z.resize(c.size());
  for (size_t i = 0; i < c.size(); ++i) {
    ref.r[i] = c[i] > 0 ? c[i] : 0.0;
    ref.z[i] = ref.r[i] + double(y[i]);
  }
  ref.q = conv_ref(ref.z, g.value("Z")->dims, *g.value("W2")->constant, nullptr, 0);
  return ref;
}

}  // namespace kiln::test
