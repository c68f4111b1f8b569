// Helpers for the ONNX importer tests: ModelProtos built with protobuf, a
// test-only op, and a small graph runner over the CPU kernels.
#pragma once

// tests/CMakeLists.txt does not pass libonnx's compile definitions to the test
// binary, so set them the way libonnx was built.
#ifndef ONNX_ML
#define ONNX_ML 1
#endif
#ifndef ONNX_NAMESPACE
#define ONNX_NAMESPACE onnx
#endif

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backends/cpu/kernel.h"
#include "ir/op_registry.h"
#include "kiln/error.h"
#include "onnx/importer.h"

namespace kiln::onnx_test {

inline const char* kTestDomain = "test.importer";

// A test-only op with trivial inference, so these tests do not depend on
// which kernels exist yet.
inline void register_test_ops() {
  static bool done = [] {
    ir::OpRegistry::global().add({kTestDomain, "Pass", [](ir::Node& n) {
                                    const ir::Value& x = ir::input_checked(n, 0);
                                    ir::set_output(n, 0, x.dtype, x.dims);
                                  }});
    return true;
  }();
  (void)done;
}

struct ModelBuilder {
  onnx::ModelProto m;
  onnx::GraphProto* g;

  explicit ModelBuilder(int opset = 18) {
    m.set_ir_version(8);
    opset_import("", opset);
    opset_import(kTestDomain, 1);
    g = m.mutable_graph();
    g->set_name("test");
  }
  void opset_import(const std::string& domain, int v) {
    auto* o = m.add_opset_import();
    o->set_domain(domain);
    o->set_version(v);
  }
  // dims < 0 are symbolic: named by params[k] when given, else unknown.
  void input(const std::string& name, int elem, std::vector<int64_t> dims, std::vector<std::string> params = {}) {
    auto* vi = g->add_input();
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem);
    auto* sh = tt->mutable_shape();
    for (size_t k = 0; k < dims.size(); ++k) {
      auto* d = sh->add_dim();
      if (dims[k] >= 0) d->set_dim_value(dims[k]);
      else if (k < params.size()) d->set_dim_param(params[k]);
    }
  }
  void output(const std::string& name) {
    auto* vi = g->add_output();
    vi->set_name(name);
    vi->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  }
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> ins, std::vector<std::string> outs,
                        const std::string& name = "", const std::string& domain = "") {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(name);
    n->set_domain(domain);
    for (auto& i : ins) n->add_input(i);
    for (auto& o : outs) n->add_output(o);
    return n;
  }
  std::unique_ptr<ir::Graph> import(const std::string& dir = ".", int batch = 0) const {
    onnx_import::ImportOptions opts;
    opts.batch = batch;
    return onnx_import::import_bytes(m.SerializeAsString(), dir, opts);
  }
};

inline void attr_ints(onnx::NodeProto* n, const std::string& name, std::vector<int64_t> v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (auto x : v) a->add_ints(x);
}
inline void attr_int(onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}
inline void attr_string(onnx::NodeProto* n, const std::string& name, const std::string& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
}
inline void attr_float(onnx::NodeProto* n, const std::string& name, float v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

inline onnx::TensorProto float_tensor(const std::string& name, std::vector<int64_t> dims, std::vector<float> v) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::FLOAT);
  for (auto d : dims) t.add_dims(d);
  for (float x : v) t.add_float_data(x);
  return t;
}

// Runs the error-producing call and returns the kiln::Error it throws.
template <typename F> Error catch_error(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected a kiln::Error";
  return Error(ErrorCode::kInternal, "no error thrown");
}

inline std::vector<float> floats_of(const ir::Value* v) {
  EXPECT_TRUE(v && v->is_constant());
  if (!v || !v->is_constant()) return {};
  std::vector<double> d = v->constant->to_double();
  return std::vector<float>(d.begin(), d.end());
}

inline ir::Node* find_node(const ir::Graph& g, const std::string& op) {
  for (auto& n : g.nodes())
    if (n->op_type == op) return n.get();
  return nullptr;
}


// Runs an imported graph through ir inference and the CPU kernels.
inline std::map<std::string, ir::Tensor> run_graph(ir::Graph& g, const std::map<std::string, ir::Tensor>& inputs) {
  ir::infer_shapes(g, nullptr);
  std::map<const ir::Value*, ir::Tensor> vals;
  for (ir::Value* v : g.inputs) vals[v] = inputs.at(v->name);
  for (auto& n : g.nodes()) {
    auto k = cpu::KernelRegistry::global().create(*n);
    std::vector<const ir::Tensor*> ins;
    for (ir::Value* v : n->inputs)
      ins.push_back(!v ? nullptr : v->is_constant() ? v->constant.get() : &vals.at(v));
    std::vector<ir::Tensor*> outs;
    for (ir::Value* o : n->outputs) {
      if (!o) { outs.push_back(nullptr); continue; }
      vals[o] = ir::Tensor(o->dtype, o->dims);
      outs.push_back(&vals[o]);
    }
    k->run(ins, outs);
  }
  std::map<std::string, ir::Tensor> out;
  for (ir::Value* v : g.outputs) out[v->name] = v->is_constant() ? *v->constant : vals.at(v);
  return out;
}

inline bool all_kernels(std::initializer_list<const char*> ops) {
  for (auto op : ops)
    if (!cpu::KernelRegistry::global().has("", op) || !ir::OpRegistry::global().find("", op))
      return false;
  return true;
}

}  // namespace kiln::onnx_test
