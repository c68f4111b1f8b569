#include "ir/op_registry.h"

namespace kiln::ir {
void register_misc_ops(OpRegistry&) {}
}  // namespace kiln::ir
