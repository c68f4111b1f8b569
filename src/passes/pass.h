// Graph passes: each rewrites an ir::Graph without changing what it computes.
// One pass per file. Most are RewriteRules (after ONNX Runtime's rewrite
// rules): they name the op types they target, check cheap conditions first
// and report what they changed, which the PassManager records for
// `kiln inspect` ("conv1+bn1+relu1 -> Conv").
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ir/op_registry.h"

namespace kiln::passes {

struct PassContext {
  ir::Evaluator* evaluator = nullptr;  // evaluates constant nodes (folding)
  std::vector<std::string> notes;      // one line per rewrite, filled by passes
  void note(std::string line) { notes.push_back(std::move(line)); }
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual const char* name() const = 0;
  // Returns true if the graph changed.
  virtual bool run(ir::Graph& g, PassContext& ctx) = 0;
};

// A local rewrite applied to every node of the target op types, in order,
// until no node matches.
class RewriteRule : public Pass {
 public:
  virtual std::vector<std::string> targets() const = 0;  // op types (default domain)
  // Tries to rewrite around `n`; returns true if it changed the graph (the
  // node may then have been removed).
  virtual bool apply(ir::Graph& g, ir::Node& n, PassContext& ctx) = 0;
  bool run(ir::Graph& g, PassContext& ctx) override;
};

// What one pass did, for inspect and the build report.
struct PassRecord {
  std::string pass;
  int64_t nodes_before = 0, nodes_after = 0;
  std::vector<std::string> notes;
};

class PassManager {
 public:
  void add(std::unique_ptr<Pass> p) { passes_.push_back(std::move(p)); }
  // Runs the passes in order (and the whole list again while anything
  // changes, at most a few rounds); re-infers shapes after each pass.
  std::vector<PassRecord> run(ir::Graph& g, ir::Evaluator* evaluator) const;

  // kiln's standard optimization pipeline.
  static PassManager standard();

 private:
  std::vector<std::unique_ptr<Pass>> passes_;
};

// Factories, one per pass file.
std::unique_ptr<Pass> make_fold_constants();
std::unique_ptr<Pass> make_eliminate_dead_code();
std::unique_ptr<Pass> make_fold_qdq();  // activation QuantizeLinear->DequantizeLinear pairs out, scales into metadata "int8_scale/<tensor>"
std::unique_ptr<Pass> make_remove_identity();
std::unique_ptr<Pass> make_eliminate_common_subexpressions();
std::unique_ptr<Pass> make_fold_batchnorm();
std::unique_ptr<Pass> make_lower_batchnorm();  // BatchNormalization left unfolded -> Mul + Add
std::unique_ptr<Pass> make_fuse_conv_activation();
std::unique_ptr<Pass> make_fold_pad();                  // Pad into Conv / pooling pads
std::unique_ptr<Pass> make_cancel_transpose_reshape();  // Transpose/Reshape pairs that cancel or merge
std::unique_ptr<Pass> make_fold_scale_shift();          // Mul/Add by constants into a neighbouring Conv
std::unique_ptr<Pass> make_fuse_gemm();                 // MatMul+Add -> Gemm, Flatten/Reshape -> Gemm heads
std::unique_ptr<Pass> make_fuse_elementwise_chain();    // elementwise chains -> one FusedElementwise kernel
std::unique_ptr<Pass> make_fuse_conv_add();             // residual Add into the Conv epilogue (input Z)

}  // namespace kiln::passes
