// Attribute values for the nodes that importers and passes create or edit.
#pragma once

#include <cstdint>
#include <string>

#include "ir/graph.h"

namespace kiln::ir {

Attribute int_attr(int64_t v);
Attribute float_attr(float v);
Attribute string_attr(const std::string& v);

}  // namespace kiln::ir
