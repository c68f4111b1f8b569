#include "backends/cpu/kernel.h"

namespace kiln::cpu {
void register_fused_kernels(KernelRegistry&) {}
}  // namespace kiln::cpu
