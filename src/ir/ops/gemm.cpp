// Shape inference for Gemm and MatMul (ONNX opset 18 forms).
//
// kiln-internal extension: a fusion pass may attach an activation to Gemm
// with the same `activation` / `activation_params` attributes as Conv (the
// list is in conv.cpp). The kernel applies Y = act(alpha * A * B + beta * C)
// in the pass that adds C.
#include <string>

#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::ir {

// Validates `activation` / `activation_params`; defined next to Conv's
// inference in conv.cpp, which owns the list of fusable activations.
void check_fused_activation(const Node& n);

namespace {

void same_dtype(const Node& n, const Value& a, const Value& b) {
  if (a.dtype != b.dtype)
    throw_bad_input(n.label() + ": inputs '" + a.name + "' (" + dtype_name(a.dtype) + ") and '" + b.name + "' (" +
                    dtype_name(b.dtype) + ") must have the same dtype");
}

void infer_gemm(Node& n) {
  const Value& a = input_checked(n, 0);
  const Value& b = input_checked(n, 1);
  same_dtype(n, a, b);
  if (a.dims.size() != 2 || b.dims.size() != 2)
    throw_bad_input(n.label() + ": A " + shape_str(a.dims) + " and B " + shape_str(b.dims) + " must be 2-D");
  bool ta = n.i("transA", 0) != 0, tb = n.i("transB", 0) != 0;
  int64_t m = ta ? a.dims[1] : a.dims[0], k = ta ? a.dims[0] : a.dims[1];
  int64_t kb = tb ? b.dims[1] : b.dims[0], nn = tb ? b.dims[0] : b.dims[1];
  if (k != kb)
    throw_bad_input(n.label() + ": inner dimensions differ: A " + shape_str(a.dims) + (ta ? " (transposed)" : "") +
                    " vs B " + shape_str(b.dims) + (tb ? " (transposed)" : ""));
  if (const Value* c = n.in(2)) {
    same_dtype(n, a, *c);
    // C broadcasts one way onto [M, N].
    if (c->dims.size() > 2)
      throw_bad_input(n.label() + ": C " + shape_str(c->dims) + " must have rank <= 2");
    Dims full{m, nn};
    for (size_t i = 0; i < c->dims.size(); ++i) {
      int64_t cd = c->dims[c->dims.size() - 1 - i], fd = full[1 - i];
      if (cd != 1 && cd != fd)
        throw_bad_input(n.label() + ": C " + shape_str(c->dims) + " does not broadcast to " + shape_str(full));
    }
  }
  check_fused_activation(n);
  set_output(n, 0, a.dtype, {m, nn});
}

// numpy matmul: 1-D operands get a unit axis that is dropped from the result;
// leading (batch) axes broadcast.
void infer_matmul(Node& n) {
  const Value& a = input_checked(n, 0);
  const Value& b = input_checked(n, 1);
  const bool integer = n.op_type == "MatMulInteger";
  if (!integer) same_dtype(n, a, b);
  auto int8 = [](DataType t) { return t == DataType::kUInt8 || t == DataType::kInt8; };
  if (integer && (!int8(a.dtype) || !int8(b.dtype)))
    throw_unsupported(n.label() + ": input dtypes " + dtype_name(a.dtype) + " / " + dtype_name(b.dtype) +
                      " are not supported (uint8 / int8 only)");
  if (a.dims.empty() || b.dims.empty())
    throw_bad_input(n.label() + ": MatMul operands must have rank >= 1, got " + shape_str(a.dims) + " and " +
                    shape_str(b.dims));
  Dims da = a.dims, db = b.dims;
  bool va = da.size() == 1, vb = db.size() == 1;
  if (va) da.insert(da.begin(), 1);
  if (vb) db.push_back(1);
  int64_t k = da.back(), kb = db[db.size() - 2];
  if (k != kb)
    throw_bad_input(n.label() + ": inner dimensions differ: " + shape_str(a.dims) + " x " + shape_str(b.dims));
  Dims ba(da.begin(), da.end() - 2), bb(db.begin(), db.end() - 2);
  Dims out = broadcast_dims(n, ba, bb);
  if (!va) out.push_back(da[da.size() - 2]);
  if (!vb) out.push_back(db.back());
  if (integer) {
    // Zero points: per tensor, A per row (M values), B per column (N values).
    const Value* az = n.in(2);
    const Value* bz = n.in(3);
    int64_t m = da[da.size() - 2], nn = db.back();
    if (az && ((numel_of(az->dims) != 1 && numel_of(az->dims) != m) || az->dtype != a.dtype))
      throw_unsupported(n.label() + ": a_zero_point must be one value or one per row of A, of A's dtype");
    if (bz && ((numel_of(bz->dims) != 1 && numel_of(bz->dims) != nn) || bz->dtype != b.dtype))
      throw_unsupported(n.label() + ": b_zero_point must be one value or one per column of B, of B's dtype");
  }
  set_output(n, 0, integer ? DataType::kInt32 : a.dtype, out);
}

}  // namespace

void register_gemm_ops(OpRegistry& r) {
  r.add({"", "Gemm", infer_gemm});
  r.add({"", "MatMul", infer_matmul});
  r.add({"", "MatMulInteger", infer_matmul});
}

}  // namespace kiln::ir
