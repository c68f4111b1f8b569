// Shape inference for the data-movement ops that select, combine or rearrange
// elements: Concat, Split, Slice, Gather*, Scatter*, Pad, Tile,
// DepthToSpace/SpaceToDepth, TopK, Trilu, OneHot.
#include <algorithm>
#include <limits>

#include "ir/op_registry.h"
#include "ir/ops/shape_helpers.h"
#include "ir/ops/tensor_params.h"
#include "kiln/error.h"

namespace kiln::ir {

SliceParams slice_params(const Node& n) {
  const Value& x = input_checked(n, 0);
  const int64_t r = int64_t(x.dims.size());
  std::vector<int64_t> starts = constant_ints(n, 1), ends = constant_ints(n, 2), axes, steps;
  if (has_nonempty_input(n, 3)) {
    axes = constant_ints(n, 3);
  } else {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(int64_t(i));
  }
  if (has_nonempty_input(n, 4)) steps = constant_ints(n, 4);
  else steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    throw_bad_input(n.label() + ": starts, ends, axes and steps must have the same length (got " +
                    std::to_string(starts.size()) + ", " + std::to_string(ends.size()) + ", " +
                    std::to_string(axes.size()) + ", " + std::to_string(steps.size()) + ")");
  SliceParams p;
  p.start.assign(size_t(r), 0);
  p.step.assign(size_t(r), 1);
  p.out = x.dims;
  std::vector<int64_t> ax = normalize_axes(n, axes, r);
  for (size_t i = 0; i < ax.size(); ++i) {
    const int64_t dim = x.dims[size_t(ax[i])], step = steps[i];
    if (step == 0) throw_bad_input(n.label() + ": step 0 on axis " + std::to_string(ax[i]));
    p.step[size_t(ax[i])] = step;
    if (dim == 0) continue;
    int64_t s = starts[i], e = ends[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    // Out-of-range bounds clamp; a reversed slice may end one before element 0.
    if (step > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
    } else {
      s = std::clamp<int64_t>(s, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
    }
    int64_t len = step > 0 ? (e - s + step - 1) / step : (s - e + (-step) - 1) / (-step);
    if (len < 0) len = 0;
    p.start[size_t(ax[i])] = len > 0 ? s : 0;
    p.out[size_t(ax[i])] = len;
  }
  return p;
}

std::vector<int64_t> split_sizes(const Node& n, int64_t axis) {
  const Value& x = input_checked(n, 0);
  const int64_t dim = x.dims[size_t(axis)];
  const int64_t outs = int64_t(n.outputs.size());
  std::vector<int64_t> sizes;
  if (has_nonempty_input(n, 1)) {
    sizes = constant_ints(n, 1);
    int64_t sum = 0;
    for (int64_t s : sizes) {
      if (s < 0) throw_bad_input(n.label() + ": split " + shape_str(sizes) + " has a negative size");
      sum += s;
    }
    if (sum != dim)
      throw_bad_input(n.label() + ": split " + shape_str(sizes) + " sums to " + std::to_string(sum) +
                      " but axis " + std::to_string(axis) + " has " + std::to_string(dim) + " elements");
    if (int64_t(sizes.size()) != outs)
      throw_bad_input(n.label() + ": split has " + std::to_string(sizes.size()) + " sizes for " +
                      std::to_string(outs) + " outputs");
    return sizes;
  }
  const int64_t parts = n.i("num_outputs", outs);
  if (parts != outs || parts < 1)
    throw_bad_input(n.label() + ": num_outputs=" + std::to_string(parts) + " but the node has " +
                    std::to_string(outs) + " outputs");
  // Uneven splits give every part ceil(dim/parts); the last ones get the rest.
  const int64_t chunk = (dim + parts - 1) / parts;
  int64_t left = dim;
  for (int64_t k = 0; k < parts; ++k) {
    sizes.push_back(std::min(chunk, left));
    left -= sizes.back();
  }
  return sizes;
}

PadParams pad_params(const Node& n) {
  const Value& x = input_checked(n, 0);
  const int64_t r = int64_t(x.dims.size());
  PadParams p;
  p.mode = n.s("mode", "constant");
  if (p.mode != "constant" && p.mode != "reflect" && p.mode != "edge" && p.mode != "wrap")
    throw_unsupported(n.label() + ": mode '" + p.mode + "' is not supported (constant, reflect, edge, wrap)");
  std::vector<int64_t> pads = n.in(1) ? constant_ints(n, 1) : n.ints("pads");
  std::vector<int64_t> axes;
  if (has_nonempty_input(n, 3)) {
    axes = normalize_axes(n, constant_ints(n, 3), r);
  } else {
    for (int64_t i = 0; i < r; ++i) axes.push_back(i);
  }
  if (pads.size() != 2 * axes.size())
    throw_bad_input(n.label() + ": pads " + shape_str(pads) + " must hold 2 values per padded axis (" +
                    std::to_string(axes.size()) + " axes)");
  p.begin.assign(size_t(r), 0);
  p.end.assign(size_t(r), 0);
  for (size_t i = 0; i < axes.size(); ++i) {
    const size_t a = size_t(axes[i]);
    p.begin[a] = pads[i];
    p.end[a] = pads[axes.size() + i];
    const int64_t out = x.dims[a] + p.begin[a] + p.end[a];
    if (out < 0) throw_bad_input(n.label() + ": pads " + shape_str(pads) + " crop axis " + std::to_string(a) + " below 0");
    if (p.mode != "constant" && x.dims[a] == 0 && out > 0)
      throw_bad_input(n.label() + ": cannot " + p.mode + "-pad the empty axis " + std::to_string(a));
  }
  return p;
}

namespace {

void infer_concat(Node& n) {
  const Value& x0 = input_checked(n, 0);
  if (x0.dims.empty()) throw_bad_input(n.label() + ": cannot concatenate scalars");
  const int64_t r = int64_t(x0.dims.size());
  const int64_t axis = normalize_axis(n, n.i("axis", 0), r);
  Dims out = x0.dims;
  out[size_t(axis)] = 0;
  for (size_t k = 0; k < n.inputs.size(); ++k) {
    const Value& x = input_checked(n, k);
    bool same = x.dims.size() == x0.dims.size() && x.dtype == x0.dtype;
    for (int64_t i = 0; same && i < r; ++i) same = i == axis || x.dims[size_t(i)] == x0.dims[size_t(i)];
    if (!same)
      throw_bad_input(n.label() + ": input '" + x.name + "' " + dtype_name(x.dtype) + shape_str(x.dims) +
                      " does not match " + dtype_name(x0.dtype) + shape_str(x0.dims) + " outside axis " +
                      std::to_string(axis));
    out[size_t(axis)] += x.dims[size_t(axis)];
  }
  set_output(n, 0, x0.dtype, out);
}

void infer_split(Node& n) {
  const Value& x = input_checked(n, 0);
  const int64_t axis = normalize_axis(n, n.i("axis", 0), int64_t(x.dims.size()));
  if (x.dims.empty()) throw_bad_input(n.label() + ": cannot split a scalar");
  std::vector<int64_t> sizes = split_sizes(n, axis);
  for (size_t k = 0; k < sizes.size(); ++k) {
    Dims d = x.dims;
    d[size_t(axis)] = sizes[k];
    set_output(n, k, x.dtype, d);
  }
}

void infer_slice(Node& n) { set_output(n, 0, input_checked(n, 0).dtype, slice_params(n).out); }

void check_indices(const Node& n, size_t k) {
  const Value& v = input_checked(n, k);
  if (!is_index_dtype(v.dtype))
    throw_bad_input(n.label() + ": indices '" + v.name + "' must be int32 or int64, got " + dtype_name(v.dtype));
}

void infer_gather(Node& n) {
  const Value& x = input_checked(n, 0);
  const Value& idx = input_checked(n, 1);
  check_indices(n, 1);
  if (x.dims.empty()) throw_bad_input(n.label() + ": cannot gather from a scalar");
  const int64_t axis = normalize_axis(n, n.i("axis", 0), int64_t(x.dims.size()));
  Dims out(x.dims.begin(), x.dims.begin() + axis);
  out.insert(out.end(), idx.dims.begin(), idx.dims.end());
  out.insert(out.end(), x.dims.begin() + axis + 1, x.dims.end());
  set_output(n, 0, x.dtype, out);
}

void infer_gather_elements(Node& n) {
  const Value& x = input_checked(n, 0);
  const Value& idx = input_checked(n, 1);
  check_indices(n, 1);
  const int64_t r = int64_t(x.dims.size());
  const int64_t axis = normalize_axis(n, n.i("axis", 0), r);
  bool ok = r > 0 && int64_t(idx.dims.size()) == r;
  for (int64_t i = 0; ok && i < r; ++i) ok = i == axis || idx.dims[size_t(i)] <= x.dims[size_t(i)];
  if (!ok)
    throw_bad_input(n.label() + ": indices " + shape_str(idx.dims) + " must have the rank of data " +
                    shape_str(x.dims) + " and no larger dims outside the axis");
  set_output(n, 0, x.dtype, idx.dims);
}

void infer_gather_nd(Node& n) {
  const Value& x = input_checked(n, 0);
  const Value& idx = input_checked(n, 1);
  check_indices(n, 1);
  const int64_t r = int64_t(x.dims.size()), q = int64_t(idx.dims.size()), b = n.i("batch_dims", 0);
  if (q < 1 || b < 0 || b >= std::min(r, q))
    throw_bad_input(n.label() + ": batch_dims=" + std::to_string(b) + " is invalid for data " + shape_str(x.dims) +
                    " and indices " + shape_str(idx.dims));
  const int64_t m = idx.dims.back();
  bool ok = m >= 0 && m <= r - b;
  for (int64_t i = 0; ok && i < b; ++i) ok = idx.dims[size_t(i)] == x.dims[size_t(i)];
  if (!ok)
    throw_bad_input(n.label() + ": indices " + shape_str(idx.dims) + " do not fit data " + shape_str(x.dims) +
                    " with batch_dims=" + std::to_string(b));
  Dims out(idx.dims.begin(), idx.dims.end() - 1);
  out.insert(out.end(), x.dims.begin() + b + m, x.dims.end());
  set_output(n, 0, x.dtype, out);
}

void check_reduction(const Node& n) {
  const std::string red = n.s("reduction", "none");
  if (red != "none" && red != "add" && red != "mul" && red != "max" && red != "min")
    throw_unsupported(n.label() + ": reduction '" + red + "' is not supported (none, add, mul, max, min)");
}

void infer_scatter_nd(Node& n) {
  const Value& x = input_checked(n, 0);
  const Value& idx = input_checked(n, 1);
  const Value& upd = input_checked(n, 2);
  check_indices(n, 1);
  check_reduction(n);
  const int64_t r = int64_t(x.dims.size()), q = int64_t(idx.dims.size());
  const int64_t m = q > 0 ? idx.dims.back() : -1;
  Dims want(idx.dims.begin(), idx.dims.end() - (q > 0 ? 1 : 0));
  if (m >= 0 && m <= r) want.insert(want.end(), x.dims.begin() + m, x.dims.end());
  if (q < 1 || m < 0 || m > r || upd.dims != want || upd.dtype != x.dtype)
    throw_bad_input(n.label() + ": updates " + shape_str(upd.dims) + " do not match data " + shape_str(x.dims) +
                    " and indices " + shape_str(idx.dims));
  set_output(n, 0, x.dtype, x.dims);
}

void infer_scatter_elements(Node& n) {
  const Value& x = input_checked(n, 0);
  const Value& idx = input_checked(n, 1);
  const Value& upd = input_checked(n, 2);
  check_indices(n, 1);
  check_reduction(n);
  const int64_t r = int64_t(x.dims.size());
  const int64_t axis = normalize_axis(n, n.i("axis", 0), r);
  bool ok = r > 0 && idx.dims.size() == x.dims.size() && upd.dims == idx.dims && upd.dtype == x.dtype;
  for (int64_t i = 0; ok && i < r; ++i) ok = i == axis || idx.dims[size_t(i)] <= x.dims[size_t(i)];
  if (!ok)
    throw_bad_input(n.label() + ": indices " + shape_str(idx.dims) + " and updates " + shape_str(upd.dims) +
                    " do not fit data " + shape_str(x.dims));
  set_output(n, 0, x.dtype, x.dims);
}

void infer_pad(Node& n) {
  const Value& x = input_checked(n, 0);
  PadParams p = pad_params(n);
  if (const Value* cv = n.in(2); cv && cv->dtype != x.dtype && numel_of(cv->dims) > 0)
    throw_bad_input(n.label() + ": constant_value is " + dtype_name(cv->dtype) + " but data is " +
                    dtype_name(x.dtype));
  Dims out = x.dims;
  for (size_t a = 0; a < out.size(); ++a) out[a] += p.begin[a] + p.end[a];
  set_output(n, 0, x.dtype, out);
}

void infer_tile(Node& n) {
  const Value& x = input_checked(n, 0);
  std::vector<int64_t> reps = constant_ints(n, 1);
  if (reps.size() != x.dims.size())
    throw_bad_input(n.label() + ": repeats " + shape_str(reps) + " must have one entry per input axis " +
                    shape_str(x.dims));
  Dims out = x.dims;
  for (size_t i = 0; i < reps.size(); ++i) {
    if (reps[i] < 0) throw_bad_input(n.label() + ": repeats " + shape_str(reps) + " has a negative entry");
    out[i] *= reps[i];
  }
  numel_of(out);
  set_output(n, 0, x.dtype, out);
}

void infer_depth_space(Node& n) {
  const Value& x = input_checked(n, 0);
  const int64_t b = n.i("blocksize", 0);
  if (x.dims.size() != 4 || b <= 0)
    throw_bad_input(n.label() + ": needs a 4-D NCHW input and blocksize > 0, got " + shape_str(x.dims) +
                    " blocksize=" + std::to_string(b));
  const int64_t N = x.dims[0], C = x.dims[1], H = x.dims[2], W = x.dims[3];
  if (n.op_type == "DepthToSpace") {
    const std::string mode = n.s("mode", "DCR");
    if (mode != "DCR" && mode != "CRD") throw_bad_input(n.label() + ": mode must be DCR or CRD, got '" + mode + "'");
    if (C % (b * b) != 0)
      throw_bad_input(n.label() + ": channels " + std::to_string(C) + " are not divisible by blocksize^2");
    set_output(n, 0, x.dtype, {N, C / (b * b), H * b, W * b});
  } else {
    if (H % b != 0 || W % b != 0)
      throw_bad_input(n.label() + ": spatial dims " + shape_str(x.dims) + " are not divisible by blocksize " +
                      std::to_string(b));
    set_output(n, 0, x.dtype, {N, C * b * b, H / b, W / b});
  }
}

void infer_topk(Node& n) {
  const Value& x = input_checked(n, 0);
  if (x.dims.empty()) throw_bad_input(n.label() + ": input must have rank >= 1");
  const int64_t axis = normalize_axis(n, n.i("axis", -1), int64_t(x.dims.size()));
  const int64_t k = n.in(1) ? constant_scalar_int(n, 1) : n.i("k", -1);
  if (k < 0 || k > x.dims[size_t(axis)])
    throw_bad_input(n.label() + ": k=" + std::to_string(k) + " is out of range for axis " + std::to_string(axis) +
                    " of " + shape_str(x.dims));
  Dims out = x.dims;
  out[size_t(axis)] = k;
  set_output(n, 0, x.dtype, out);
  set_output(n, 1, DataType::kInt64, out);
}

void infer_trilu(Node& n) {
  const Value& x = input_checked(n, 0);
  if (x.dims.size() < 2) throw_bad_input(n.label() + ": input must have rank >= 2, got " + shape_str(x.dims));
  set_output(n, 0, x.dtype, x.dims);
}

void infer_onehot(Node& n) {
  const Value& idx = input_checked(n, 0);
  const Value& vals = input_checked(n, 2);
  const int64_t depth = constant_scalar_int(n, 1);
  if (depth < 1) throw_bad_input(n.label() + ": depth must be positive, got " + std::to_string(depth));
  if (numel_of(vals.dims) != 2)
    throw_bad_input(n.label() + ": values must hold [off_value, on_value], got shape " + shape_str(vals.dims));
  const int64_t r = int64_t(idx.dims.size());
  int64_t axis = n.i("axis", -1);
  if (axis < -(r + 1) || axis > r)
    throw_bad_input(n.label() + ": axis " + std::to_string(axis) + " is out of range for output rank " +
                    std::to_string(r + 1));
  if (axis < 0) axis += r + 1;
  Dims out = idx.dims;
  out.insert(out.begin() + axis, depth);
  set_output(n, 0, vals.dtype, out);
}

}  // namespace

void register_tensor_ops(OpRegistry& r) {
  r.add({"", "Concat", infer_concat});
  r.add({"", "Split", infer_split});
  r.add({"", "Slice", infer_slice});
  r.add({"", "Gather", infer_gather});
  r.add({"", "GatherElements", infer_gather_elements});
  r.add({"", "GatherND", infer_gather_nd});
  r.add({"", "ScatterND", infer_scatter_nd});
  r.add({"", "ScatterElements", infer_scatter_elements});
  r.add({"", "Scatter", infer_scatter_elements});  // opset 9-10 name of ScatterElements
  r.add({"", "Pad", infer_pad});
  r.add({"", "Tile", infer_tile});
  r.add({"", "DepthToSpace", infer_depth_space});
  r.add({"", "SpaceToDepth", infer_depth_space});
  r.add({"", "TopK", infer_topk});
  r.add({"", "Trilu", infer_trilu});
  r.add({"", "OneHot", infer_onehot});
}

}  // namespace kiln::ir
