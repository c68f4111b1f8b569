#include "backends/cpu/kernel.h"

namespace kiln::cpu {
void register_gemm_kernels(KernelRegistry&) {}
}  // namespace kiln::cpu
