#include "backends/cpu/kernel.h"

namespace kiln::cpu {
void register_pool_kernels(KernelRegistry&) {}
}  // namespace kiln::cpu
