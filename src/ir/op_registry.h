// The ops kiln knows, keyed by (domain, op type). Each entry carries the
// shape/type inference for the op. The ONNX importer accepts a node when its
// op is registered here; plugins extend the registry with their own entries.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::ir {

// Sets dtype/dims/has_shape of every output of `n` from its inputs and
// attributes. Input values have has_shape set; constant inputs carry data.
// Throws kBadInput (inconsistent shapes) or kUnsupported naming the node.
using InferFn = std::function<void(Node& n)>;

struct OpDef {
  std::string domain;  // "" = ai.onnx
  std::string op_type;
  InferFn infer;
  bool foldable = true;  // may be evaluated at build time when all inputs are constant
};

class OpRegistry {
 public:
  static OpRegistry& global();  // holds the built-in ops on first use
  void add(OpDef def);          // replaces an existing entry of the same key
  const OpDef* find(const std::string& domain, const std::string& op_type) const;
  std::vector<std::string> list() const;  // "domain::op" sorted

 private:
  std::vector<OpDef> defs_;
};

// Evaluates a node whose inputs are all constant (the CPU backend provides one).
class Evaluator {
 public:
  virtual ~Evaluator() = default;
  // Fills `outputs` (already sized to the node's outputs with inferred dims).
  virtual void evaluate(const Node& n, const std::vector<const Tensor*>& inputs,
                        std::vector<Tensor>& outputs) = 0;
};

// Runs inference over all nodes in topological order. With `eval`, every
// foldable node whose inputs are all constants is evaluated, its outputs
// become constants and the node is removed (this folds shape subgraphs).
void infer_shapes(Graph& g, Evaluator* eval = nullptr);

// Helpers for infer functions.
void set_output(Node& n, size_t k, DataType dtype, Dims dims);
const Value& input_checked(const Node& n, size_t k);  // throws if absent / no shape
int64_t normalize_axis(const Node& n, int64_t axis, int64_t rank);  // negative ok; throws
// Numpy-style broadcast of two shapes; throws kBadInput naming the node.
Dims broadcast_dims(const Node& n, const Dims& a, const Dims& b);

// One registration function per op family (src/ir/ops/<family>.cpp).
void register_conv_ops(OpRegistry&);
void register_gemm_ops(OpRegistry&);
void register_pool_ops(OpRegistry&);
void register_norm_ops(OpRegistry&);
void register_unary_ops(OpRegistry&);
void register_binary_ops(OpRegistry&);
void register_reduce_ops(OpRegistry&);
void register_softmax_ops(OpRegistry&);
void register_shape_ops(OpRegistry&);
void register_tensor_ops(OpRegistry&);
void register_resize_ops(OpRegistry&);
void register_misc_ops(OpRegistry&);
void register_quantize_ops(OpRegistry&);  // QuantizeLinear / DequantizeLinear
void register_fused_ops(OpRegistry&);  // kiln-internal ops made by fusion passes (domain "kiln")

}  // namespace kiln::ir
