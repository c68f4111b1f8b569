#include "ir/graph.h"

#include <algorithm>
#include <set>
#include <sstream>
#include <unordered_map>

#include "kiln/error.h"

namespace kiln::ir {

namespace {
const Attribute* find_attr(const Node& n, const std::string& a, Attribute::Kind kind) {
  auto it = n.attrs.find(a);
  if (it == n.attrs.end()) return nullptr;
  if (it->second.kind != kind)
    throw_bad_input(n.label() + ": attribute '" + a + "' has the wrong type");
  return &it->second;
}
}  // namespace

int64_t Node::i(const std::string& a, int64_t dflt) const {
  auto* at = find_attr(*this, a, Attribute::Kind::kInt);
  return at ? at->i : dflt;
}
float Node::f(const std::string& a, float dflt) const {
  auto* at = find_attr(*this, a, Attribute::Kind::kFloat);
  return at ? at->f : dflt;
}
std::string Node::s(const std::string& a, const std::string& dflt) const {
  auto* at = find_attr(*this, a, Attribute::Kind::kString);
  return at ? at->s : dflt;
}
std::vector<int64_t> Node::ints(const std::string& a, std::vector<int64_t> dflt) const {
  auto* at = find_attr(*this, a, Attribute::Kind::kInts);
  return at ? at->ints : dflt;
}
std::vector<float> Node::floats(const std::string& a, std::vector<float> dflt) const {
  auto* at = find_attr(*this, a, Attribute::Kind::kFloats);
  return at ? at->floats : dflt;
}
const char* layout_name(Layout l) { return l == Layout::kNHWC ? "nhwc" : "linear"; }

std::string Node::label() const { return op_type + " '" + name + "'"; }

Value* Graph::value(const std::string& n) const {
  auto it = values_.find(n);
  return it == values_.end() ? nullptr : it->second.get();
}

Value* Graph::add_value(const std::string& n) {
  if (values_.count(n)) throw_bad_input("duplicate tensor name '" + n + "'");
  auto v = std::make_unique<Value>();
  v->name = n;
  Value* raw = v.get();
  values_[n] = std::move(v);
  return raw;
}

Value* Graph::add_constant(const std::string& n, Tensor t) {
  Value* v = add_value(n);
  v->dtype = t.dtype();
  v->dims = t.dims();
  v->has_shape = true;
  v->constant = std::make_shared<const Tensor>(std::move(t));
  return v;
}

std::string Graph::unique_name(const std::string& base) const {
  if (!values_.count(base)) return base;
  for (int k = 1;; ++k) {
    std::string c = base + "_" + std::to_string(k);
    if (!values_.count(c)) return c;
  }
}

void Graph::rename(Value* v, const std::string& new_name) {
  if (v->name == new_name) return;
  if (values_.count(new_name)) throw_internal("rename: tensor name '" + new_name + "' is taken");
  auto it = values_.find(v->name);
  if (it == values_.end() || it->second.get() != v) throw_internal("rename: value not in graph");
  auto own = std::move(it->second);
  values_.erase(it);
  own->name = new_name;
  values_[new_name] = std::move(own);
}

Node* Graph::add_node(std::string op_type, std::string name, std::vector<Value*> ins, std::vector<Value*> outs) {
  auto n = std::make_unique<Node>();
  n->op_type = std::move(op_type);
  n->name = std::move(name);
  n->inputs = std::move(ins);
  n->outputs = std::move(outs);
  for (Value* o : n->outputs)
    if (o) o->producer = n.get();
  Node* raw = n.get();
  nodes_.push_back(std::move(n));
  return raw;
}

void Graph::remove_node(Node* n) {
  for (Value* o : n->outputs)
    if (o && o->producer == n) o->producer = nullptr;
  nodes_.erase(std::remove_if(nodes_.begin(), nodes_.end(), [&](auto& p) { return p.get() == n; }), nodes_.end());
}

void Graph::replace_uses(Value* from, Value* to) {
  for (auto& n : nodes_)
    for (auto& in : n->inputs)
      if (in == from) in = to;
  for (auto& o : outputs)
    if (o == from) o = to;
}

std::vector<Node*> Graph::consumers(const Value* v) const {
  std::vector<Node*> out;
  for (auto& n : nodes_)
    if (std::find(n->inputs.begin(), n->inputs.end(), v) != n->inputs.end()) out.push_back(n.get());
  return out;
}

void Graph::topo_sort() {
  // Kahn's algorithm; among ready nodes the earliest in the current order goes first.
  std::unordered_map<const Node*, size_t> pos;
  std::unordered_map<const Node*, int> pending;
  std::unordered_map<const Node*, std::vector<Node*>> dependents;
  for (size_t k = 0; k < nodes_.size(); ++k) pos[nodes_[k].get()] = k;
  for (auto& n : nodes_) {
    std::set<const Node*> deps;
    for (Value* in : n->inputs)
      if (in && in->producer && pos.count(in->producer)) deps.insert(in->producer);
    pending[n.get()] = int(deps.size());
    for (const Node* d : deps) dependents[d].push_back(n.get());
  }
  auto later = [&](Node* a, Node* b) { return pos[a] > pos[b]; };
  std::vector<Node*> ready, order;  // min-heap on original position
  for (auto& n : nodes_)
    if (pending[n.get()] == 0) ready.push_back(n.get());
  std::make_heap(ready.begin(), ready.end(), later);
  while (!ready.empty()) {
    std::pop_heap(ready.begin(), ready.end(), later);
    Node* n = ready.back();
    ready.pop_back();
    order.push_back(n);
    for (Node* d : dependents[n])
      if (--pending[d] == 0) {
        ready.push_back(d);
        std::push_heap(ready.begin(), ready.end(), later);
      }
  }
  if (order.size() != nodes_.size()) throw_bad_input("graph '" + name + "' has a cycle");
  std::unordered_map<const Node*, std::unique_ptr<Node>> own;
  for (auto& n : nodes_) own[n.get()] = std::move(n);
  nodes_.clear();
  for (Node* n : order) nodes_.push_back(std::move(own[n]));
}

void Graph::remove_unused_values() {
  std::set<const Value*> used(inputs.begin(), inputs.end());
  used.insert(outputs.begin(), outputs.end());
  for (auto& n : nodes_) {
    used.insert(n->inputs.begin(), n->inputs.end());
    used.insert(n->outputs.begin(), n->outputs.end());
  }
  for (auto it = values_.begin(); it != values_.end();)
    it = used.count(it->second.get()) ? std::next(it) : values_.erase(it);
}

std::string dims_str(const Dims& d, int batch_axis) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < d.size(); ++i) {
    if (i) os << ',';
    if (int(i) == batch_axis) os << "N=";
    os << d[i];
  }
  os << ']';
  return os.str();
}

namespace {
std::string value_str(const Value* v) {
  if (!v) return "<none>";
  std::string s = v->name + ":" + dtype_name(v->dtype) + dims_str(v->dims, v->batch_axis);
  if (v->layout != Layout::kLinear) s += std::string("/") + layout_name(v->layout);
  return v->is_constant() ? s + "(const)" : s;
}

std::string attr_str(const Attribute& a) {
  std::ostringstream os;
  switch (a.kind) {
    case Attribute::Kind::kInt: os << a.i; break;
    case Attribute::Kind::kFloat: os << a.f; break;
    case Attribute::Kind::kString: os << '"' << a.s << '"'; break;
    case Attribute::Kind::kInts: os << shape_str(a.ints); break;
    case Attribute::Kind::kFloats:
      os << '[';
      for (size_t i = 0; i < a.floats.size(); ++i) os << (i ? "," : "") << a.floats[i];
      os << ']';
      break;
    case Attribute::Kind::kStrings: os << "[" << a.strings.size() << " strings]"; break;
    case Attribute::Kind::kTensor: os << "tensor" << shape_str(a.t.dims()); break;
  }
  return os.str();
}
}  // namespace

std::string Graph::dump() const {
  std::ostringstream os;
  os << "graph " << name << "\n";
  for (Value* v : inputs) os << "  input  " << value_str(v) << "\n";
  for (auto& n : nodes_) {
    os << "  " << n->op_type << " '" << n->name << "'";
    if (n->path != "kernel") os << " {" << n->path << "}";
    os << " (";
    for (size_t k = 0; k < n->inputs.size(); ++k) os << (k ? ", " : "") << value_str(n->inputs[k]);
    os << ") -> (";
    for (size_t k = 0; k < n->outputs.size(); ++k) os << (k ? ", " : "") << value_str(n->outputs[k]);
    os << ")";
    for (auto& [k, a] : n->attrs) os << " " << k << "=" << attr_str(a);
    os << "\n";
  }
  for (Value* v : outputs) os << "  output " << value_str(v) << "\n";
  return os.str();
}

}  // namespace kiln::ir
