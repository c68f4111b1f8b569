#include "ir/op_registry.h"

namespace kiln::ir {
void register_softmax_ops(OpRegistry&) {}
}  // namespace kiln::ir
