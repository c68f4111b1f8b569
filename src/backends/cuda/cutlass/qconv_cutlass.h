// CUTLASS INT8 kernels on Hopper tensor cores (sm_90a, wgmma s8 x s8 ->
// s32) for kiln::QConv: implicit-GEMM convolutions, the
// "cutlass_sm90_i8:<config>" tactics, and persistent GEMMs for 1x1 stride-1
// unpadded convolutions, the "cutlass_sm90_i8gemm:<config>" tactics.
//
// Like conv_cutlass.h: the tactic side (qconv_cutlass.cpp) reads the node and
// owns the weights; each configuration is one compiled CUTLASS kernel in its
// own .cu file (qconv_sm90_<config>.cu from qconv_sm90_kernel.cuh,
// qconv_gemm_<config>.cu from qconv_gemm_kernel.cuh). No CUTLASS types cross
// this header.
//
// Every kernel computes, for int8 NHWC X, int8 KRSC W and int32 accumulation,
// the QConv epilogue in float (an epilogue visitor tree):
//   v = acc * m[k] + bias[k] + z_scale * Z;  v = act(v)
//   Y = int8 outputs: saturate_int8(round_half_even(v * inv_y_scale)); else v
// with Z read (in its own dtype) only when present. Activations: none, Relu,
// LeakyRelu, Clip. The GEMM kernels see the same NHWC tensors as row-major
// matrices: X [N*H*W, C], W [K, C], Y and Z [N*H*W, K].
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "backends/cuda/cutlass/conv_cutlass.h"
#include "kiln/types.h"

namespace kiln::cuda {

class Registry;
// Adds the cutlass_sm90_i8 tactics to kiln::QConv (after the own kernels).
// Called from Registry::global() when kiln is built with KILN_WITH_CUTLASS.
void register_qconv_cutlass_kernels(Registry& r);

namespace cutlass_sm90 {

// Activation codes of QConvOperands::act.
enum QAct : int { kQActNone = 0, kQActRelu = 1, kQActLeaky = 2, kQActClip = 3 };

struct QConvOperands {
  const void* x = nullptr;      // int8 NHWC
  const void* w = nullptr;      // int8 KRSC
  const float* m = nullptr;     // [k]: x_scale * w_scales[k]
  const float* bias = nullptr;  // [k] (zeros without B)
  const void* z = nullptr;      // NHWC like Y, of the tile's residual dtype; nullptr without
  void* y = nullptr;            // NHWC, of the tile's output dtype
  float z_scale = 0.f;          // 0 without a residual
  float inv_y_scale = 1.f;      // int8 outputs
  int act = kQActNone;
  float act_a = 0.f, act_b = 0.f;  // LeakyRelu alpha; Clip min, max
};

// One compiled kernel configuration; stateless, shared by every thread and stream.
class QConvTile {
 public:
  virtual ~QConvTile() = default;
  virtual const char* name() const = 0;  // "i8_128x128x128": output dtype and M x N x K tile
  // The tactic name's prefix: the tactic is "<family>:<name>".
  virtual const char* family() const { return "cutlass_sm90_i8"; }
  virtual DataType out_dtype() const = 0;
  virtual DataType z_dtype() const = 0;  // the residual dtype it reads (none also runs)
  // "" when this kernel can run `s` (groups 1); otherwise why not (the GEMM
  // kernels: anything but 1x1, stride 1, no padding; or what CUTLASS refuses).
  virtual std::string check(const ConvShape& s) const = 0;
  virtual size_t workspace_bytes(const ConvShape& s) const = 0;
  // Once per kernel object: raises the dynamic shared memory limit. Throws kiln::Error.
  virtual void prepare() const = 0;
  // Enqueues on `stream` only. x, w, z, y 16-byte aligned (TMA); m and bias
  // 16-byte aligned. Throws kiln::Error.
  virtual void launch(const ConvShape& s, const QConvOperands& o, void* workspace, cudaStream_t stream) const = 0;
};

// The compiled configurations (one per .cu file, named <out>[z<residual>]_
// <M>x<N>x<K tile>); a new one is one more small .cu file instantiating the
// template. Each reads its residual in its own dtype (z_dtype), converted to
// float in the epilogue.
const QConvTile& qtile_i8_128x128x64();       // int8 Y, int8 Z
const QConvTile& qtile_i8_128x64x64();        // int8 Y, int8 Z; two CTAs per SM
const QConvTile& qtile_f16_128x128x64();      // fp16 Y, int8 Z
const QConvTile& qtile_f16zf16_128x128x64();  // fp16 Y, fp16 Z
const QConvTile& qtile_f32_128x128x64();      // fp32 Y, fp32 Z

// The persistent 1x1 GEMMs (one per qconv_gemm_<config>.cu), named
// <out>[z<residual>]_<M>x<N>x<K tile>_<schedule>.
const QConvTile& qgemm_i8_128x128x128_pingpong();   // int8 Y, int8 Z
const QConvTile& qgemm_i8_128x64x64_pingpong();     // int8 Y, int8 Z; shallow layers (C or K = 64)
const QConvTile& qgemm_i8_256x128x128_coop();       // int8 Y, int8 Z; cooperative
const QConvTile& qgemm_f16_128x128x128_pingpong();  // fp16 Y, int8 Z

}  // namespace cutlass_sm90
}  // namespace kiln::cuda
