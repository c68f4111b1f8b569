// Element types of intermediate values during import. Context-dependent
// function bodies (LayerNormalization, SoftmaxCrossEntropyLoss, ...) are
// built from their input types, which ONNX graphs rarely declare; binding the
// schema's type parameters to known input types recovers them without shape
// inference (which runs only after import).
#include <onnx/defs/schema.h>

#include "onnx/import_context.h"
#include "onnx/tensor_proto.h"

namespace kiln::onnx_import {

namespace {

constexpr int kNewestSchemaOpset = 17;  // libonnx 1.12

int parse_tensor_type(const std::string& s) {
  using TP = onnx::TensorProto;
  static const std::map<std::string, int> names = {
      {"tensor(float)", TP::FLOAT},   {"tensor(float16)", TP::FLOAT16}, {"tensor(double)", TP::DOUBLE},
      {"tensor(int8)", TP::INT8},     {"tensor(int16)", TP::INT16},     {"tensor(int32)", TP::INT32},
      {"tensor(int64)", TP::INT64},   {"tensor(uint8)", TP::UINT8},     {"tensor(uint16)", TP::UINT16},
      {"tensor(uint32)", TP::UINT32}, {"tensor(uint64)", TP::UINT64},   {"tensor(bool)", TP::BOOL},
      {"tensor(string)", TP::STRING}, {"tensor(bfloat16)", TP::BFLOAT16}};
  auto it = names.find(s);
  return it == names.end() ? 0 : it->second;
}

// Formal parameter for actual position k (the last one may be variadic).
const onnx::OpSchema::FormalParameter* formal(const std::vector<onnx::OpSchema::FormalParameter>& f, size_t k) {
  if (k < f.size()) return &f[k];
  if (!f.empty() && f.back().GetOption() == onnx::OpSchema::Variadic) return &f.back();
  return nullptr;
}

int attr_dtype(const ir::Node& n, const char* name, int dflt) {
  auto it = n.attrs.find(name);
  return it != n.attrs.end() && it->second.kind == ir::Attribute::Kind::kInt ? int(it->second.i) : dflt;
}

}  // namespace

void propagate_elem_types(Ctx& c, const ir::Node& n) {
  bool missing = false;
  for (const ir::Value* o : n.outputs) missing = missing || (o && !c.elem_type(o));
  if (!missing) return;
  std::vector<int> in;
  for (const ir::Value* v : n.inputs) in.push_back(c.elem_type(v));
  auto in_type = [&](size_t k) { return k < in.size() ? in[k] : 0; };

  // Ops whose output type comes from an attribute or a specific input.
  const std::string& op = n.op_type;
  if (n.domain.empty()) {
    int t = -1;
    if (op == "Cast") t = attr_dtype(n, "to", 0);
    else if (op == "CastLike") t = in_type(1);
    else if (op == "Shape" || op == "Size" || op == "NonZero" || op == "ArgMax" || op == "ArgMin")
      t = onnx::TensorProto::INT64;
    else if (op == "ConstantOfShape") {
      auto it = n.attrs.find("value");
      t = it != n.attrs.end() && it->second.kind == ir::Attribute::Kind::kTensor
              ? onnx_from_dtype(it->second.t.dtype()) : int(onnx::TensorProto::FLOAT);
    } else if (op == "EyeLike" || op == "RandomUniformLike" || op == "RandomNormalLike") {
      t = attr_dtype(n, "dtype", in_type(0));
    }
    if (t >= 0) {
      if (!n.outputs.empty()) c.set_elem_type(n.outputs[0], t);
      return;
    }
  }

  const auto* schema = onnx::OpSchemaRegistry::Schema(n.op_type, std::min(n.opset, kNewestSchemaOpset),
                                                      n.domain.empty() ? "" : n.domain);
  if (!schema) return;
  std::map<std::string, int> bound;
  for (size_t k = 0; k < in.size(); ++k) {
    const auto* f = formal(schema->inputs(), k);
    if (f && in[k]) bound.emplace(f->GetTypeStr(), in[k]);
  }
  for (size_t k = 0; k < n.outputs.size(); ++k) {
    const ir::Value* o = n.outputs[k];
    const auto* f = formal(schema->outputs(), k);
    if (!o || !f || c.elem_type(o)) continue;
    const std::string& ts = f->GetTypeStr();
    int t = 0;
    auto b = bound.find(ts);
    if (b != bound.end()) {
      t = b->second;
    } else {
      t = parse_tensor_type(ts);
      for (const auto& tc : schema->typeConstraintParams())  // a parameter allowing one type only
        if (tc.type_param_str == ts && tc.allowed_type_strs.size() == 1) t = parse_tensor_type(tc.allowed_type_strs[0]);
    }
    c.set_elem_type(o, t);
  }
}

}  // namespace kiln::onnx_import
