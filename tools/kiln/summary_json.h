// JSON views of a NetworkSummary, shared by `kiln inspect --json` and
// `kiln report` so the page and the command agree field for field.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kiln/kiln.h"

namespace kiln::cli {

nlohmann::ordered_json tensor_json(const TensorInfo& t);
nlohmann::ordered_json tensors_json(const std::vector<TensorInfo>& ts);
nlohmann::ordered_json layers_json(const std::vector<LayerInfo>& layers);

// "conv1+bn1+relu1 -> CBR" for every layer that absorbed others.
std::vector<std::string> fused_groups(const NetworkSummary& s);

// The object `kiln inspect --json` prints. `kind` is "plan" or "onnx";
// `device` is written for plans only; `before` (may be null) is the graph as
// imported, written as layers_before.
nlohmann::ordered_json summary_json(const std::string& source, const std::string& kind, const std::string& device,
                                    const NetworkSummary& s, const NetworkSummary* before);

}  // namespace kiln::cli
