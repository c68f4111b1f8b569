#include "ir/op_registry.h"

namespace kiln::ir {
void register_fused_ops(OpRegistry&) {}
}  // namespace kiln::ir
