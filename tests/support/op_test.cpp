#include "support/op_test.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <random>

#include "backends/cpu/kernel.h"
#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::test {

ir::Attribute attr_i(int64_t v) { ir::Attribute a; a.kind = ir::Attribute::Kind::kInt; a.i = v; return a; }
ir::Attribute attr_f(float v) { ir::Attribute a; a.kind = ir::Attribute::Kind::kFloat; a.f = v; return a; }
ir::Attribute attr_s(const std::string& v) { ir::Attribute a; a.kind = ir::Attribute::Kind::kString; a.s = v; return a; }
ir::Attribute attr_ints(std::vector<int64_t> v) { ir::Attribute a; a.kind = ir::Attribute::Kind::kInts; a.ints = std::move(v); return a; }
ir::Attribute attr_floats(std::vector<float> v) { ir::Attribute a; a.kind = ir::Attribute::Kind::kFloats; a.floats = std::move(v); return a; }

std::vector<ir::Tensor> run_op(const std::string& op_type, const std::vector<OpInput>& inputs,
                               const std::map<std::string, ir::Attribute>& attrs, int num_outputs,
                               std::string* tactic) {
  ir::Graph g;
  std::vector<ir::Value*> ins;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const OpInput& oi = inputs[k];
    if (!oi.tensor) { ins.push_back(nullptr); continue; }
    std::string name = "in" + std::to_string(k);
    ir::Value* v = oi.constant ? g.add_constant(name, *oi.tensor) : g.add_value(name);
    if (!oi.constant) {
      v->dtype = oi.tensor->dtype();
      v->dims = oi.tensor->dims();
      v->has_shape = true;
      g.inputs.push_back(v);
    }
    ins.push_back(v);
  }
  std::vector<ir::Value*> outs;
  for (int k = 0; k < num_outputs; ++k) outs.push_back(g.add_value("out" + std::to_string(k)));
  ir::Node* n = g.add_node(op_type, "node", ins, outs);
  n->attrs = attrs;
  n->opset = 18;
  g.outputs = outs;
  ir::infer_shapes(g, nullptr);
  auto kernel = cpu::KernelRegistry::global().create(*n);
  if (tactic) *tactic = kernel->tactic();
  std::vector<const ir::Tensor*> in_ptrs;
  for (auto& oi : inputs) in_ptrs.push_back(oi.tensor ? &*oi.tensor : nullptr);
  std::vector<ir::Tensor> results;
  for (auto* o : outs) results.emplace_back(o->dtype, o->dims);
  std::vector<ir::Tensor*> out_ptrs;
  for (auto& t : results) out_ptrs.push_back(&t);
  kernel->run(in_ptrs, out_ptrs);
  return results;
}

ir::Tensor tensor_of(DataType dtype, ir::Dims dims, const std::vector<double>& values) {
  ir::Tensor t(dtype, std::move(dims));
  for (int64_t i = 0; i < t.numel(); ++i) {
    double x = values[size_t(i)];
    switch (dtype) {
      case DataType::kFloat32: t.data<float>()[i] = float(x); break;
      case DataType::kFloat16: t.data<uint16_t>()[i] = float_to_half(float(x)); break;
      case DataType::kInt8: t.data<int8_t>()[i] = int8_t(x); break;
      case DataType::kUInt8:
      case DataType::kBool: t.data<uint8_t>()[i] = uint8_t(x); break;
      case DataType::kInt32: t.data<int32_t>()[i] = int32_t(x); break;
      case DataType::kInt64: t.data<int64_t>()[i] = int64_t(x); break;
    }
  }
  return t;
}

ir::Tensor random_tensor(DataType dtype, ir::Dims dims, uint32_t seed, double lo, double hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(size_t(ir::numel_of(dims)));
  for (double& x : v) {
    x = dist(rng);
    if (dtype == DataType::kBool) x = x > 0.5 * (lo + hi);
  }
  return tensor_of(dtype, std::move(dims), v);
}

std::vector<int64_t> unravel(int64_t flat, const ir::Dims& dims) {
  std::vector<int64_t> idx(dims.size());
  for (size_t i = dims.size(); i-- > 0;) {
    idx[i] = flat % dims[i];
    flat /= dims[i];
  }
  return idx;
}

int64_t ravel(const std::vector<int64_t>& idx, const ir::Dims& dims) {
  int64_t f = 0;
  for (size_t i = 0; i < dims.size(); ++i) f = f * dims[i] + idx[i];
  return f;
}

std::string seed_model_path() {
  auto p = std::filesystem::path(__FILE__).parent_path().parent_path() / "models" / "seed_cbr_ssd.onnx";
  if (const char* root = std::getenv("KILN_SOURCE_DIR")) p = std::filesystem::path(root) / "tests/models/seed_cbr_ssd.onnx";
  return p.string();
}

std::string example_plugin_path() {
  const char* env = std::getenv("KILN_EXAMPLE_PLUGIN");
  return env && *env ? env : KILN_EXAMPLE_PLUGIN;
}

ErrorCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::kInternal;
}

double max_rel_error(const ir::Tensor& a, const ir::Tensor& b) {
  if (a.dtype() != b.dtype() || a.dims() != b.dims()) return std::numeric_limits<double>::infinity();
  auto va = a.to_double(), vb = b.to_double();
  double worst = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    if (std::isnan(va[i]) != std::isnan(vb[i])) return std::numeric_limits<double>::infinity();
    if (std::isnan(va[i])) continue;
    if (va[i] == vb[i]) continue;  // equal infinities
    worst = std::max(worst, std::fabs(va[i] - vb[i]) / std::max(1.0, std::fabs(vb[i])));
  }
  return worst;
}

}  // namespace kiln::test
