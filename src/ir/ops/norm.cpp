#include "ir/op_registry.h"

namespace kiln::ir {
void register_norm_ops(OpRegistry&) {}
}  // namespace kiln::ir
