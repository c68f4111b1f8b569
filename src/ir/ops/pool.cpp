// Shape inference for the pooling ops: MaxPool, AveragePool, LpPool and their
// Global* forms. Window attributes are rewritten into explicit form (see
// conv_window.h); ceil_mode stays because it changes which cells a window sees.
#include <string>

#include "ir/op_registry.h"
#include "ir/ops/conv_window.h"
#include "kiln/error.h"

namespace kiln::ir {

namespace {

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

const Value& pool_input(const Node& n, bool allow_int) {
  const Value& x = input_checked(n, 0);
  bool ok = is_float(x.dtype) || (allow_int && (x.dtype == DataType::kInt8 || x.dtype == DataType::kUInt8));
  if (!ok) throw_unsupported(n.label() + ": input dtype " + dtype_name(x.dtype) + " is not supported");
  if (x.dims.size() < 3)
    throw_bad_input(n.label() + ": input '" + x.name + "' has shape " + shape_str(x.dims) +
                    "; expected [N, C, spatial...] with at least one spatial axis");
  return x;
}

Dims infer_window_pool(Node& n, const Value& x) {
  size_t r = x.dims.size() - 2;
  if (!n.has("kernel_shape")) throw_bad_input(n.label() + ": attribute 'kernel_shape' is required");
  Dims k = window::read_ints(n, "kernel_shape", r, 1, 1);
  int64_t ceil_mode = n.i("ceil_mode", 0);
  if (ceil_mode != 0 && ceil_mode != 1) throw_bad_input(n.label() + ": ceil_mode must be 0 or 1");
  Dims in(x.dims.begin() + 2, x.dims.end());
  window::Window w = window::resolve(n, in, k);
  Dims out{x.dims[0], x.dims[1]};
  for (size_t i = 0; i < r; ++i) {
    if (w.pads[i] >= (k[i] - 1) * w.dilations[i] + 1 || w.pads[i + r] >= (k[i] - 1) * w.dilations[i] + 1)
      throw_bad_input(n.label() + ": pads " + shape_str(w.pads) + " must be smaller than the window " +
                      shape_str(k) + " (dilated)");
    out.push_back(window::out_extent(n, in[i], k[i], w.strides[i], w.dilations[i], w.pads[i], w.pads[i + r],
                                     ceil_mode != 0));
  }
  return out;
}

void infer_maxpool(Node& n) {
  const Value& x = pool_input(n, true);
  int64_t so = n.i("storage_order", 0);
  if (so != 0 && so != 1) throw_bad_input(n.label() + ": storage_order must be 0 or 1");
  Dims out = infer_window_pool(n, x);
  set_output(n, 0, x.dtype, out);
  set_output(n, 1, DataType::kInt64, out);
}

void infer_avgpool(Node& n) {
  const Value& x = pool_input(n, false);
  int64_t cip = n.i("count_include_pad", 0);
  if (cip != 0 && cip != 1) throw_bad_input(n.label() + ": count_include_pad must be 0 or 1");
  set_output(n, 0, x.dtype, infer_window_pool(n, x));
}

void infer_lppool(Node& n) {
  const Value& x = pool_input(n, false);
  if (n.i("p", 2) < 1) throw_bad_input(n.label() + ": p must be >= 1");
  set_output(n, 0, x.dtype, infer_window_pool(n, x));
}

void infer_global(Node& n) {
  const Value& x = pool_input(n, n.op_type == "GlobalMaxPool");
  if (n.op_type == "GlobalLpPool" && n.i("p", 2) < 1) throw_bad_input(n.label() + ": p must be >= 1");
  Dims out(x.dims.size(), 1);
  out[0] = x.dims[0];
  out[1] = x.dims[1];
  set_output(n, 0, x.dtype, out);
}

}  // namespace

void register_pool_ops(OpRegistry& r) {
  r.add({"", "MaxPool", infer_maxpool});
  r.add({"", "AveragePool", infer_avgpool});
  r.add({"", "LpPool", infer_lppool});
  r.add({"", "GlobalAveragePool", infer_global});
  r.add({"", "GlobalMaxPool", infer_global});
  r.add({"", "GlobalLpPool", infer_global});
}

}  // namespace kiln::ir
