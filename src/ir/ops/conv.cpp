#include "ir/op_registry.h"

namespace kiln::ir {
void register_conv_ops(OpRegistry&) {}
}  // namespace kiln::ir
