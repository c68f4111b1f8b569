#include "ir/op_registry.h"

namespace kiln::ir {
void register_gemm_ops(OpRegistry&) {}
}  // namespace kiln::ir
