// CPU kiln::Reformat (attributes: src/ir/ops/fused.cpp). The CPU backend only
// has linear layouts, so this is a dtype conversion:
//   fp32 <-> fp16                 IEEE round-to-nearest-even (kiln::float_to_half)
//   fp32 / fp16 -> int8 (scale)   saturate(round_half_even(x / scale)), NaN -> 0
//                                 (ONNX QuantizeLinear with zero point 0)
//   int8 -> fp32 / fp16 (scale)   float(q) * scale
//   same dtype                    a copy
// Each element is converted on its own, so chunking never changes results.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/kernel.h"
#include "backends/cpu/parallel.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

constexpr int64_t kGrain = int64_t(1) << 14;

inline int8_t quantize(float x, float scale) {
  float t = x / scale;
  t = t == t ? t : 0.f;
  t = std::min(std::max(t, -128.f), 127.f);  // integer bounds: same as saturating after rounding
  return int8_t(int(std::nearbyint(t)));     // half to even under the default rounding mode
}

class ReformatKernel : public Kernel {
 public:
  explicit ReformatKernel(const ir::Node& n) {
    const ir::Value* x = n.in(0);
    const ir::Value* y = n.outputs.empty() ? nullptr : n.outputs[0];
    if (!x || !y || n.inputs.size() != 1 || n.outputs.size() != 1)
      throw_bad_input(n.label() + ": Reformat has one input and one output");
    if (x->layout != ir::Layout::kLinear || y->layout != ir::Layout::kLinear)
      throw_unsupported(n.label() + ": the CPU backend has linear layouts only, got " + layout_name(x->layout) +
                        " -> " + layout_name(y->layout));
    from_ = x->dtype;
    to_ = y->dtype;
    for (DataType t : {from_, to_})
      require_dtype(n, "Reformat", t, {DataType::kFloat32, DataType::kFloat16, DataType::kInt8});
    if ((from_ == DataType::kInt8) != (to_ == DataType::kInt8)) {
      scale_ = n.f("scale", 0.f);
      if (!std::isfinite(scale_) || !(scale_ > 0.f))
        throw_bad_input(n.label() + ": attribute 'scale' must be finite and > 0 for a Reformat to or from int8");
    }
  }

  std::string tactic() const override {
    return std::string("cpu.reformat.") + dtype_name(from_) + "_" + dtype_name(to_);
  }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    const ir::Tensor& x = *in[0];
    ir::Tensor& y = *out[0];
    const int64_t n = x.numel();
    if (from_ == to_) {
      std::memcpy(y.raw(), x.raw(), x.nbytes());
      return;
    }
    const float s = scale_;
    const void* src = x.raw();
    void* dst = y.raw();
    auto each = [&](auto convert) {
      parallel_for(n, [&](int64_t b, int64_t e) { convert(b, e); }, kGrain);
    };
    const float* f32 = static_cast<const float*>(src);
    const uint16_t* f16 = static_cast<const uint16_t*>(src);
    const int8_t* q8 = static_cast<const int8_t*>(src);
    using D = DataType;
    if (from_ == D::kFloat32 && to_ == D::kFloat16) {
      uint16_t* d = static_cast<uint16_t*>(dst);
      each([&](int64_t b, int64_t e) { for (int64_t i = b; i < e; ++i) d[i] = float_to_half(f32[i]); });
    } else if (from_ == D::kFloat16 && to_ == D::kFloat32) {
      float* d = static_cast<float*>(dst);
      each([&](int64_t b, int64_t e) { for (int64_t i = b; i < e; ++i) d[i] = half_to_float(f16[i]); });
    } else if (from_ == D::kFloat32) {  // -> int8
      int8_t* d = static_cast<int8_t*>(dst);
      each([&](int64_t b, int64_t e) { for (int64_t i = b; i < e; ++i) d[i] = quantize(f32[i], s); });
    } else if (from_ == D::kFloat16) {  // -> int8
      int8_t* d = static_cast<int8_t*>(dst);
      each([&](int64_t b, int64_t e) { for (int64_t i = b; i < e; ++i) d[i] = quantize(half_to_float(f16[i]), s); });
    } else if (to_ == D::kFloat32) {  // int8 ->
      float* d = static_cast<float*>(dst);
      each([&](int64_t b, int64_t e) { for (int64_t i = b; i < e; ++i) d[i] = float(q8[i]) * s; });
    } else {  // int8 -> fp16
      uint16_t* d = static_cast<uint16_t*>(dst);
      each([&](int64_t b, int64_t e) { for (int64_t i = b; i < e; ++i) d[i] = float_to_half(float(q8[i]) * s); });
    }
  }

 private:
  DataType from_ = DataType::kFloat32, to_ = DataType::kFloat32;
  float scale_ = 1.f;
};

}  // namespace

void register_reformat_kernels(KernelRegistry& r) {
  r.add("Reformat", [](const ir::Node& n) -> std::unique_ptr<Kernel> { return std::make_unique<ReformatKernel>(n); },
        "kiln");
}

}  // namespace kiln::cpu
