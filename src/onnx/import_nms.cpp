// ONNX NonMaxSuppression, lowered onto the EfficientNMS kernels (see
// src/plugins/efficient_nms/README.md): scores [N,C,B] are transposed to the
// [N,B,C] the kernels read, and a kiln_NonMaxSuppression plugin node takes
// the node's constant inputs as fields. Its selected_indices output is sized
// for the most boxes the op can select; a second, internal output holds how
// many rows it did select, and the engine returns the output cut to them
// (graph metadata "rows/<output>" = "<count>"). Such an output can only be a
// graph output: the rows a later node would read are not known when the
// engine is built.
#include <cmath>
#include <limits>

#include "ir/attribute.h"
#include "onnx/import_context.h"
#include "plugins/bridge.h"
#include "plugins/efficient_nms/onnx_nms.h"

namespace kiln::onnx_import {

namespace {

// Input k of the node as a one-element constant, or nullptr when omitted.
const ir::Tensor* scalar_input(Ctx& c, Scope& s, const onnx::NodeProto& np, int k, const char* what,
                               const std::string& label) {
  if (k >= np.input_size() || np.input(k).empty()) return nullptr;
  const ir::Value* v = c.lookup(s, np.input(k), label);
  if (!v->is_constant())
    throw_unsupported(label + ": input " + what + " ('" + v->name + "') must be a constant (an initializer or "
                      "Constant node): kiln sizes NonMaxSuppression's output when the engine is built");
  if (v->constant->numel() != 1)
    throw_bad_input(label + ": input " + what + " ('" + v->name + "') must hold one value, it has " +
                    std::to_string(v->constant->numel()));
  return v->constant.get();
}

float float_value(const ir::Tensor& t, const char* what, const std::string& label) {
  if (t.dtype() != DataType::kFloat32) throw_bad_input(label + ": input " + std::string(what) + " must be float32");
  return *static_cast<const float*>(t.raw());
}

}  // namespace

void emit_nonmax_suppression(Ctx& c, Scope& s, const onnx::NodeProto& np, const std::string& name,
                             const std::string& label) {
  if (np.input_size() < 2 || np.input(0).empty() || np.input(1).empty())
    throw_bad_input(label + ": NonMaxSuppression needs inputs boxes and scores");
  if (np.output_size() < 1 || np.output(0).empty())
    throw_bad_input(label + ": the node names no outputs; give it its selected_indices output");
  int64_t center = 0;
  for (const auto& a : np.attribute()) {
    if (a.name() != "center_point_box") throw_bad_input(label + ": unknown attribute '" + a.name() + "'");
    center = a.i();
  }
  if (center != 0 && center != 1)
    throw_bad_input(label + ": center_point_box must be 0 or 1, got " + std::to_string(center));
  ir::Value* boxes = c.lookup(s, np.input(0), label);
  ir::Value* scores = c.lookup(s, np.input(1), label);
  const ir::Tensor* m = scalar_input(c, s, np, 2, "max_output_boxes_per_class", label);
  const ir::Tensor* iou = scalar_input(c, s, np, 3, "iou_threshold", label);
  const ir::Tensor* thr = scalar_input(c, s, np, 4, "score_threshold", label);
  if (m && m->dtype() != DataType::kInt64) throw_bad_input(label + ": max_output_boxes_per_class must be int64");
  const int64_t per_class = m ? m->to_int64()[0] : 0;  // ONNX: absent means 0, nothing selected

  if (per_class <= 0) {  // selects nothing: an empty [0,3] constant
    const ir::Tensor empty(DataType::kInt64, ir::Dims{0, 3});
    c.set_elem_type(c.define(s, np.output(0), &empty), onnx::TensorProto::INT64);
    return;
  }
  ir::Value* nbc = c.temp(name + "/scores_nbc");
  ir::Node* tr = c.add_node("Transpose", name + "/transpose_scores", {scores}, {nbc}, 13,
                            s.expanded_from.empty() ? "kernel" : "expanded:" + s.expanded_from);
  ir::Attribute perm;
  perm.kind = ir::Attribute::Kind::kInts;
  perm.ints = {0, 2, 1};
  tr->attrs["perm"] = perm;
  c.set_elem_type(nbc, onnx::TensorProto::FLOAT);

  ir::Value* selected = c.define(s, np.output(0));
  ir::Value* count = c.temp(name + "/selected_count");
  ir::Node* n = c.g.add_node(plugins::efficient_nms::onnx_nms_type(), name, {boxes, nbc}, {selected, count});
  n->opset = 1;
  n->path = s.expanded_from.empty() ? "kernel" : "expanded:" + s.expanded_from;
  n->attrs["max_output_boxes_per_class"] = ir::int_attr(per_class);
  n->attrs["iou_threshold"] = ir::float_attr(iou ? float_value(*iou, "iou_threshold", label) : 0.f);
  n->attrs["score_threshold"] =
      ir::float_attr(thr ? float_value(*thr, "score_threshold", label) : -std::numeric_limits<float>::infinity());
  n->attrs["center_point_box"] = ir::int_attr(center);
  plugins::bind_node(*n, [&](size_t k) { return c.temp(name + "_unused" + std::to_string(k)); });
  c.set_elem_type(selected, onnx::TensorProto::INT64);
  c.set_elem_type(count, onnx::TensorProto::INT64);
  c.g.metadata["rows/" + selected->name] = count->name;
}

void finish_row_counts(Ctx& c) {
  for (const auto& [key, count_name] : c.g.metadata) {
    if (key.rfind("rows/", 0) != 0) continue;
    const std::string data = key.substr(5);
    const ir::Value* v = c.g.value(data);
    bool is_output = false;
    for (const ir::Value* o : c.g.outputs) is_output = is_output || o == v;
    for (const auto& n : c.g.nodes())
      for (const ir::Value* in : n->inputs)
        if (in == v)
          throw_unsupported(n->label() + " reads '" + data + "', whose row count NonMaxSuppression decides at run "
                            "time; kiln supports such tensors only as graph outputs. Make '" + data + "' a graph "
                            "output and post-process it outside the engine, or use EfficientNMS_TRT (fixed-size "
                            "outputs: a count plus padded boxes, scores and classes)");
    if (!is_output)
      throw_unsupported("'" + data + "' (NonMaxSuppression output) is not a graph output; kiln supports "
                        "NonMaxSuppression only where its selected_indices is a graph output");
    c.g.outputs.push_back(c.g.value(count_name));
  }
}

}  // namespace kiln::onnx_import
