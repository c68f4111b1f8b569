#include "backends/cpu/kernel.h"

namespace kiln::cpu {
void register_unary_kernels(KernelRegistry&) {}
}  // namespace kiln::cpu
