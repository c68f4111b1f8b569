// Sliding-window geometry shared by the Conv and pooling shape inference.
// Resolves strides/dilations/pads/auto_pad into explicit attributes so the
// kernels (and every later pass) only ever see one form.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/error.h"

namespace kiln::ir::window {

struct Window {
  Dims kernel, strides, dilations, pads;  // pads: begins then ends
};

inline void set_ints(Node& n, const std::string& name, const Dims& v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = v;
  n.attrs[name] = std::move(a);
}

inline std::string ints_str(const Dims& v) { return shape_str(v); }

// Reads an ints attribute of length `len` (default `dflt` each), each >= `min`.
inline Dims read_ints(const Node& n, const std::string& name, size_t len, int64_t dflt, int64_t min) {
  Dims v = n.ints(name, Dims(len, dflt));
  if (v.size() != len)
    throw_bad_input(n.label() + ": attribute '" + name + "' has " + std::to_string(v.size()) +
                    " values, expected " + std::to_string(len) + " (one per spatial axis" +
                    (name == "pads" ? ", begins then ends)" : ")"));
  for (int64_t x : v)
    if (x < min)
      throw_bad_input(n.label() + ": attribute '" + name + "' " + ints_str(v) + " must be >= " + std::to_string(min));
  return v;
}

// Fills the explicit window of `n` for input spatial dims `in`. `kernel` is the
// kernel extent per axis (already validated). Rewrites the node's attributes:
// kernel_shape, strides, dilations, explicit pads; auto_pad becomes NOTSET.
// SAME_* pads follow onnxruntime: total = (ceil(in/s) - 1) * s + dilated_k - in,
// clamped at 0; SAME_UPPER puts the odd cell at the end, SAME_LOWER at the start.
inline Window resolve(Node& n, const Dims& in, const Dims& kernel) {
  const size_t r = in.size();
  Window w;
  w.kernel = kernel;
  w.strides = read_ints(n, "strides", r, 1, 1);
  w.dilations = read_ints(n, "dilations", r, 1, 1);
  std::string ap = n.s("auto_pad", "NOTSET");
  if (ap == "NOTSET") {
    w.pads = read_ints(n, "pads", 2 * r, 0, 0);
  } else if (ap == "VALID") {
    w.pads.assign(2 * r, 0);
  } else if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
    w.pads.assign(2 * r, 0);
    for (size_t i = 0; i < r; ++i) {
      int64_t out = (in[i] + w.strides[i] - 1) / w.strides[i];
      int64_t dk = (kernel[i] - 1) * w.dilations[i] + 1;
      int64_t total = std::max<int64_t>(0, (out - 1) * w.strides[i] + dk - in[i]);
      int64_t small = total / 2, big = total - small;
      w.pads[i] = ap == "SAME_UPPER" ? small : big;
      w.pads[i + r] = ap == "SAME_UPPER" ? big : small;
    }
  } else {
    throw_bad_input(n.label() + ": auto_pad '" + ap + "' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID");
  }
  set_ints(n, "kernel_shape", w.kernel);
  set_ints(n, "strides", w.strides);
  set_ints(n, "dilations", w.dilations);
  set_ints(n, "pads", w.pads);
  n.attrs.erase("auto_pad");
  return w;
}

// Output extent of one axis. ceil_mode drops a last window that would start
// in the end padding (the PyTorch/onnxruntime rule the ONNX tests follow).
inline int64_t out_extent(const Node& n, int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe,
                          bool ceil_mode) {
  // Window attributes come from files: bound them so the arithmetic below cannot overflow.
  constexpr int64_t kLimit = int64_t(1) << 31;
  if (k < 1 || k > kLimit || s < 1 || s > kLimit || d < 1 || d > kLimit || std::abs(pb) > kLimit ||
      std::abs(pe) > kLimit || in > (int64_t(1) << 40))
    throw_bad_input(n.label() + ": window attributes out of range (kernel " + std::to_string(k) + ", stride " +
                    std::to_string(s) + ", dilation " + std::to_string(d) + ", pads " + std::to_string(pb) + "/" +
                    std::to_string(pe) + ")");
  int64_t span = in + pb + pe - ((k - 1) * d + 1);
  if (span < 0)
    throw_bad_input(n.label() + ": the window (kernel " + std::to_string(k) + ", dilation " + std::to_string(d) +
                    ") is larger than the padded input (" + std::to_string(in + pb + pe) +
                    "); check kernel_shape, dilations and pads");
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + pb) --out;
  return out;
}

}  // namespace kiln::ir::window
