#include "backends/cpu/conv_common.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cmath>

#include "backends/cpu/parallel.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

// Scalar epilogue body; split by whether there is a residual so the common
// loops stay simple enough to vectorize.
template <typename F> void apply_epilogue(float* y, int64_t len, float bias, const float* z, float zs, F f) {
  if (!z) {
    for (int64_t i = 0; i < len; ++i) y[i] = f(y[i] + bias);
  } else if (zs == 1.f) {
    for (int64_t i = 0; i < len; ++i) y[i] = f(y[i] + bias + z[i]);
  } else {
    for (int64_t i = 0; i < len; ++i) y[i] = f(y[i] + bias + zs * z[i]);
  }
}

}  // namespace

void epilogue(float* y, int64_t len, float bias, const float* z, const Activation& act, float zs) {
  const float a = act.a, b = act.b;
  switch (act.kind) {
    case Activation::kNone:
      if (bias != 0.f || z) apply_epilogue(y, len, bias, z, zs, [](float v) { return v; });
      break;
    case Activation::kRelu:
      apply_epilogue(y, len, bias, z, zs, [](float v) { return std::max(v, 0.f); });
      break;
    case Activation::kLeakyRelu:
      apply_epilogue(y, len, bias, z, zs, [a](float v) { return v < 0.f ? v * a : v; });
      break;
    case Activation::kClip:
      apply_epilogue(y, len, bias, z, zs, [a, b](float v) { return std::min(std::max(v, a), b); });
      break;
    case Activation::kSigmoid:
      apply_epilogue(y, len, bias, z, zs, [](float v) { return 1.f / (1.f + std::exp(-v)); });
      break;
    case Activation::kHardSigmoid:
      apply_epilogue(y, len, bias, z, zs, [a, b](float v) { return std::min(std::max(a * v + b, 0.f), 1.f); });
      break;
    case Activation::kHardSwish:
      apply_epilogue(y, len, bias, z, zs,
                     [](float v) { return v * std::min(std::max(v + 3.f, 0.f), 6.f) * (1.f / 6.f); });
      break;
    case Activation::kTanh:
      apply_epilogue(y, len, bias, z, zs, [](float v) { return std::tanh(v); });
      break;
    case Activation::kSiLU:
      apply_epilogue(y, len, bias, z, zs, [](float v) { return v / (1.f + std::exp(-v)); });
      break;
  }
}

float* scratch(size_t n, int slot) {
  // 64-byte aligned so vector loads never split cache lines needlessly.
  struct Buf {
    std::unique_ptr<float[], void (*)(float*)> p{nullptr, [](float* q) { std::free(q); }};
    size_t cap = 0;
  };
  thread_local Buf bufs[4];
  Buf& b = bufs[slot & 3];
  if (b.cap < n) {
    size_t cap = std::max<size_t>(n, 1024);
    size_t bytes = (cap * sizeof(float) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw_bad_input("out of memory allocating " + std::to_string(bytes) + " bytes of kernel scratch");
    b.p.reset(static_cast<float*>(p));
    b.cap = cap;
  }
  return b.p.get();
}

void parallel_blocks(int64_t n, int64_t block, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  block = std::max<int64_t>(block, 1);
  const int64_t blocks = (n + block - 1) / block;
  const int64_t workers = std::min<int64_t>(num_threads(), blocks);
  if (workers <= 1) {
    fn(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  parallel_for(workers, [&](int64_t, int64_t) {
    for (int64_t b; (b = next.fetch_add(1, std::memory_order_relaxed)) < blocks;)
      fn(b * block, std::min(n, (b + 1) * block));
  });
}

void check_blas_dim(const ir::Node& n, int64_t v) {
  if (v > INT_MAX)
    throw_unsupported(n.label() + ": a matrix dimension of " + std::to_string(v) + " exceeds the BLAS int range");
}

namespace {

ir::Tensor convert(const ir::Tensor& t, DataType to) {
  ir::Tensor o(to, t.dims());
  int64_t n = t.numel();
  if (to == DataType::kFloat32) {
    const uint16_t* s = t.data<uint16_t>();
    float* d = o.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = half_to_float(s[i]);
  } else {
    const float* s = t.data<float>();
    uint16_t* d = o.data<uint16_t>();
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_half(s[i]);
  }
  return o;
}

class Fp16Kernel : public Kernel {
 public:
  Fp16Kernel(std::unique_ptr<Kernel> inner, std::vector<bool> in16, std::vector<bool> out16)
      : inner_(std::move(inner)), in16_(std::move(in16)), out16_(std::move(out16)) {}

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    std::vector<ir::Tensor> tin(in.size()), tout(out.size());
    std::vector<const ir::Tensor*> pin(in.size());
    std::vector<ir::Tensor*> pout(out.size());
    for (size_t k = 0; k < in.size(); ++k) {
      pin[k] = in[k];
      if (in[k] && k < in16_.size() && in16_[k]) {
        tin[k] = convert(*in[k], DataType::kFloat32);
        pin[k] = &tin[k];
      }
    }
    for (size_t k = 0; k < out.size(); ++k) {
      pout[k] = out[k];
      if (out[k] && k < out16_.size() && out16_[k]) {
        tout[k] = ir::Tensor(DataType::kFloat32, out[k]->dims());
        pout[k] = &tout[k];
      }
    }
    inner_->run(pin, pout);
    for (size_t k = 0; k < out.size(); ++k)
      if (pout[k] != out[k]) {
        ir::Tensor h = convert(tout[k], DataType::kFloat16);
        std::copy_n(h.data<uint16_t>(), h.numel(), out[k]->data<uint16_t>());
      }
  }
  std::string tactic() const override { return inner_->tactic() + ".fp16"; }

 private:
  std::unique_ptr<Kernel> inner_;
  std::vector<bool> in16_, out16_;
};

}  // namespace

std::shared_ptr<const ir::Tensor> constant_f32(const ir::Node& n, size_t k) {
  const ir::Value* v = n.in(k);
  if (!v || !v->constant) return nullptr;
  if (v->constant->dtype() == DataType::kFloat32) return v->constant;
  if (v->constant->dtype() == DataType::kFloat16)
    return std::make_shared<const ir::Tensor>(convert(*v->constant, DataType::kFloat32));
  return nullptr;
}

std::unique_ptr<Kernel> with_fp16_adapter(const ir::Node& n, const KernelFactory& make) {
  std::vector<bool> in16(n.inputs.size()), out16(n.outputs.size());
  bool any = false;
  for (size_t k = 0; k < n.inputs.size(); ++k)
    any |= in16[k] = n.inputs[k] && n.inputs[k]->dtype == DataType::kFloat16;
  for (size_t k = 0; k < n.outputs.size(); ++k)
    any |= out16[k] = n.outputs[k] && n.outputs[k]->dtype == DataType::kFloat16;
  if (!any) return make(n);

  // The twin's values live only while the FP32 factory runs; factories copy
  // what they keep (constants are shared_ptrs).
  std::vector<std::unique_ptr<ir::Value>> vals;
  ir::Node twin = n;
  auto twin_value = [&](ir::Value* v) -> ir::Value* {
    if (!v) return nullptr;
    auto c = std::make_unique<ir::Value>(*v);
    c->producer = nullptr;
    if (c->dtype == DataType::kFloat16) {
      c->dtype = DataType::kFloat32;
      if (c->constant) c->constant = std::make_shared<const ir::Tensor>(convert(*c->constant, DataType::kFloat32));
    }
    vals.push_back(std::move(c));
    return vals.back().get();
  };
  for (auto& v : twin.inputs) v = twin_value(v);
  for (auto& v : twin.outputs) v = twin_value(v);
  return std::make_unique<Fp16Kernel>(make(twin), std::move(in16), std::move(out16));
}

void read_window3(const ir::Node& n, size_t r, int64_t k[3], int64_t s[3], int64_t d[3], int64_t pb[3],
                  int64_t pe[3]) {
  auto kk = n.ints("kernel_shape"), ss = n.ints("strides"), dd = n.ints("dilations"), pp = n.ints("pads");
  if (r > 3 || kk.size() != r || ss.size() != r || dd.size() != r || pp.size() != 2 * r)
    throw_internal(n.label() + ": window attributes were not resolved by shape inference");
  const size_t off = 3 - r;
  for (size_t i = 0; i < r; ++i) {
    k[off + i] = kk[i];
    s[off + i] = ss[i];
    d[off + i] = dd[i];
    pb[off + i] = pp[i];
    if (pe) pe[off + i] = pp[i + r];
  }
}

}  // namespace kiln::cpu
