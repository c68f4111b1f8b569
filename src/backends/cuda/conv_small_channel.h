// The own tensor-core convolution for few input channels ("small_c_mma",
// conv_small_channel.cu): the stems of image networks, ResNet's 7x7/2 and
// VGG's or MobileNet's 3x3 on RGB. Library kernels reduce over C for each
// filter tap, so with C = 3 their tensor-core tiles are mostly padding (the
// ResNet-50 stem took a third of the FP16 network's time in cuDNN). Here the
// taps are the reduction instead: each tap's channels padded to 4, all R*S taps
// in one reduction (7x7: 196 -> 208), computed with mma.sync from an input
// patch staged in shared memory.
//
// Covers: 2-D, groups 1, dilations 1, C <= 4, R*S <= 52, strides up to 4, any
// pads; K (output channels) 16, 32 or 64; FP16 input in any layout, constant
// weights, optional constant bias, fused activation, FP16 channels-last
// output; no residual.
#pragma once

#include <string>
#include <vector>

#include "backends/cuda/kernel.h"

namespace kiln::cuda {

// The small_c_mma tactic for `n`, or none (with `why` set).
std::vector<Tactic> small_channel_tactics(const ir::Node& n, std::string* why);

}  // namespace kiln::cuda
