// The CUDA Engine: a loaded GPU plan with one kernel (the tactic the builder
// chose) per layer, weights on the device, and per-context activation memory.
#pragma once

#include <memory>
#include <string>

#include "ir/graph.h"
#include "kiln/kiln.h"

namespace kiln {

// Device copies of constants shared by the engines of one profile plan,
// whose graphs share their constant Tensors: keyed by the host data pointer,
// so each is uploaded once however many specializations read it.
struct DeviceConstantCache;
std::shared_ptr<DeviceConstantCache> make_device_constant_cache();

std::unique_ptr<Engine> make_cuda_engine(std::unique_ptr<ir::Graph> graph, const std::string& origin,
                                         const std::string& device, DeviceConstantCache* shared = nullptr);

}  // namespace kiln
