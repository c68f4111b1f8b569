#include "ir/op_registry.h"

namespace kiln::ir {
void register_reduce_ops(OpRegistry&) {}
}  // namespace kiln::ir
