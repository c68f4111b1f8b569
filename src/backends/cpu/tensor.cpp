#include "backends/cpu/kernel.h"

namespace kiln::cpu {
void register_tensor_kernels(KernelRegistry&) {}
}  // namespace kiln::cpu
