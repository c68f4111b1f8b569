// Helpers shared by the data-movement op families (shape, tensor, resize):
// reading build-time constant inputs that decide output shapes.
#pragma once

#include <string>
#include <vector>

#include "ir/op_registry.h"
#include "kiln/error.h"

namespace kiln::ir {

// True when optional input `k` is present and not an empty tensor (ONNX
// models often pass an empty initializer for "not given").
inline bool has_nonempty_input(const Node& n, size_t k) {
  const Value* v = n.in(k);
  if (!v || v->name.empty()) return false;
  if (!v->has_shape) return true;
  return numel_of(v->dims) != 0;
}

// The constant behind input `k`; kUnsupported when it is computed at run time,
// because kiln fixes every shape when it builds the engine.
inline const Tensor& constant_input(const Node& n, size_t k) {
  const Value* v = n.in(k);
  if (!v) throw_bad_input(n.label() + ": required input " + std::to_string(k) + " is missing");
  if (!v->is_constant())
    throw_unsupported(n.label() + ": input '" + v->name + "' must be a constant (kiln needs static shapes)");
  return *v->constant;
}

inline std::vector<int64_t> constant_ints(const Node& n, size_t k) {
  const Tensor& t = constant_input(n, k);
  if (t.dtype() == DataType::kFloat32 || t.dtype() == DataType::kFloat16)
    throw_bad_input(n.label() + ": input '" + n.in(k)->name + "' must hold integers, got " + dtype_name(t.dtype()));
  return t.to_int64();
}

inline std::vector<double> constant_doubles(const Node& n, size_t k) { return constant_input(n, k).to_double(); }

// A scalar-or-one-element constant integer (TopK k, OneHot depth).
inline int64_t constant_scalar_int(const Node& n, size_t k) {
  const Tensor& t = constant_input(n, k);
  if (t.numel() != 1)
    throw_bad_input(n.label() + ": input '" + n.in(k)->name + "' must hold exactly one value, got shape " +
                    shape_str(t.dims()));
  if (t.dtype() == DataType::kFloat32 || t.dtype() == DataType::kFloat16) {
    double d = t.to_double()[0];
    return static_cast<int64_t>(d);
  }
  return t.to_int64()[0];
}

// Axes given as a list, normalized to [0, rank) and checked for duplicates.
inline std::vector<int64_t> normalize_axes(const Node& n, const std::vector<int64_t>& axes, int64_t rank) {
  std::vector<int64_t> out;
  std::vector<bool> seen(size_t(rank > 0 ? rank : 0), false);
  for (int64_t a : axes) {
    if (a < -rank || a >= rank)
      throw_bad_input(n.label() + ": axis " + std::to_string(a) + " is out of range for rank " + std::to_string(rank));
    int64_t na = a < 0 ? a + rank : a;
    if (seen[size_t(na)]) throw_bad_input(n.label() + ": axis " + std::to_string(a) + " is given twice");
    seen[size_t(na)] = true;
    out.push_back(na);
  }
  return out;
}

inline bool is_index_dtype(DataType t) { return t == DataType::kInt32 || t == DataType::kInt64; }

}  // namespace kiln::ir
