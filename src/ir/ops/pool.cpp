#include "ir/op_registry.h"

namespace kiln::ir {
void register_pool_ops(OpRegistry&) {}
}  // namespace kiln::ir
