// Symmetric per-output-channel INT8 weight scales.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::quant {

// For a float weight tensor of `shape` [K, ...] (row-major), returns K
// scales: scale_k = max|w_k| / 127 (float division). A channel whose values
// are all 0 gets 1.0f: any positive scale quantizes zeros exactly, and 1.0
// keeps 1/scale and later rescaling products far from overflow (the smallest
// normal float would make 1/scale ~ 8.5e37). A nonzero channel whose scale
// would underflow is raised to the smallest normal float, so every scale is
// finite, > 0 and normal. Throws kBadInput naming `name` for an empty shape, a
// negative or zero dim, or a NaN / Inf weight.
std::vector<float> per_channel_weight_scales(const float* data, const std::vector<std::int64_t>& shape,
                                             const std::string& name);

}  // namespace kiln::quant
