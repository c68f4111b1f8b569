#include "quant/weights.h"

#include <cfloat>
#include <cmath>

#include "kiln/error.h"

namespace kiln::quant {

std::vector<float> per_channel_weight_scales(const float* data, const std::vector<std::int64_t>& shape,
                                             const std::string& name) {
  if (shape.empty())
    throw_bad_input("weight '" + name + "': per-channel scales need a tensor of rank >= 1 ([K, ...])");
  std::int64_t inner = 1;
  for (std::int64_t d : shape) {
    if (d <= 0) throw_bad_input("weight '" + name + "': every dim must be > 0 for per-channel scales");
  }
  for (std::size_t i = 1; i < shape.size(); ++i) inner *= shape[i];
  const std::int64_t k_count = shape[0];
  std::vector<float> scales(static_cast<std::size_t>(k_count));
  for (std::int64_t k = 0; k < k_count; ++k) {
    const float* w = data + k * inner;
    float amax = 0.0f;
    for (std::int64_t j = 0; j < inner; ++j) {
      if (!std::isfinite(w[j]))
        throw_bad_input("weight '" + name + "': channel " + std::to_string(k) + " holds a NaN or Inf value; fix the model");
      amax = std::fmax(amax, std::fabs(w[j]));
    }
    float s = amax / 127.0f;
    if (amax == 0.0f) s = 1.0f;
    else if (s < FLT_MIN) s = FLT_MIN;
    scales[static_cast<std::size_t>(k)] = s;
  }
  return scales;
}

}  // namespace kiln::quant
