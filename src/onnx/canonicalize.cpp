// Older-opset forms -> the opset-18 form kiln's kernels implement. One table,
// one small converter per op whose signature changed between opset 7 and 18
// (mostly attributes that became inputs). The node keeps its imported opset.

#include "ir/attribute.h"
#include "kiln/error.h"
#include "onnx/import_context.h"
#include "onnx/tensor_proto.h"

namespace kiln::onnx_import {

namespace {

using Fn = void (*)(Ctx&, ir::Node&);

struct Rule {
  const char* op;  // op type as written in the model
  int below;       // applies to nodes with opset < below
  Fn fn;
};

void set_input(ir::Node& n, size_t k, ir::Value* v) {
  if (n.inputs.size() <= k) n.inputs.resize(k + 1, nullptr);
  n.inputs[k] = v;
}

// Moves an INTS attribute to int64 1-D constant input k (if present).
void ints_to_input(Ctx& c, ir::Node& n, const char* attr, size_t k) {
  if (!n.has(attr)) return;
  std::vector<int64_t> v = n.ints(attr);
  n.attrs.erase(attr);
  if (n.in(k)) throw_bad_input(n.label() + ": '" + attr + "' is given both as attribute and as input");
  set_input(n, k, c.int64_const(n.name + "_" + attr, v));
}

// A scalar constant of the element type of `like` (float32 when unknown, which
// is the only type old float-only ops were used with in practice).
ir::Value* scalar_like(Ctx& c, const ir::Value* like, double v, const std::string& base) {
  DataType dt = DataType::kFloat32;
  if (!dtype_from_onnx(c.elem_type(like), &dt)) dt = DataType::kFloat32;
  ir::Tensor t(dt, {});
  switch (dt) {
    case DataType::kFloat16: *t.data<uint16_t>() = float_to_half(float(v)); break;
    case DataType::kInt8: *t.data<int8_t>() = int8_t(v); break;
    case DataType::kUInt8: *t.data<uint8_t>() = uint8_t(v); break;
    case DataType::kInt32: *t.data<int32_t>() = int32_t(v); break;
    case DataType::kInt64: *t.data<int64_t>() = int64_t(v); break;
    case DataType::kBool: *t.data<uint8_t>() = v != 0; break;
    default: *t.data<float>() = float(v); break;
  }
  return c.constant(base, std::move(t));
}

void reduce_axes(Ctx& c, ir::Node& n) { ints_to_input(c, n, "axes", 1); }
void squeeze_axes(Ctx& c, ir::Node& n) { ints_to_input(c, n, "axes", 1); }

void split_old(Ctx& c, ir::Node& n) {
  if (n.opset < 13) ints_to_input(c, n, "split", 1);
  // Before 18 an absent `split` meant "equal parts, one per output"; 18 spells that num_outputs.
  if (!n.in(1) && !n.has("num_outputs")) n.attrs["num_outputs"] = ir::int_attr(int64_t(n.outputs.size()));
}

void clip_old(Ctx& c, ir::Node& n) {
  ir::Value* x = n.in(0);
  if (n.has("min")) set_input(n, 1, scalar_like(c, x, n.f("min", 0.f), n.name + "_min"));
  if (n.has("max")) set_input(n, 2, scalar_like(c, x, n.f("max", 0.f), n.name + "_max"));
  n.attrs.erase("min");
  n.attrs.erase("max");
}

void pad_old(Ctx& c, ir::Node& n) {
  if (!n.has("pads")) throw_bad_input(n.label() + ": Pad (opset < 11) needs the 'pads' attribute");
  ints_to_input(c, n, "pads", 1);
  float value = n.f("value", 0.f);
  n.attrs.erase("value");
  if (value != 0.f) set_input(n, 2, scalar_like(c, n.in(0), value, n.name + "_value"));
}

void slice_old(Ctx& c, ir::Node& n) {
  if (!n.has("starts") || !n.has("ends"))
    throw_bad_input(n.label() + ": Slice (opset < 10) needs the 'starts' and 'ends' attributes");
  ints_to_input(c, n, "starts", 1);
  ints_to_input(c, n, "ends", 2);
  ints_to_input(c, n, "axes", 3);
}

void topk_old(Ctx& c, ir::Node& n) {
  if (!n.has("k")) throw_bad_input(n.label() + ": TopK (opset < 10) needs the 'k' attribute");
  set_input(n, 1, c.int64_const(n.name + "_k", {n.i("k", 0)}));
  n.attrs.erase("k");
}

// Upsample and Resize-10 map output to input coordinates as x / scale
// (asymmetric) and pick the floor in nearest mode.
void set_upsample_modes(ir::Node& n, const std::string& mode) {
  if (mode == "nearest") {
    n.attrs["mode"] = ir::string_attr("nearest");
    n.attrs["nearest_mode"] = ir::string_attr("floor");
  } else if (mode == "linear" || mode == "bilinear") {
    n.attrs["mode"] = ir::string_attr("linear");
  } else {
    throw_unsupported(n.label() + ": mode '" + mode + "' is not supported (expected nearest or linear)");
  }
  n.attrs["coordinate_transformation_mode"] = ir::string_attr("asymmetric");
}

void upsample(Ctx& c, ir::Node& n) {
  ir::Value* x = n.in(0);
  ir::Value* scales = n.in(1);
  if (n.has("scales")) {
    std::vector<float> s = n.floats("scales");
    scales = c.constant(n.name + "_scales", ir::Tensor::from_float(s, {int64_t(s.size())}));
    n.attrs.erase("scales");
  }
  if (!x || !scales) throw_bad_input(n.label() + ": Upsample needs an input and scales");
  n.inputs = {x, nullptr, scales};
  set_upsample_modes(n, n.s("mode", "nearest"));
}

void resize_10(Ctx& c, ir::Node& n) {
  n.inputs = {n.in(0), nullptr, n.in(1)};
  set_upsample_modes(n, n.s("mode", "nearest"));
}

// Opset 11 required `scales` even with `sizes` (as an empty tensor); an empty
// constant roi/scales means "not given" in every opset.
void resize_empty_inputs(Ctx&, ir::Node& n) {
  for (size_t k = 1; k <= 2 && k < n.inputs.size(); ++k)
    if (n.inputs[k] && n.inputs[k]->is_constant() && n.inputs[k]->constant->numel() == 0) n.inputs[k] = nullptr;
  while (!n.inputs.empty() && !n.inputs.back()) n.inputs.pop_back();
}

// Training-only outputs of old BatchNormalization / Dropout are dropped; a
// consumer that needs one gets a clear error from Ctx::lookup.
void drop_outputs_from(Ctx& c, ir::Node& n, size_t keep) {
  for (size_t k = keep; k < n.outputs.size(); ++k)
    if (n.outputs[k]) {
      c.dropped.insert(n.outputs[k]->name);
      n.outputs[k]->producer = nullptr;
    }
  if (n.outputs.size() > keep) n.outputs.resize(keep);
}

void batchnorm_old(Ctx& c, ir::Node& n) {
  if (n.opset < 9 && n.i("spatial", 1) == 0)
    throw_unsupported(n.label() + ": BatchNormalization with spatial=0 (per-element statistics) is not supported");
  n.attrs.erase("spatial");
  n.attrs.erase("is_test");
  n.attrs.erase("consumed_inputs");
  drop_outputs_from(c, n, 1);
}

void batchnorm_training(Ctx&, ir::Node& n) {
  if (n.i("training_mode", 0) != 0)
    throw_unsupported(n.label() + ": BatchNormalization in training mode is not supported; export the model in "
                      "eval mode");
}

void dropout_old(Ctx& c, ir::Node& n) {
  if (n.has("ratio")) set_input(n, 1, c.constant(n.name + "_ratio", ir::Tensor::from_float({n.f("ratio", 0.5f)}, {})));
  n.attrs.erase("ratio");
  n.attrs.erase("is_test");
}

// Before 13, Softmax/LogSoftmax/Hardmax coerced the input to 2-D at `axis`
// (default 1) and normalized over everything after it. That equals the
// per-axis form only when `axis` is the last axis; otherwise flatten, apply
// over axis 1, and reshape back.
void softmax_old(Ctx& c, ir::Node& n) {
  int64_t axis = n.i("axis", 1);
  ir::Value* x = n.in(0);
  if (!x || n.outputs.empty() || !n.outputs[0]) return;
  bool last = axis == -1 || (x->has_shape && (axis == int64_t(x->dims.size()) - 1 ||
                                              (x->dims.size() == 0 && axis == 0)));
  if (last) {
    n.attrs["axis"] = ir::int_attr(-1);
    return;
  }
  const std::string& path = n.path;
  ir::Value* y = n.outputs[0];
  ir::Value* flat = c.temp(n.name + "_2d");
  ir::Node* fl = c.add_node("Flatten", n.name + "_flatten", {x}, {flat}, 13, path);
  fl->attrs["axis"] = ir::int_attr(axis);
  ir::Value* shape = c.temp(n.name + "_shape");
  c.add_node("Shape", n.name + "_shape", {x}, {shape}, 13, path);
  ir::Value* out2d = c.temp(n.name + "_out2d");
  n.inputs[0] = flat;
  n.outputs[0] = out2d;
  out2d->producer = &n;
  n.attrs["axis"] = ir::int_attr(1);
  y->producer = nullptr;
  c.add_node("Reshape", n.name + "_reshape", {out2d, shape}, {y}, 14, path);
}

const Rule kRules[] = {
    {"ReduceSum", 13, reduce_axes},
    {"ReduceMean", 18, reduce_axes},
    {"ReduceMax", 18, reduce_axes},
    {"ReduceMin", 18, reduce_axes},
    {"ReduceProd", 18, reduce_axes},
    {"ReduceL1", 18, reduce_axes},
    {"ReduceL2", 18, reduce_axes},
    {"ReduceLogSum", 18, reduce_axes},
    {"ReduceLogSumExp", 18, reduce_axes},
    {"ReduceSumSquare", 18, reduce_axes},
    {"Split", 18, split_old},
    {"Squeeze", 13, squeeze_axes},
    {"Unsqueeze", 13, squeeze_axes},
    {"Clip", 11, clip_old},
    {"Pad", 11, pad_old},
    {"Slice", 10, slice_old},
    {"TopK", 10, topk_old},
    {"Upsample", 1000, upsample},
    {"Resize", 11, resize_10},
    {"Resize", 1000, resize_empty_inputs},
    {"BatchNormalization", 14, batchnorm_old},
    {"BatchNormalization", 1000, batchnorm_training},
    {"Dropout", 12, dropout_old},
    {"Softmax", 13, softmax_old},
    {"LogSoftmax", 13, softmax_old},
    {"Hardmax", 13, softmax_old},
};

}  // namespace

std::string canonical_op(const std::string& op, int opset) {
  if (op == "Upsample") return "Resize";
  if (op == "Scatter") return "ScatterElements";  // same semantics, renamed in opset 11
  return op;
}

void canonicalize(Ctx& c, ir::Node& n, const std::string& original_op) {
  for (const Rule& r : kRules)
    if (original_op == r.op && n.opset < r.below) r.fn(c, n);
}

}  // namespace kiln::onnx_import
