#include "ir/op_registry.h"

namespace kiln::ir {
void register_unary_ops(OpRegistry&) {}
}  // namespace kiln::ir
