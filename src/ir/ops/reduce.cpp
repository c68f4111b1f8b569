// Shape/type inference for Reduce* (axes as optional input 1, opset-18 form)
// and ArgMax/ArgMin. The reduced axes decide the output shape, so a given
// axes input must be a constant (an empty one needs no values).
#include <algorithm>

#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::ir {

namespace {

// Which axes the node reduces: sorted, unique, non-negative. An empty result
// with noop_with_empty_axes=0 means "all axes" and is expanded here.
std::vector<int64_t> reduce_axes(const Node& n, int64_t rank, bool* noop) {
  std::vector<int64_t> axes;
  bool given = false;
  if (const Value* a = n.in(1)) {
    if (a->dtype != DataType::kInt64 && a->dtype != DataType::kInt32)
      throw_bad_input(n.label() + ": axes input '" + a->name + "' must be int64, got " + dtype_name(a->dtype));
    if (a->dims.size() > 1)
      throw_bad_input(n.label() + ": axes input '" + a->name + "' must be 1-D, got shape " + shape_str(a->dims));
    if (numel_of(a->dims) > 0) {
      if (!a->is_constant())
        throw_unsupported(n.label() + ": input '" + a->name + "' must be a constant (kiln needs static shapes)");
      axes = a->constant->to_int64();
      given = true;
    }
  } else if (n.has("axes")) {  // older form, if an importer left it as an attribute
    axes = n.ints("axes");
    given = !axes.empty();
  }
  *noop = false;
  if (!given) {
    if (n.i("noop_with_empty_axes", 0) != 0) {
      *noop = true;
      return {};
    }
    axes.clear();
    for (int64_t d = 0; d < rank; ++d) axes.push_back(d);
    return axes;
  }
  for (int64_t& ax : axes) {
    if (ax < -rank || ax >= rank)
      throw_bad_input(n.label() + ": axis " + std::to_string(ax) + " is out of range for rank " + std::to_string(rank));
    if (ax < 0) ax += rank;
  }
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
    throw_bad_input(n.label() + ": axes contain a repeated axis");
  return axes;
}

void infer_reduce(Node& n) {
  const Value& x = input_checked(n, 0);
  const bool minmax = n.op_type == "ReduceMax" || n.op_type == "ReduceMin";
  if (x.dtype == DataType::kBool && !minmax)
    throw_bad_input(n.label() + ": input '" + x.name + "' is bool; " + n.op_type + " takes numeric tensors");
  bool noop = false;
  std::vector<int64_t> axes = reduce_axes(n, int64_t(x.dims.size()), &noop);
  if (noop) {
    set_output(n, 0, x.dtype, x.dims);
    return;
  }
  const bool keep = n.i("keepdims", 1) != 0;
  Dims out;
  for (int64_t d = 0; d < int64_t(x.dims.size()); ++d) {
    bool reduced = std::binary_search(axes.begin(), axes.end(), d);
    if (!reduced) out.push_back(x.dims[size_t(d)]);
    else if (keep) out.push_back(1);
  }
  set_output(n, 0, x.dtype, out);
}

void infer_arg(Node& n) {
  const Value& x = input_checked(n, 0);
  if (x.dtype == DataType::kBool)
    throw_bad_input(n.label() + ": input '" + x.name + "' is bool; " + n.op_type + " takes numeric tensors");
  const int64_t rank = int64_t(x.dims.size());
  const int64_t axis = normalize_axis(n, n.i("axis", 0), rank);
  const bool keep = n.i("keepdims", 1) != 0;
  Dims out;
  for (int64_t d = 0; d < rank; ++d) {
    if (d != axis) out.push_back(x.dims[size_t(d)]);
    else if (keep) out.push_back(1);
  }
  if (rank > 0 && x.dims[size_t(axis)] == 0 && numel_of(out) > 0)
    throw_bad_input(n.label() + ": cannot take " + n.op_type + " over axis " + std::to_string(axis) +
                    " of size 0 (input shape " + shape_str(x.dims) + ")");
  set_output(n, 0, DataType::kInt64, out);
}

}  // namespace

void register_reduce_ops(OpRegistry& r) {
  for (const char* op : {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                         "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})
    r.add({"", op, infer_reduce});
  r.add({"", "ArgMax", infer_arg});
  r.add({"", "ArgMin", infer_arg});
}

}  // namespace kiln::ir
