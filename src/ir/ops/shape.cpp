#include "ir/op_registry.h"

namespace kiln::ir {
void register_shape_ops(OpRegistry&) {}
}  // namespace kiln::ir
