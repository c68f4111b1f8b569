#include "backends/cpu/kernel.h"

namespace kiln::cpu {
void register_softmax_kernels(KernelRegistry&) {}
}  // namespace kiln::cpu
