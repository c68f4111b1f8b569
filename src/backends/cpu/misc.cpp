#include "backends/cpu/kernel.h"

namespace kiln::cpu {
void register_misc_kernels(KernelRegistry&) {}
}  // namespace kiln::cpu
