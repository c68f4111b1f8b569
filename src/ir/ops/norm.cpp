// Shape inference for the normalization ops: BatchNormalization,
// InstanceNormalization, LayerNormalization, LRN, MeanVarianceNormalization.
#include <string>

#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::ir {

namespace {

const Value& float_input(const Node& n, size_t min_rank) {
  const Value& x = input_checked(n, 0);
  if (x.dtype != DataType::kFloat32 && x.dtype != DataType::kFloat16)
    throw_unsupported(n.label() + ": input dtype " + dtype_name(x.dtype) + " is not supported (float only)");
  if (x.dims.size() < min_rank)
    throw_bad_input(n.label() + ": input '" + x.name + "' has shape " + shape_str(x.dims) + "; expected rank >= " +
                    std::to_string(min_rank));
  return x;
}

void check_vec(const Node& n, size_t k, const char* what, int64_t c, bool float_only) {
  const Value& v = input_checked(n, k);
  if (v.dims != Dims{c})
    throw_bad_input(n.label() + ": " + what + " '" + v.name + "' has shape " + shape_str(v.dims) + ", expected [" +
                    std::to_string(c) + "]");
  if (float_only && v.dtype != DataType::kFloat32 && v.dtype != DataType::kFloat16)
    throw_bad_input(n.label() + ": " + what + " must be a float tensor");
}

void infer_batchnorm(Node& n) {
  const Value& x = float_input(n, 2);
  int64_t c = x.dims[1];
  const char* names[] = {"scale", "bias", "mean", "var"};
  for (size_t k = 1; k <= 4; ++k) check_vec(n, k, names[k - 1], c, true);
  int64_t training = n.i("training_mode", 0);
  if (training != 0 && training != 1) throw_bad_input(n.label() + ": training_mode must be 0 or 1");
  // Outputs 1, 2 (running mean / var) are defined for training; in inference
  // mode the kernel passes the inputs through. Older saved-stat outputs are not.
  for (size_t k = 3; k < n.outputs.size(); ++k)
    if (n.outputs[k])
      throw_unsupported(n.label() + ": output " + std::to_string(k) + " (saved statistics) is not supported");
  set_output(n, 0, x.dtype, x.dims);
  set_output(n, 1, input_checked(n, 3).dtype, {c});
  set_output(n, 2, input_checked(n, 4).dtype, {c});
}

void infer_instancenorm(Node& n) {
  const Value& x = float_input(n, 3);
  check_vec(n, 1, "scale", x.dims[1], true);
  check_vec(n, 2, "bias", x.dims[1], true);
  set_output(n, 0, x.dtype, x.dims);
}

// Scale and bias broadcast one way onto X[axis:].
void check_broadcast_onto(const Node& n, const Value& v, const Dims& tail) {
  if (v.dims.size() > tail.size())
    throw_bad_input(n.label() + ": '" + v.name + "' of shape " + shape_str(v.dims) +
                    " does not broadcast to the normalized shape " + shape_str(tail));
  for (size_t i = 0; i < v.dims.size(); ++i) {
    int64_t vd = v.dims[v.dims.size() - 1 - i], td = tail[tail.size() - 1 - i];
    if (vd != 1 && vd != td)
      throw_bad_input(n.label() + ": '" + v.name + "' of shape " + shape_str(v.dims) +
                      " does not broadcast to the normalized shape " + shape_str(tail));
  }
}

void infer_layernorm(Node& n) {
  const Value& x = float_input(n, 1);
  int64_t rank = int64_t(x.dims.size());
  int64_t axis = normalize_axis(n, n.i("axis", -1), rank);
  Dims tail(x.dims.begin() + axis, x.dims.end());
  check_broadcast_onto(n, input_checked(n, 1), tail);
  if (const Value* b = n.in(2)) check_broadcast_onto(n, *b, tail);
  int64_t stash = n.i("stash_type", 1);
  if (stash != 1 && stash != -1 && stash != 10 && stash != 11)
    throw_unsupported(n.label() + ": stash_type " + std::to_string(stash) + " is not supported");
  // Write the resolved axis so kernels need no rank.
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = axis;
  n.attrs["axis"] = a;
  Dims stat(x.dims.begin(), x.dims.begin() + axis);
  stat.resize(x.dims.size(), 1);
  DataType sdt = stash == 1 ? DataType::kFloat32 : x.dtype;
  set_output(n, 0, x.dtype, x.dims);
  set_output(n, 1, sdt, stat);
  set_output(n, 2, sdt, stat);
}

void infer_lrn(Node& n) {
  const Value& x = float_input(n, 3);
  if (!n.has("size")) throw_bad_input(n.label() + ": attribute 'size' is required");
  if (n.i("size", 1) < 1) throw_bad_input(n.label() + ": size must be >= 1");
  set_output(n, 0, x.dtype, x.dims);
}

void infer_mvn(Node& n) {
  const Value& x = float_input(n, 1);
  int64_t rank = int64_t(x.dims.size());
  std::vector<int64_t> axes = n.ints("axes", {0, 2, 3});
  std::vector<int64_t> norm;
  for (int64_t a : axes) {
    int64_t v = normalize_axis(n, a, rank);
    for (int64_t u : norm)
      if (u == v) throw_bad_input(n.label() + ": axes " + shape_str(axes) + " repeat an axis");
    norm.push_back(v);
  }
  Attribute at;
  at.kind = Attribute::Kind::kInts;
  at.ints = norm;
  n.attrs["axes"] = at;
  set_output(n, 0, x.dtype, x.dims);
}

}  // namespace

void register_norm_ops(OpRegistry& r) {
  r.add({"", "BatchNormalization", infer_batchnorm});
  r.add({"", "InstanceNormalization", infer_instancenorm});
  r.add({"", "LayerNormalization", infer_layernorm});
  r.add({"", "LRN", infer_lrn});
  r.add({"", "MeanVarianceNormalization", infer_mvn});
}

}  // namespace kiln::ir
