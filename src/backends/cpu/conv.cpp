#include "backends/cpu/kernel.h"

namespace kiln::cpu {
void register_conv_kernels(KernelRegistry&) {}
}  // namespace kiln::cpu
