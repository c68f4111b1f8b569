#include <algorithm>

#include "backends/cpu/kernel.h"
#include "kiln/error.h"

namespace kiln::cpu {

// INT8 execution: QConv (qconv.cpp) and Reformat (reformat.cpp), domain "kiln".
void register_qconv_kernels(KernelRegistry&);
void register_reformat_kernels(KernelRegistry&);
void register_quantize_kernels(KernelRegistry&);  // quantize.cpp: QuantizeLinear / DequantizeLinear

KernelRegistry& KernelRegistry::global() {
  static KernelRegistry* reg = [] {
    auto* r = new KernelRegistry;
    register_conv_kernels(*r);
    register_gemm_kernels(*r);
    register_pool_kernels(*r);
    register_norm_kernels(*r);
    register_unary_kernels(*r);
    register_binary_kernels(*r);
    register_reduce_kernels(*r);
    register_softmax_kernels(*r);
    register_shape_kernels(*r);
    register_tensor_kernels(*r);
    register_resize_kernels(*r);
    register_misc_kernels(*r);
    register_fused_kernels(*r);
    register_qconv_kernels(*r);
    register_reformat_kernels(*r);
    register_quantize_kernels(*r);
    return r;
  }();
  return *reg;
}

void KernelRegistry::add(const std::string& op_type, KernelFactory f, const std::string& domain) {
  for (auto& e : entries_)
    if (e.domain == domain && e.op_type == op_type) {
      e.make = std::move(f);
      return;
    }
  entries_.push_back({domain, op_type, std::move(f)});
}

bool KernelRegistry::has(const std::string& domain, const std::string& op_type) const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const Entry& e) { return e.domain == domain && e.op_type == op_type; });
}

std::unique_ptr<Kernel> KernelRegistry::create(const ir::Node& n) const {
  for (auto& e : entries_)
    if (e.domain == n.domain && e.op_type == n.op_type) return e.make(n);
  throw_unsupported(n.label() + ": no CPU kernel for op '" + n.op_type + "'" +
                    (n.domain.empty() ? "" : " in domain '" + n.domain + "'"));
}

void ConstantEvaluator::evaluate(const ir::Node& n, const std::vector<const ir::Tensor*>& inputs,
                                 std::vector<ir::Tensor>& outputs) {
  auto k = KernelRegistry::global().create(n);
  std::vector<ir::Tensor*> outs;
  for (size_t k = 0; k < outputs.size(); ++k) outs.push_back(n.outputs[k] ? &outputs[k] : nullptr);
  k->run(inputs, outs);
}

void require_dtype(const ir::Node& n, const char* what, DataType t, std::initializer_list<DataType> ok) {
  for (DataType d : ok)
    if (d == t) return;
  throw_unsupported(n.label() + ": " + what + " dtype " + dtype_name(t) + " is not supported by the CPU kernel");
}

}  // namespace kiln::cpu
