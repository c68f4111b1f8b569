// Plan payload: the graph, encoded field by field (see plan.h for the header).
//
//   str graph name
//   u32 metadata count, per entry: str key, str value
//   u32 value count, per value: str name, u8 dtype, i32 batch_axis, u8 layout,
//       u32 rank, i64 dims[rank], u8 has_constant, [u64 nbytes, data]
//       (has_constant 2, profile plans only: u32 index into the shared table)
//   u32 count + u32 value index: graph inputs, then graph outputs
//   u32 node count, per node: str name, str op_type, str domain, i32 opset,
//       u32 count + i32 value index (-1 = omitted): inputs, then outputs,
//       u32 attribute count (str key, u8 kind, value), str path,
//       u32 count + str: fused, str tactic, u8 precision
// Strings are u32 length + bytes. Tensors (constants, attributes) are raw
// little-endian element data.
#include "engine/plan.h"

#include <limits>
#include <set>
#include <unordered_map>

#include "engine/plan_bytes.h"
#include "kiln/error.h"
#include "plugins/bridge.h"

namespace kiln::plan {

namespace {

constexpr uint8_t kMaxDType = static_cast<uint8_t>(DataType::kBool);
constexpr uint8_t kMaxAttrKind = static_cast<uint8_t>(ir::Attribute::Kind::kTensor);

void write_dims(ByteWriter& w, const ir::Dims& dims) {
  w.count(dims.size());
  for (int64_t d : dims) w.i64(d);
}

void write_attr(ByteWriter& w, const ir::Attribute& a) {
  using K = ir::Attribute::Kind;
  w.u8(static_cast<uint8_t>(a.kind));
  switch (a.kind) {
    case K::kInt: w.i64(a.i); break;
    case K::kFloat: w.f32(a.f); break;
    case K::kString: w.str(a.s); break;
    case K::kInts:
      w.count(a.ints.size());
      for (int64_t v : a.ints) w.i64(v);
      break;
    case K::kFloats:
      w.count(a.floats.size());
      for (float v : a.floats) w.f32(v);
      break;
    case K::kStrings:
      w.count(a.strings.size());
      for (auto& s : a.strings) w.str(s);
      break;
    case K::kTensor: write_tensor(w, a.t); break;
  }
}

DataType read_dtype(ByteReader& r, const char* what) {
  uint8_t d = r.u8();
  if (d > kMaxDType) r.fail(std::string(what) + " has unknown dtype code " + std::to_string(d));
  return static_cast<DataType>(d);
}

ir::Dims read_dims(ByteReader& r, const char* what) {
  uint32_t rank = r.count(8, what);
  ir::Dims dims(rank);
  int64_t numel = 1;
  for (auto& d : dims) {
    d = r.i64();
    if (d < 0) r.fail(std::string(what) + " has a negative dimension");
    if (d && numel > std::numeric_limits<int64_t>::max() / d) r.fail(std::string(what) + " has too many elements");
    numel *= d;
  }
  return dims;
}

// Data of a tensor whose dtype/dims were already read; the byte count must
// match exactly and fit in the stream before any allocation happens.
ir::Tensor read_data(ByteReader& r, DataType dtype, const ir::Dims& dims, const char* what) {
  uint64_t nbytes = r.u64();
  int64_t numel = ir::numel_of(dims);
  size_t esize = dtype_size(dtype);
  if (uint64_t(numel) > r.remaining() / esize)
    r.fail(std::string(what) + " of shape " + shape_str(dims) + " does not fit in the remaining bytes");
  if (nbytes != uint64_t(numel) * esize)
    r.fail(std::string(what) + " holds " + std::to_string(nbytes) + " bytes, its shape needs " +
           std::to_string(uint64_t(numel) * esize));
  const uint8_t* src = r.bytes(nbytes, what);
  ir::Tensor t(dtype, dims);
  if (nbytes) std::memcpy(t.raw(), src, nbytes);
  return t;
}

ir::Attribute read_attr(ByteReader& r) {
  using K = ir::Attribute::Kind;
  ir::Attribute a;
  uint8_t kind = r.u8();
  if (kind > kMaxAttrKind) r.fail("attribute has unknown kind " + std::to_string(kind));
  a.kind = static_cast<K>(kind);
  switch (a.kind) {
    case K::kInt: a.i = r.i64(); break;
    case K::kFloat: a.f = r.f32(); break;
    case K::kString: a.s = r.str("attribute string"); break;
    case K::kInts: {
      uint32_t n = r.count(8, "attribute ints");
      a.ints.resize(n);
      for (auto& v : a.ints) v = r.i64();
      break;
    }
    case K::kFloats: {
      uint32_t n = r.count(4, "attribute floats");
      a.floats.resize(n);
      for (auto& v : a.floats) v = r.f32();
      break;
    }
    case K::kStrings: {
      uint32_t n = r.count(4, "attribute strings");
      a.strings.reserve(n);
      for (uint32_t k = 0; k < n; ++k) a.strings.push_back(r.str("attribute string"));
      break;
    }
    case K::kTensor: a.t = read_tensor(r, "attribute tensor"); break;
  }
  return a;
}

}  // namespace

void write_tensor(ByteWriter& w, const ir::Tensor& t) {
  w.u8(static_cast<uint8_t>(t.dtype()));
  write_dims(w, t.dims());
  w.u64(t.nbytes());
  if (t.nbytes()) w.bytes(t.raw(), t.nbytes());
}

ir::Tensor read_tensor(ByteReader& r, const char* what) {
  DataType dt = read_dtype(r, what);
  ir::Dims dims = read_dims(r, what);
  return read_data(r, dt, dims, what);
}

std::vector<uint8_t> encode_graph(const ir::Graph& g, const ConstantIndex* shared) {
  ByteWriter w;
  w.str(g.name);
  w.count(g.metadata.size());
  for (auto& [k, v] : g.metadata) {
    w.str(k);
    w.str(v);
  }

  std::unordered_map<const ir::Value*, uint32_t> index;
  w.count(g.values().size());
  for (auto& [name, vp] : g.values()) {
    const ir::Value& v = *vp;
    if (!v.has_shape) throw_internal("plan writer: value '" + name + "' has no inferred shape");
    index[&v] = uint32_t(index.size());
    w.str(v.name);
    w.u8(static_cast<uint8_t>(v.dtype));
    w.i32(v.batch_axis);
    w.u8(static_cast<uint8_t>(v.layout));
    write_dims(w, v.dims);
    w.u8(v.is_constant() ? (shared ? 2 : 1) : 0);
    if (v.is_constant()) {
      const ir::Tensor& t = *v.constant;
      if (t.dtype() != v.dtype || t.dims() != v.dims)
        throw_internal("plan writer: constant '" + name + "' disagrees with its value's dtype/shape");
      if (shared) {
        w.u32((*shared)(t));
      } else {
        w.u64(t.nbytes());
        if (t.nbytes()) w.bytes(t.raw(), t.nbytes());
      }
    }
  }
  auto idx = [&](const ir::Value* v) -> uint32_t {
    auto it = index.find(v);
    if (it == index.end()) throw_internal("plan writer: a node refers to a value the graph does not own");
    return it->second;
  };
  for (const auto* list : {&g.inputs, &g.outputs}) {
    w.count(list->size());
    for (const ir::Value* v : *list) w.u32(idx(v));
  }

  w.count(g.nodes().size());
  for (auto& np : g.nodes()) {
    const ir::Node& n = *np;
    w.str(n.name);
    w.str(n.op_type);
    w.str(n.domain);
    w.i32(n.opset);
    for (const auto* list : {&n.inputs, &n.outputs}) {
      w.count(list->size());
      for (const ir::Value* v : *list) w.i32(v ? int32_t(idx(v)) : -1);
    }
    w.count(n.attrs.size());
    for (auto& [key, a] : n.attrs) {
      w.str(key);
      write_attr(w, a);
    }
    w.str(n.path);
    w.count(n.fused.size());
    for (auto& f : n.fused) w.str(f);
    w.str(n.tactic);
    w.u8(static_cast<uint8_t>(n.precision));
  }
  return std::move(w.buffer());
}

std::unique_ptr<ir::Graph> decode_graph(const uint8_t* data, size_t size, const std::string& origin,
                                        size_t base_offset, const ConstantTable* table) {
  ByteReader r(data, size, origin, base_offset);
  auto g = std::make_unique<ir::Graph>();
  g->name = r.str("graph name");
  for (uint32_t k = 0, n = r.count(8, "metadata entry"); k < n; ++k) {
    std::string key = r.str("metadata key");
    g->metadata[key] = r.str("metadata value");
  }

  // Minimum encoded sizes bound every count before anything is reserved.
  uint32_t nvalues = r.count(15, "value");
  std::vector<ir::Value*> values;
  values.reserve(nvalues);
  for (uint32_t k = 0; k < nvalues; ++k) {
    std::string name = r.str("value name");
    if (g->value(name)) r.fail("tensor name '" + name + "' appears twice");
    DataType dt = read_dtype(r, "value");
    int32_t batch_axis = r.i32();
    uint8_t layout = r.u8();
    ir::Dims dims = read_dims(r, "value");
    if (layout > uint8_t(ir::Layout::kNHWC) || (layout == uint8_t(ir::Layout::kNHWC) && dims.size() != 4))
      r.fail("value '" + name + "' has layout " + std::to_string(layout) + ", which needs rank 4 or is unknown");
    if (batch_axis < -1 || batch_axis >= int64_t(dims.size()))
      r.fail("value '" + name + "' has batch axis " + std::to_string(batch_axis) + " outside its rank");
    uint8_t has_const = r.u8();
    if (has_const > (table ? 2 : 1)) r.fail("value '" + name + "' has a bad constant flag");
    ir::Value* v;
    if (has_const == 2) {
      const uint32_t at = r.u32();
      if (at >= table->size())
        r.fail("constant '" + name + "' refers to shared constant " + std::to_string(at) + " of " +
               std::to_string(table->size()));
      const std::shared_ptr<const ir::Tensor>& t = (*table)[at];
      if (t->dtype() != dt || t->dims() != dims)
        r.fail("constant '" + name + "' is " + dtype_name(dt) + shape_str(dims) + " but shared constant " +
               std::to_string(at) + " is " + dtype_name(t->dtype()) + shape_str(t->dims()));
      v = g->add_value(name);
      v->dtype = dt;
      v->dims = std::move(dims);
      v->has_shape = true;
      v->constant = t;
    } else if (has_const) {
      v = g->add_constant(name, read_data(r, dt, dims, "constant"));
    } else {
      v = g->add_value(name);
      v->dtype = dt;
      v->dims = std::move(dims);
      v->has_shape = true;
    }
    v->batch_axis = batch_axis;
    v->layout = ir::Layout(layout);
    values.push_back(v);
  }

  auto value_at = [&](int64_t i, bool allow_none, const char* what) -> ir::Value* {
    if (allow_none && i == -1) return nullptr;
    if (i < 0 || i >= int64_t(values.size())) r.fail(std::string(what) + " refers to value " + std::to_string(i) +
                                                      " of " + std::to_string(values.size()));
    return values[size_t(i)];
  };
  // Values available to later nodes: constants, graph inputs, outputs of earlier nodes.
  std::set<const ir::Value*> ready;
  for (ir::Value* v : values)
    if (v->is_constant()) ready.insert(v);

  uint32_t ninputs = r.count(4, "graph input");
  for (uint32_t k = 0; k < ninputs; ++k) {
    ir::Value* v = value_at(r.u32(), false, "graph input");
    if (v->is_constant()) r.fail("graph input '" + v->name + "' is a constant");
    if (!ready.insert(v).second) r.fail("graph input '" + v->name + "' is listed twice");
    g->inputs.push_back(v);
  }
  uint32_t noutputs = r.count(4, "graph output");
  for (uint32_t k = 0; k < noutputs; ++k) g->outputs.push_back(value_at(r.u32(), false, "graph output"));

  uint32_t nnodes = r.count(41, "node");
  for (uint32_t k = 0; k < nnodes; ++k) {
    std::string name = r.str("node name");
    std::string op_type = r.str("op type");
    std::string domain = r.str("domain");
    int32_t opset = r.i32();
    std::vector<ir::Value*> ins, outs;
    uint32_t nin = r.count(4, "node input");
    for (uint32_t j = 0; j < nin; ++j) {
      ir::Value* v = value_at(r.i32(), true, "node input");
      if (v && !ready.count(v)) r.fail("node '" + name + "' reads '" + v->name + "' before it is produced");
      ins.push_back(v);
    }
    uint32_t nout = r.count(4, "node output");
    for (uint32_t j = 0; j < nout; ++j) {
      ir::Value* v = value_at(r.i32(), true, "node output");
      if (v && (v->is_constant() || !ready.insert(v).second))
        r.fail("node '" + name + "' writes '" + v->name + "', which is a constant, an input or already produced");
      outs.push_back(v);
    }
    // Outputs are attached here rather than through add_node, which expects
    // no omitted (null) outputs.
    ir::Node* n = g->add_node(std::move(op_type), std::move(name), std::move(ins), {});
    n->outputs = std::move(outs);
    for (ir::Value* v : n->outputs)
      if (v) v->producer = n;
    n->domain = std::move(domain);
    n->opset = opset;
    uint32_t nattrs = r.count(9, "attribute");
    for (uint32_t j = 0; j < nattrs; ++j) {
      std::string key = r.str("attribute name");
      ir::Attribute a = read_attr(r);
      if (!n->attrs.emplace(std::move(key), std::move(a)).second) r.fail("node '" + n->name + "' repeats an attribute");
    }
    n->path = r.str("layer path");
    uint32_t nfused = r.count(4, "fused name");
    for (uint32_t j = 0; j < nfused; ++j) n->fused.push_back(r.str("fused name"));
    n->tactic = r.str("tactic");
    n->precision = read_dtype(r, "layer precision");
    if (n->domain == plugins::kDomain) plugins::require_registered(*n, origin);
  }
  for (ir::Value* v : g->outputs)
    if (!ready.count(v)) r.fail("graph output '" + v->name + "' is never produced");
  if (r.remaining()) r.fail(std::to_string(r.remaining()) + " unexpected trailing bytes");
  return g;
}

}  // namespace kiln::plan
