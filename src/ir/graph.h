// kiln's graph IR. A Graph owns Values (tensors: activations or constants) and
// Nodes (ops, ONNX-named: "Conv", "Relu", ...). Nodes are kept in topological
// order; passes mutate the graph through the helpers here and call
// topo_sort() if they insert out of order. Knows nothing of ONNX or devices.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/tensor.h"

namespace kiln::ir {

struct Attribute {
  enum class Kind { kInt, kFloat, kString, kInts, kFloats, kStrings, kTensor };
  Kind kind = Kind::kInt;
  int64_t i = 0;
  float f = 0.f;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::vector<std::string> strings;
  Tensor t;
};

class Node;

// How a runtime value's elements lie in memory. Dims are always logical
// (ONNX order); kNHWC stores a rank-4 [N,C,H,W] value channels-last, which
// tensor-core kernels want. Backends without layouts see only kLinear.
enum class Layout : uint8_t { kLinear = 0, kNHWC = 1 };
const char* layout_name(Layout l);  // "linear", "nhwc"

struct Value {
  std::string name;
  DataType dtype = DataType::kFloat32;
  Dims dims;
  bool has_shape = false;  // dtype/dims known (set by shape inference or the importer)
  int batch_axis = -1;     // axis that scales with the symbolic batch, -1 if none
  Layout layout = Layout::kLinear;
  std::shared_ptr<const Tensor> constant;  // set for initializers and folded values
  Node* producer = nullptr;

  bool is_constant() const { return constant != nullptr; }
};

class Node {
 public:
  std::string name;
  std::string op_type;
  std::string domain;                 // "" = ai.onnx
  int opset = 0;                      // opset of `domain` the node was imported at
  std::vector<Value*> inputs;         // nullptr = omitted optional input
  std::vector<Value*> outputs;
  std::map<std::string, Attribute> attrs;
  std::string path = "kernel";        // "kernel", "expanded:<OpType>", "plugin"
  std::vector<std::string> fused;     // names of source nodes merged into this one
  std::string tactic;                 // chosen kernel (builder)
  DataType precision = DataType::kFloat32;

  bool has(const std::string& a) const { return attrs.count(a) != 0; }
  int64_t i(const std::string& a, int64_t dflt) const;
  float f(const std::string& a, float dflt) const;
  std::string s(const std::string& a, const std::string& dflt) const;
  std::vector<int64_t> ints(const std::string& a, std::vector<int64_t> dflt = {}) const;
  std::vector<float> floats(const std::string& a, std::vector<float> dflt = {}) const;

  // Input `k`, or nullptr when absent/omitted.
  Value* in(size_t k) const { return k < inputs.size() ? inputs[k] : nullptr; }
  // "Conv 'conv1'" — for error messages.
  std::string label() const;
};

class Graph {
 public:
  std::string name;
  std::vector<Value*> inputs;   // runtime inputs (never constants)
  std::vector<Value*> outputs;
  // Facts about how the graph was built (e.g. "launches_before"), kept in plans.
  std::map<std::string, std::string> metadata;

  Value* value(const std::string& name) const;  // nullptr if unknown
  Value* add_value(const std::string& name);     // throws if the name exists
  Value* add_constant(const std::string& name, Tensor t);
  std::string unique_name(const std::string& base) const;
  void rename(Value* v, const std::string& new_name);  // throws if the name is taken

  Node* add_node(std::string op_type, std::string name, std::vector<Value*> inputs,
                 std::vector<Value*> outputs);
  void remove_node(Node* n);                     // outputs lose their producer
  void replace_uses(Value* from, Value* to);     // in node inputs and graph outputs
  std::vector<Node*> consumers(const Value* v) const;
  void topo_sort();                              // throws kBadInput on cycles
  void remove_unused_values();

  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  const std::map<std::string, std::unique_ptr<Value>>& values() const { return values_; }

  // Human-readable dump: inputs, nodes with shapes and attributes, outputs.
  std::string dump() const;

 private:
  std::map<std::string, std::unique_ptr<Value>> values_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

std::string dims_str(const Dims& d, int batch_axis = -1);  // "[N=1,3,224,224]"

}  // namespace kiln::ir
