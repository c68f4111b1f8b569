// Shape inference for the reshaping ops: Reshape, Flatten, Transpose, Squeeze,
// Unsqueeze, Identity, Dropout, Shape, Size, Expand.
#include <algorithm>
#include <memory>

#include "ir/op_registry.h"
#include "ir/ops/shape_helpers.h"
#include "kiln/error.h"

namespace kiln::ir {

// Shared with the CPU kernels so both sides agree on the output dims.
Dims reshape_output_dims(const Node& n, const Dims& in, const std::vector<int64_t>& shape) {
  const bool allowzero = n.i("allowzero", 0) != 0;
  Dims out(shape.size());
  int infer_at = -1;
  int64_t known = 1;
  bool has_zero = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t s = shape[i];
    if (s == -1) {
      if (infer_at >= 0) throw_bad_input(n.label() + ": shape " + shape_str(shape) + " has more than one -1");
      infer_at = int(i);
      continue;
    }
    if (s == 0 && !allowzero) {
      if (i >= in.size())
        throw_bad_input(n.label() + ": shape " + shape_str(shape) + " copies dimension " + std::to_string(i) +
                        " (0) but the input " + shape_str(in) + " has rank " + std::to_string(in.size()));
      s = in[i];
    } else if (s < 0) {
      throw_bad_input(n.label() + ": shape " + shape_str(shape) + " has an invalid entry " + std::to_string(s));
    }
    if (s == 0) has_zero = true;
    out[i] = s;
    // Checked before multiplying: a hostile shape must not overflow int64.
    if (!has_zero && s > 0 && known > (int64_t(1) << 62) / s)
      throw_bad_input(n.label() + ": shape " + shape_str(shape) + " has too many elements");
    known = has_zero ? 0 : known * s;
  }
  const int64_t total = numel_of(in);
  if (infer_at >= 0) {
    if (allowzero && has_zero)
      throw_bad_input(n.label() + ": shape " + shape_str(shape) + " mixes -1 with 0 while allowzero=1");
    if (known == 0 || total % known != 0)
      throw_bad_input(n.label() + ": cannot infer the -1 in shape " + shape_str(shape) + " for input " +
                      shape_str(in));
    out[size_t(infer_at)] = total / known;
  }
  if (numel_of(out) != total)
    throw_bad_input(n.label() + ": cannot reshape " + shape_str(in) + " to " + shape_str(out) +
                    " (element counts differ)");
  return out;
}

// The dims Squeeze keeps; empty `axes` means every dimension of size 1.
Dims squeeze_output_dims(const Node& n, const Dims& in, const std::vector<int64_t>& axes_in, bool have_axes) {
  const int64_t r = int64_t(in.size());
  std::vector<bool> drop(in.size(), false);
  if (have_axes) {
    for (int64_t a : normalize_axes(n, axes_in, r)) {
      if (in[size_t(a)] != 1)
        throw_bad_input(n.label() + ": cannot squeeze axis " + std::to_string(a) + " of size " +
                        std::to_string(in[size_t(a)]) + " in " + shape_str(in));
      drop[size_t(a)] = true;
    }
  } else {
    for (size_t i = 0; i < in.size(); ++i) drop[i] = in[i] == 1;
  }
  Dims out;
  for (size_t i = 0; i < in.size(); ++i)
    if (!drop[i]) out.push_back(in[i]);
  return out;
}

namespace {

void infer_reshape(Node& n) {
  const Value& x = input_checked(n, 0);
  set_output(n, 0, x.dtype, reshape_output_dims(n, x.dims, constant_ints(n, 1)));
}

void infer_flatten(Node& n) {
  const Value& x = input_checked(n, 0);
  const int64_t r = int64_t(x.dims.size());
  int64_t axis = n.i("axis", 1);
  if (axis < -r || axis > r)
    throw_bad_input(n.label() + ": axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(r));
  if (axis < 0) axis += r;
  Dims lo(x.dims.begin(), x.dims.begin() + axis), hi(x.dims.begin() + axis, x.dims.end());
  set_output(n, 0, x.dtype, {numel_of(lo), numel_of(hi)});
}

void infer_transpose(Node& n) {
  const Value& x = input_checked(n, 0);
  const size_t r = x.dims.size();
  std::vector<int64_t> perm = n.ints("perm");
  if (!n.has("perm"))
    for (size_t i = 0; i < r; ++i) perm.push_back(int64_t(r - 1 - i));
  if (perm.size() != r)
    throw_bad_input(n.label() + ": perm " + shape_str(perm) + " does not match input rank " + std::to_string(r));
  std::vector<bool> seen(r, false);
  Dims out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t p = perm[i];
    if (p < 0) p += int64_t(r);
    if (p < 0 || p >= int64_t(r) || seen[size_t(p)])
      throw_bad_input(n.label() + ": perm " + shape_str(perm) + " is not a permutation of 0.." + std::to_string(r - 1));
    seen[size_t(p)] = true;
    out[i] = x.dims[size_t(p)];
  }
  set_output(n, 0, x.dtype, out);
}

void infer_squeeze(Node& n) {
  const Value& x = input_checked(n, 0);
  std::vector<int64_t> axes;
  bool have = false;
  if (has_nonempty_input(n, 1)) {
    axes = constant_ints(n, 1);
    have = true;
  } else if (n.has("axes")) {  // pre-13 form, in case a model reaches us unconverted
    axes = n.ints("axes");
    have = !axes.empty();
  }
  set_output(n, 0, x.dtype, squeeze_output_dims(n, x.dims, axes, have));
}

void infer_unsqueeze(Node& n) {
  const Value& x = input_checked(n, 0);
  std::vector<int64_t> axes;
  if (n.in(1)) axes = constant_ints(n, 1);
  else if (n.has("axes")) axes = n.ints("axes");
  else throw_bad_input(n.label() + ": the axes input is missing");
  const int64_t r = int64_t(x.dims.size() + axes.size());
  std::vector<bool> is_new(size_t(r), false);
  for (int64_t a : normalize_axes(n, axes, r)) is_new[size_t(a)] = true;
  Dims out;
  size_t k = 0;
  for (int64_t i = 0; i < r; ++i) out.push_back(is_new[size_t(i)] ? 1 : x.dims[k++]);
  set_output(n, 0, x.dtype, out);
}

void infer_identity(Node& n) {
  const Value& x = input_checked(n, 0);
  set_output(n, 0, x.dtype, x.dims);
}

void infer_dropout(Node& n) {
  const Value& x = input_checked(n, 0);
  // Training mode drops random elements; it is only an identity when the ratio is a constant 0.
  if (const Value* t = n.in(2); t && numel_of(t->dims) > 0) {
    const Value* ratio = n.in(1);
    const bool zero_ratio = ratio && ratio->is_constant() && ratio->constant->numel() > 0 &&
                            ratio->constant->to_double()[0] == 0.0;
    if (!t->is_constant() && !zero_ratio)
      throw_unsupported(n.label() + ": input '" + t->name + "' (training_mode) must be a constant false; kiln runs "
                        "inference only");
    if (t->is_constant() && t->constant->to_int64()[0] != 0 && !zero_ratio)
      throw_unsupported(n.label() + ": training_mode=true is not supported (kiln runs inference only)");
  }
  set_output(n, 0, x.dtype, x.dims);
  set_output(n, 1, DataType::kBool, x.dims);
}

// Output of Shape/Size is known at build time: publish it as a constant so the
// shape arithmetic that follows folds away.
void publish_constant(Node& n, Tensor t) {
  if (!n.outputs.empty() && n.outputs[0]) n.outputs[0]->constant = std::make_shared<const Tensor>(std::move(t));
}

void infer_shape(Node& n) {
  const Value& x = input_checked(n, 0);
  const int64_t r = int64_t(x.dims.size());
  auto clampi = [&](int64_t v) { return std::min(std::max(v < 0 ? v + r : v, int64_t(0)), r); };
  int64_t start = clampi(n.i("start", 0)), end = clampi(n.i("end", r));
  std::vector<int64_t> vals;
  for (int64_t i = start; i < end; ++i) vals.push_back(x.dims[size_t(i)]);
  set_output(n, 0, DataType::kInt64, {int64_t(vals.size())});
  publish_constant(n, Tensor::from_int64(vals, {int64_t(vals.size())}));
}

void infer_size(Node& n) {
  const Value& x = input_checked(n, 0);
  set_output(n, 0, DataType::kInt64, {});
  publish_constant(n, Tensor::from_int64({numel_of(x.dims)}, {}));
}

void infer_expand(Node& n) {
  const Value& x = input_checked(n, 0);
  std::vector<int64_t> shape = constant_ints(n, 1);
  for (int64_t s : shape)
    if (s < 0) throw_bad_input(n.label() + ": shape " + shape_str(shape) + " has a negative entry");
  set_output(n, 0, x.dtype, broadcast_dims(n, x.dims, shape));
}

}  // namespace

void register_shape_ops(OpRegistry& r) {
  r.add({"", "Reshape", infer_reshape});
  r.add({"", "Flatten", infer_flatten});
  r.add({"", "Transpose", infer_transpose});
  r.add({"", "Squeeze", infer_squeeze});
  r.add({"", "Unsqueeze", infer_unsqueeze});
  r.add({"", "Identity", infer_identity});
  r.add({"", "Dropout", infer_dropout});
  r.add({"", "Shape", infer_shape});
  r.add({"", "Size", infer_size});
  r.add({"", "Expand", infer_expand});
}

}  // namespace kiln::ir
