#include "backends/cpu/kernel.h"

namespace kiln::cpu {
void register_binary_kernels(KernelRegistry&) {}
}  // namespace kiln::cpu
