// Helpers shared by the compute-heavy CPU kernel families (conv, gemm, pool,
// norm): fused activation epilogues, per-thread scratch memory, BLAS size
// checks and an adapter that runs FP16 nodes through the FP32 kernels.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/kernel.h"
#include "ir/fused_activation.h"

namespace kiln::cpu {

// Activation fused into a kernel's epilogue (Conv / Gemm attribute
// `activation`, parameters in `activation_params`; see src/ir/ops/conv.cpp).
using Activation = ir::FusedActivation;

// The fused epilogue on one row: y[i] = act(y[i] + bias + z_scale * z[i])
// for i in [0, len). z (a residual, or Gemm's C row) may be null.
void epilogue(float* y, int64_t len, float bias, const float* z, const Activation& act, float z_scale = 1.f);

// A per-thread scratch buffer of at least `n` floats (contents undefined).
// Valid until the next call on the same thread with the same slot.
float* scratch(size_t n, int slot = 0);

// Runs fn(begin, end) over [0, n) in blocks of `block` items that the pool's
// threads claim one at a time, so a thread that starts late (a busy core)
// just takes fewer blocks instead of holding up the op. Runs inline when
// there is a single block.
void parallel_blocks(int64_t n, int64_t block, const std::function<void(int64_t, int64_t)>& fn);

// Throws kUnsupported naming the node if a BLAS dimension exceeds int range.
void check_blas_dim(const ir::Node& n, int64_t v);

// Constant tensor behind input k as FP32 (nullptr when the input is absent or
// computed at run time); FP16 constants are converted once.
std::shared_ptr<const ir::Tensor> constant_f32(const ir::Node& n, size_t k);

// Creates the kernel with `make` directly for non-FP16 nodes. For nodes with
// FP16 inputs or outputs it builds an FP32 twin of the node (constants
// converted), creates the FP32 kernel for it, and converts at run time.
std::unique_ptr<Kernel> with_fp16_adapter(const ir::Node& n, const KernelFactory& make);

// ConvTranspose and ConvInteger live in their own files; register_conv_kernels calls these.
// Copies the window attributes that shape inference made explicit
// (kernel_shape, strides, dilations, pads) for `r` spatial axes into
// right-aligned 3-D arrays, so a 2-D window has depth 1; `pe` (pad ends) may
// be null. Throws kInternal if inference left them unresolved.
void read_window3(const ir::Node& n, size_t r, int64_t k[3], int64_t s[3], int64_t d[3], int64_t pb[3],
                  int64_t pe[3] = nullptr);

void register_conv_transpose_kernel(KernelRegistry& r);
void register_conv_integer_kernel(KernelRegistry& r);

}  // namespace kiln::cpu
