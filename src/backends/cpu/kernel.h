// CPU kernels: one op family per file (conv.cpp, gemm.cpp, ...). A factory
// sees the node once at engine load (attributes, input shapes, constant
// weights: pre-pack here) and returns a Kernel that runs it many times.
// These kernels are the reference every GPU tactic is tested against.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ir/op_registry.h"

namespace kiln::cpu {

class Kernel {
 public:
  virtual ~Kernel() = default;
  // `in` follows node.inputs (nullptr for omitted optional inputs); `out`
  // follows node.outputs and is preallocated with the inferred dims (nullptr
  // for omitted optional outputs). One kernel serves every ExecutionContext of
  // an engine, so run() may be called from several threads at once: it must
  // not mutate the kernel; scratch memory is per call or per thread.
  virtual void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) = 0;
  // Name of the implementation chosen for this node (recorded in the plan).
  virtual std::string tactic() const = 0;
};

// Throws kUnsupported naming the node for dtype/attribute combinations the
// kernel does not implement (the node is then rejected, never run wrong).
using KernelFactory = std::function<std::unique_ptr<Kernel>(const ir::Node&)>;

class KernelRegistry {
 public:
  static KernelRegistry& global();  // holds the built-in kernels on first use
  void add(const std::string& op_type, KernelFactory f, const std::string& domain = "");
  bool has(const std::string& domain, const std::string& op_type) const;
  std::unique_ptr<Kernel> create(const ir::Node& n) const;  // throws kUnsupported if none

 private:
  struct Entry { std::string domain, op_type; KernelFactory make; };
  std::vector<Entry> entries_;
};

// A Kernel from a lambda, for simple ops.
template <typename F> class FnKernel : public Kernel {
 public:
  FnKernel(std::string tactic, F f) : tactic_(std::move(tactic)), f_(std::move(f)) {}
  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override { f_(in, out); }
  std::string tactic() const override { return tactic_; }

 private:
  std::string tactic_;
  F f_;
};
template <typename F> std::unique_ptr<Kernel> make_kernel(std::string tactic, F f) {
  return std::make_unique<FnKernel<F>>(std::move(tactic), std::move(f));
}

// Evaluates constant nodes for ir::infer_shapes (build-time folding).
class ConstantEvaluator : public ir::Evaluator {
 public:
  void evaluate(const ir::Node& n, const std::vector<const ir::Tensor*>& inputs,
                std::vector<ir::Tensor>& outputs) override;
};

// Throws kUnsupported "<node>: <what> dtype <x> is not supported" unless t is in `ok`.
void require_dtype(const ir::Node& n, const char* what, DataType t, std::initializer_list<DataType> ok);

// One registration function per op family file.
void register_conv_kernels(KernelRegistry&);
void register_gemm_kernels(KernelRegistry&);
void register_pool_kernels(KernelRegistry&);
void register_norm_kernels(KernelRegistry&);
void register_unary_kernels(KernelRegistry&);
void register_binary_kernels(KernelRegistry&);
void register_reduce_kernels(KernelRegistry&);
void register_softmax_kernels(KernelRegistry&);
void register_shape_kernels(KernelRegistry&);
void register_tensor_kernels(KernelRegistry&);
void register_resize_kernels(KernelRegistry&);
void register_misc_kernels(KernelRegistry&);
void register_fused_kernels(KernelRegistry&);

}  // namespace kiln::cpu
