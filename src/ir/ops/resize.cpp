#include "ir/op_registry.h"

namespace kiln::ir {
void register_resize_ops(OpRegistry&) {}
}  // namespace kiln::ir
