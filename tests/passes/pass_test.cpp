#include "passes/pass_test.h"

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "backends/cpu/kernel.h"
#include "builder/clone.h"
#include "engine/cpu_engine.h"
#include "ir/op_registry.h"

namespace kiln::test {

std::string GraphBuilder::fresh(const std::string& base) { return base + std::to_string(counter_++); }

ir::Value* GraphBuilder::input(ir::Dims dims, DataType dtype, int batch_axis) {
  ir::Value* v = g_->add_value(fresh("x"));
  v->dtype = dtype;
  v->dims = std::move(dims);
  v->has_shape = true;
  v->batch_axis = batch_axis;
  g_->inputs.push_back(v);
  return v;
}

ir::Value* GraphBuilder::constant(ir::Tensor t) { return g_->add_constant(fresh("c"), std::move(t)); }

ir::Value* GraphBuilder::random(ir::Dims dims, uint32_t seed, double lo, double hi) {
  return constant(random_tensor(DataType::kFloat32, std::move(dims), seed, lo, hi));
}

ir::Value* GraphBuilder::scalar(float v) { return constant(ir::Tensor::from_float({v}, {})); }

ir::Value* GraphBuilder::ints(std::vector<int64_t> v) {
  int64_t n = int64_t(v.size());
  return constant(ir::Tensor::from_int64(v, {n}));
}

ir::Value* GraphBuilder::node(const std::string& op, std::vector<ir::Value*> inputs,
                              std::map<std::string, ir::Attribute> attrs, int num_outputs,
                              const std::string& name) {
  last_.clear();
  for (int k = 0; k < num_outputs; ++k) last_.push_back(g_->add_value(fresh("t")));
  ir::Node* n = g_->add_node(op, name.empty() ? fresh(op) : name, std::move(inputs), last_);
  n->attrs = std::move(attrs);
  n->opset = 18;
  return last_[0];
}

std::unique_ptr<ir::Graph> GraphBuilder::finish() {
  ir::infer_shapes(*g_, nullptr);
  return std::move(g_);
}

std::string structure(const ir::Graph& g) {
  std::map<const ir::Value*, std::string> where;
  for (size_t k = 0; k < g.inputs.size(); ++k) where[g.inputs[k]] = "in" + std::to_string(k);
  std::ostringstream os;
  int idx = 0;
  for (auto& n : g.nodes()) {
    os << "n" << idx << " " << n->op_type;
    if (n->has("activation")) os << "[" << n->s("activation", "") << "]";
    os << "(";
    for (size_t k = 0; k < n->inputs.size(); ++k) {
      const ir::Value* v = n->inputs[k];
      os << (k ? ", " : "");
      if (!v) os << "-";
      else if (v->is_constant()) os << "const" << ir::dims_str(v->dims);
      else if (where.count(v)) os << where[v];
      else os << "?";
    }
    os << ") -> ";
    for (size_t k = 0; k < n->outputs.size(); ++k) {
      if (n->outputs[k]) where[n->outputs[k]] = "n" + std::to_string(idx) + "." + std::to_string(k);
      os << (k ? ", " : "") << (n->outputs[k] ? ir::dims_str(n->outputs[k]->dims) : "-");
    }
    os << "\n";
    ++idx;
  }
  for (auto* o : g.outputs) os << "out " << (where.count(o) ? where[o] : o->is_constant() ? "const" : "?") << "\n";
  return os.str();
}

std::map<std::string, HostTensor> run_graph(const ir::Graph& g, const std::map<std::string, HostTensor>& inputs) {
  auto copy = clone_graph(g);
  for (auto& n : copy->nodes()) n->tactic = cpu::KernelRegistry::global().create(*n)->tactic();  // as the builder lowers
  auto engine = make_cpu_engine(std::move(copy), "<test>", "cpu");
  return engine->create_context()->run(inputs);
}

std::map<std::string, HostTensor> random_inputs(const ir::Graph& g, uint32_t seed) {
  std::map<std::string, HostTensor> out;
  for (auto* v : g.inputs) out[v->name] = random_tensor(v->dtype, v->dims, seed++, -2.0, 2.0).to_host();
  return out;
}

std::unique_ptr<ir::Graph> check_pass(passes::Pass& pass, const ir::Graph& before, const ir::Graph* expected,
                                      double tol) {
  auto after = clone_graph(before);
  passes::PassContext ctx;
  cpu::ConstantEvaluator eval;
  ctx.evaluator = &eval;
  pass.run(*after, ctx);
  after->remove_unused_values();
  ir::infer_shapes(*after, nullptr);
  if (expected) EXPECT_EQ(structure(*after), structure(*expected)) << "pass " << pass.name();
  auto inputs = random_inputs(before, 7);
  auto want = run_graph(before, inputs);
  auto got = run_graph(*after, inputs);
  EXPECT_EQ(got.size(), want.size());
  for (auto& [name, w] : want) {
    auto it = got.find(name);
    if (it == got.end()) {
      ADD_FAILURE() << "output '" << name << "' missing after " << pass.name();
      continue;
    }
    ir::Tensor a = ir::Tensor::from_host(it->second), b = ir::Tensor::from_host(w);
    if (a.dims() != b.dims()) {
      ADD_FAILURE() << "output '" << name << "' changed shape";
      continue;
    }
    auto va = a.to_double(), vb = b.to_double();
    double scale = 0, err = 0;
    for (size_t i = 0; i < vb.size(); ++i) scale = std::max(scale, std::fabs(vb[i]));
    for (size_t i = 0; i < vb.size(); ++i) err = std::max(err, std::fabs(va[i] - vb[i]));
    EXPECT_LE(err, tol * std::max(scale, 1e-30)) << "output '" << name << "' changed by " << pass.name();
  }
  return after;
}

}  // namespace kiln::test
