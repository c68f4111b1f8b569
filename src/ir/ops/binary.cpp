#include "ir/op_registry.h"

namespace kiln::ir {
void register_binary_ops(OpRegistry&) {}
}  // namespace kiln::ir
