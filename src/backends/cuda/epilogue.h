// The epilogue every compute-heavy CUDA kernel shares: bias, residual and
// fused activation, applied in that order (the order src/ir/ops/conv.cpp
// fixes):  dst = act(src + bias_scale * bias[channel] + z_scale * z).
//
// Library calls (cuDNN, cuBLASLt) that cannot fuse a node's epilogue write
// their raw result and one launch of this kernel finishes the node. The same
// launch can also move the result between layouts or crop it (src and dst
// are independent strided views of the same logical 4-D dims), and pad it
// with zeros (elements outside src_dims read as 0), which the convolution
// uses for pads cuDNN cannot express.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "ir/fused_activation.h"
#include "ir/graph.h"
#include "kiln/types.h"

namespace kiln::cuda {

// A Conv / Gemm fused activation (attributes `activation`, `activation_params`).
using Activation = ir::FusedActivation;

#ifdef __CUDACC__
__device__ __forceinline__ float apply_activation(const Activation& act, float v) {
  switch (act.kind) {
    case Activation::kNone: return v;
    case Activation::kRelu: return v > 0.f ? v : 0.f;
    case Activation::kLeakyRelu: return v < 0.f ? v * act.a : v;
    case Activation::kClip: return fminf(fmaxf(v, act.a), act.b);
    case Activation::kSigmoid: return 1.f / (1.f + __expf(-v));
    case Activation::kHardSigmoid: return fminf(fmaxf(act.a * v + act.b, 0.f), 1.f);
    case Activation::kHardSwish: return v * fminf(fmaxf(v + 3.f, 0.f), 6.f) * (1.f / 6.f);
    case Activation::kTanh: return tanhf(v);
    case Activation::kSiLU: return v / (1.f + __expf(-v));
  }
  return v;
}
#endif

// One epilogue launch over logical 4-D dims (lower ranks padded with leading
// 1s). All tensors share `dtype` (kFloat32 or kFloat16; math in float).
struct Epilogue {
  DataType dtype = DataType::kFloat32;
  int64_t dims[4] = {1, 1, 1, 1};        // of dst
  int64_t src_dims[4] = {1, 1, 1, 1};    // elements at or past these read as 0
  int64_t src_strides[4] = {0, 0, 0, 0};
  int64_t dst_strides[4] = {0, 0, 0, 0};
  int64_t z_strides[4] = {0, 0, 0, 0};   // 0 on broadcast axes
  int bias_axis = -1;                    // bias indexed by this axis; -1: none
  float bias_scale = 1.f, z_scale = 1.f;
  bool has_z = false;
  Activation act;

  // Fills src_dims = dims and every stride set from one value's layout.
  static Epilogue for_value(const ir::Node& n, const ir::Value& v);
  // True when the launch would change nothing (no bias, z, act, same view).
  bool is_identity() const;
  // Enqueues the kernel; src may equal dst (in place). Picks a flat,
  // vectorized path when src, dst and z share one dense layout and the
  // pointers are aligned, else a strided one.
  void launch(const void* src, void* dst, const void* bias, const void* z, cudaStream_t s) const;
};

// Element strides of `v` as a 4-D view (leading axes padded with 1s); rank <= 4.
void strides4(const ir::Node& n, const ir::Value& v, int64_t dims[4], int64_t strides[4]);

}  // namespace kiln::cuda
