// The own direct depthwise convolution ("dw_direct", conv_depthwise.cu):
// group == C_in == C_out, kernel up to 7x7, stride 1 or 2, any pads and
// dilations, bias / residual / activation fused. cuDNN's depthwise paths are
// slow at batch 1 (MobileNetV3), so this competes in the tactic timing.
#pragma once

#include <string>
#include <vector>

#include "backends/cuda/kernel.h"

namespace kiln::cuda {

// The dw_direct tactic for `n`, or none (with `why` set) when `n` is not a
// depthwise convolution it covers.
std::vector<Tactic> depthwise_tactics(const ir::Node& n, std::string* why);

}  // namespace kiln::cuda
