// Pass tests in the style of TVM's: build a `before` graph and the graph the
// pass should produce, then check (1) the rewritten graph is structurally
// equal to `expected` and (2) it computes the same outputs as `before` on
// random inputs through the CPU engine.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/kiln.h"
#include "passes/pass.h"
#include "support/op_test.h"

namespace kiln::test {

// Small graph DSL. Values get fresh names; shapes are inferred by finish().
class GraphBuilder {
 public:
  ir::Value* input(ir::Dims dims, DataType dtype = DataType::kFloat32, int batch_axis = -1);
  ir::Value* constant(ir::Tensor t);
  ir::Value* random(ir::Dims dims, uint32_t seed, double lo = -1, double hi = 1);
  ir::Value* scalar(float v);
  ir::Value* ints(std::vector<int64_t> v);
  // Adds a node; returns its first output (all outputs via last_outputs()).
  ir::Value* node(const std::string& op, std::vector<ir::Value*> inputs,
                  std::map<std::string, ir::Attribute> attrs = {}, int num_outputs = 1,
                  const std::string& name = "");
  const std::vector<ir::Value*>& last_outputs() const { return last_; }
  void output(ir::Value* v) { g_->outputs.push_back(v); }
  std::unique_ptr<ir::Graph> finish();  // infers shapes; the builder is spent

 private:
  std::string fresh(const std::string& base);
  std::unique_ptr<ir::Graph> g_ = std::make_unique<ir::Graph>();
  std::vector<ir::Value*> last_;
  int counter_ = 0;
};

// One line per node: op type, kiln attributes that passes set (activation),
// and where each input comes from ("in0", "const[dims]", "n3.0"). Constant
// values and names are ignored: rewrites change them.
std::string structure(const ir::Graph& g);

// Runs the graph on the CPU engine.
std::map<std::string, HostTensor> run_graph(const ir::Graph& g, const std::map<std::string, HostTensor>& inputs);
std::map<std::string, HostTensor> random_inputs(const ir::Graph& g, uint32_t seed);

// Applies `pass` to a copy of `before` and checks it against `expected` (if
// given) and numerically against `before` (max error relative to each
// output's largest magnitude <= tol). Returns the rewritten graph.
std::unique_ptr<ir::Graph> check_pass(passes::Pass& pass, const ir::Graph& before, const ir::Graph* expected,
                                      double tol = 1e-5);

}  // namespace kiln::test
