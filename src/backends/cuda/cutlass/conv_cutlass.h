// CUTLASS implicit-GEMM convolutions on Hopper tensor cores (sm_90a), the
// "cutlass_sm90:<tile>" tactics of Conv.
//
// The tactic side (conv_cutlass.cpp) reads the node and owns the weights; each
// tile configuration is one compiled CUTLASS kernel in its own .cu file
// (conv_sm90_<tile>.cu, instantiated from conv_sm90_kernel.cuh) so the heavy
// template instantiations compile in parallel. This header is the plain C++
// boundary between the two: no CUTLASS types cross it.
//
// Every kernel computes, for FP16 NHWC X and Y, KRSC weights and FP32
// accumulation:  Y = clamp(conv(X, W) + bias[k] + Z, lo, hi)
// which is the node's act(conv + B + Z) for activation none (lo = -inf,
// hi = +inf), Relu (0, +inf) and Clip (min, max). NaN propagates as in the
// CPU reference.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace kiln::cuda {

class Registry;
// Adds the cutlass_sm90 tactics to Conv (after the cuDNN ones). Called from
// Registry::global() when kiln is built with KILN_WITH_CUTLASS.
void register_conv_cutlass_kernels(Registry& r);

namespace cutlass_sm90 {

// One 2-D cross-correlation, groups = 1. X [n, h, w, c], W [k, r, s, c],
// Y and Z [n, p, q, k], all packed channels-last. Spatial pairs are (h, w).
struct ConvShape {
  int n = 0, h = 0, w = 0, c = 0;
  int k = 0, r = 0, s = 0;
  int p = 0, q = 0;
  int pad_lo[2] = {0, 0}, pad_hi[2] = {0, 0};
  int stride[2] = {1, 1}, dil[2] = {1, 1};
  bool has_bias = false, has_z = false;
};

struct ConvOperands {
  const void* x = nullptr;     // __half NHWC
  const void* w = nullptr;     // __half KRSC
  const void* bias = nullptr;  // __half [k], or nullptr
  const void* z = nullptr;     // __half NHWC like Y, or nullptr
  void* y = nullptr;           // __half NHWC
  float lo = 0.f, hi = 0.f;    // output clamp
};

// One compiled kernel configuration. Stateless: one instance serves every
// thread and stream.
class ConvTile {
 public:
  virtual ~ConvTile() = default;
  virtual const char* name() const = 0;  // "128x128x64" (M pixels x N channels x K reduction)
  // "" when this kernel can run `s`; otherwise what CUTLASS refuses.
  virtual std::string check(const ConvShape& s) const = 0;
  virtual size_t workspace_bytes(const ConvShape& s) const = 0;
  // Once per kernel object before the first launch: raises the kernel's
  // dynamic shared memory limit. Throws kiln::Error on failure.
  virtual void prepare() const = 0;
  // Enqueues the convolution on `stream` only. Pointers must be 16-byte
  // aligned (TMA); `workspace` holds workspace_bytes(s). Throws kiln::Error.
  virtual void launch(const ConvShape& s, const ConvOperands& o, void* workspace, cudaStream_t stream) const = 0;
};

// For every tile's prepare(): raises kernel `fn`'s dynamic shared-memory
// limit to `bytes` where that is above the 48 KB default (each CUTLASS
// instantiation has one fixed size); throws kiln::Error naming `who`
// ("family:tile") when the device refuses.
void reserve_shared_memory(const void* fn, int bytes, const std::string& who);

// The compiled configurations (one per .cu file).
const ConvTile& tile_128x128x64();
const ConvTile& tile_128x64x64();
const ConvTile& tile_64x128x64();

}  // namespace cutlass_sm90
}  // namespace kiln::cuda
