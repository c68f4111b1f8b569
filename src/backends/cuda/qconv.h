// INT8 convolution (kiln::QConv) on CUDA: the node as every QConv tactic
// reads it, and the own kernels of qconv_direct.cu.
//
// Node semantics (docs: the INT8 contract; CPU reference in
// src/backends/cpu/qconv.cpp), per output element y[n, k, p, q]:
//   acc = sum of int32(x) * int32(w) over the window and C/group channels
//   v   = float(acc) * m[k] + B[k],    m[k] = x_scale * w_scales[k] (float)
//   v  += Z int8 ? z_scale * float(z) : float(z)
//   v   = act(v)
//   y   = to == int8 ? saturate_int8(round_half_even(v / y_scale)) : v
// Tactics:
//   qconv_direct  one thread per output, any group / window / layout
//   qconv_dp4a    __dp4a over 4 channels at a time: channels-last X,
//                 C/group a multiple of 4
//   qconv_mma:m128 / :m256  groups 1, C and K multiples of 64, any window,
//                 stride, pads and dilation: an implicit GEMM on int8
//                 mma.sync (qconv_mma_kernel.cuh) over tiles of 128 or 256 output
//                 pixels, the weights of 64 output channels resident in
//                 shared memory (R*S*C up to 3x3 x 320 on 128-pixel tiles);
//   qconv_mma:m128s / :m256s  the same with the weights streamed chunk by
//                 chunk (any depth), offered for R*S*C >= 512
//   qconv_wgmma:<tile>  the same tiles on Hopper's warpgroup mma (sm_90a,
//                 sm90a/qconv_wgmma.cu), plus m128n128 / m128n128s: 128
//                 output channels per tile (K a multiple of 128); offered
//                 on compute capability 9.0 only
//   cutlass_sm90_i8:<config>  (cutlass/qconv_cutlass.h) Hopper tensor cores
//   cutlass_sm90_i8gemm:<config>  1x1 stride-1 unpadded convs as persistent CUTLASS
//                 GEMMs (cutlass/qconv_cutlass.h)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/kernel.h"
#include "ir/fused_activation.h"
#include "ir/graph.h"

namespace kiln::cuda {

void register_qconv_kernels(Registry& r);

namespace qconv {

// Everything a QConv kernel needs, read once from the node.
struct Plan {
  int64_t n = 0, c = 0, h = 0, w = 0;  // X [N, C, H, W] (logical)
  int64_t k = 0, r = 0, s = 0;         // W [K, C/group, R, S]
  int64_t p = 0, q = 0;                // Y [N, K, P, Q]
  int64_t group = 1;
  int64_t pad[2] = {0, 0}, pad_end[2] = {0, 0};  // (h, w) begins and ends
  int64_t stride[2] = {1, 1}, dil[2] = {1, 1};
  bool has_bias = false, has_z = false;
  DataType z = DataType::kInt8;        // residual dtype (when has_z)
  DataType y = DataType::kInt8;        // output dtype: int8, fp32 or fp16
  float z_scale = 1.f, y_scale = 1.f;  // z_scale used when Z is int8; y_scale when Y is int8
  std::vector<float> m;                // per output channel: x_scale * w_scales[k]
  std::vector<float> bias;             // per output channel (zeros without B)
  ir::FusedActivation act;
  int64_t xs[4] = {}, zs[4] = {}, ys[4] = {};  // element strides per logical axis (N, C, H, W)
  std::shared_ptr<const ir::Tensor> weights;   // int8 [K, C/group, R, S]
};

// Fills `p` from a QConv node; false with `why` when no kernel here can run
// it (a malformed node the shape inference should have refused included).
bool read_plan(const ir::Node& n, Plan& p, std::string& why);

// True when v stores its bytes channels-last (NHWC, or a map where C or H*W
// is 1, whose bytes are the same either way).
bool channels_last(const ir::Value& v);

// ---- own kernels (qconv_direct.cu) ---------------------------------------

enum ZKind : int { kZNone = 0, kZInt8 = 1, kZHalf = 2, kZFloat = 3 };
enum YKind : int { kYInt8 = 0, kYHalf = 1, kYFloat = 2 };

// Passed by value to the kernels; pointers are device memory.
struct DirectArgs {
  const int8_t* x = nullptr;
  // direct: int8, element (k, r, s, c) at k * wsk + ((r * S + s) * C/group + c) * wsc;
  // dp4a: int32 words of 4 channels, [R][S][C/group/4][K]
  const void* w = nullptr;
  const float* m = nullptr;    // [K]
  const float* bias = nullptr; // [K]
  const void* z = nullptr;
  void* y = nullptr;
  int64_t n = 0, c = 0, h = 0, w_ = 0, k = 0, p = 0, q = 0;
  int r = 0, s = 0, cg = 0, kg = 0;  // kernel extent, channels per group in and out
  int stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1, pad_h = 0, pad_w = 0;
  int64_t xs[4] = {}, zs[4] = {}, ys[4] = {};
  int64_t wsk = 1, wsc = 1;
  int z_kind = kZNone, y_kind = kYInt8;
  float z_scale = 1.f, y_scale = 1.f;
  ir::FusedActivation act;
  int64_t total = 0;      // N * P * Q * K outputs
  bool small = true;      // every index and offset fits in int32
};

// Arguments of `p` (pointers aside).
DirectArgs direct_args(const Plan& p);
// Enqueue one launch on `s`; throw kiln::Error on a launch failure.
void launch_direct(const DirectArgs& a, cudaStream_t s);
void launch_dp4a(const DirectArgs& a, cudaStream_t s);

// ---- qconv_mma (qconv_mma.cu, kernel in qconv_mma_kernel.cuh) ----------

// A qconv_mma tactic: tiles of 128 * wm output pixels (wm 1 or 2: m16
// fragments per warp) x tn output channels, the weights of those channels
// resident in shared memory or streamed with the input chunk by chunk, and
// mma.sync or (sm_90a, compute capability 9.0 only) wgmma.
struct MmaShape {
  int wm = 1;
  bool stream = false;
  bool wgmma = false;
  int tn = 64;  // output channels per tile; 128 on wgmma with wm 1 (each input chunk feeds twice the outputs)
};
// "" when qconv_mma in `shape` runs `p`; otherwise why not.
std::string mma_refusal(const Plan& p, MmaShape shape);
std::unique_ptr<Kernel> make_mma_kernel(const Plan& p, MmaShape shape);

// Copies the first k of kp channels of packed rows [n * p * q][kp] into Y
// (logical [n, k, p, q], element strides ys); elements of `esize` bytes (1,
// 2 or 4). For tensor-core tiles that write padded output channels.
struct CropArgs {
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t n = 0, k = 0, kp = 0, p = 0, q = 0;
  int64_t ys[4] = {};
  int esize = 1;
};
void launch_crop(const CropArgs& a, cudaStream_t s);

}  // namespace qconv
}  // namespace kiln::cuda
