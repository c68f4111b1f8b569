#include "ir/op_registry.h"

namespace kiln::ir {
void register_tensor_ops(OpRegistry&) {}
}  // namespace kiln::ir
