#include "backends/cpu/kernel.h"

namespace kiln::cpu {
void register_shape_kernels(KernelRegistry&) {}
}  // namespace kiln::cpu
