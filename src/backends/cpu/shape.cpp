// CPU kernels for the reshaping ops. Reshape-like ops are plain copies (the
// engine may alias them away); Transpose and Expand are strided copies
// planned once when the kernel is created.
#include <algorithm>

#include "backends/cpu/kernel.h"
#include "backends/cpu/tensor_copy.h"
#include "kiln/error.h"

namespace kiln::cpu {

namespace {

const ir::Value& input_value(const ir::Node& n, size_t k) {
  const ir::Value* v = n.in(k);
  if (!v || !v->has_shape) throw_bad_input(n.label() + ": input " + std::to_string(k) + " is missing or has no shape");
  return *v;
}

// Shapes are fixed at build time; a tensor of another size means the caller
// bound the wrong buffer.
void check_same_bytes(const std::string& label, const ir::Tensor& a, const ir::Tensor& b) {
  if (a.nbytes() != b.nbytes())
    throw_bad_input(label + ": input of shape " + shape_str(a.dims()) + " does not match the built output " +
                    shape_str(b.dims()));
}

std::unique_ptr<Kernel> make_copy(const ir::Node& n) {
  return make_kernel("memcpy", [label = n.label()](const std::vector<const ir::Tensor*>& in,
                                                   const std::vector<ir::Tensor*>& out) {
    check_same_bytes(label, *in[0], *out[0]);
    parallel_memcpy(out[0]->raw(), in[0]->raw(), out[0]->nbytes());
  });
}

// Inference accepts training_mode=true only with a zero ratio (checked at build), where it is a copy too.
std::unique_ptr<Kernel> make_dropout(const ir::Node& n) {
  return make_kernel("memcpy", [label = n.label()](const std::vector<const ir::Tensor*>& in,
                                                   const std::vector<ir::Tensor*>& out) {
    const bool zero_ratio = in.size() > 1 && in[1] && in[1]->numel() > 0 && in[1]->to_double()[0] == 0.0;
    if (in.size() > 2 && in[2] && in[2]->numel() > 0 && in[2]->to_int64()[0] != 0 && !zero_ratio)
      throw_unsupported(label + ": training_mode=true is not supported (kiln runs inference only)");
    check_same_bytes(label, *in[0], *out[0]);
    parallel_memcpy(out[0]->raw(), in[0]->raw(), out[0]->nbytes());
    if (out.size() > 1 && out[1]) std::fill(out[1]->data<uint8_t>(), out[1]->data<uint8_t>() + out[1]->numel(), 1);
  });
}

std::unique_ptr<Kernel> make_transpose(const ir::Node& n) {
  const ir::Value& x = input_value(n, 0);
  const size_t r = x.dims.size();
  std::vector<int64_t> perm = n.ints("perm");
  if (!n.has("perm"))
    for (size_t i = 0; i < r; ++i) perm.push_back(int64_t(r - 1 - i));
  if (perm.size() != r) throw_bad_input(n.label() + ": perm does not match the input rank");
  std::vector<int64_t> in_str = contiguous_strides(x.dims), sstr(r);
  ir::Dims out_dims(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t p = perm[i] < 0 ? perm[i] + int64_t(r) : perm[i];
    if (p < 0 || p >= int64_t(r)) throw_bad_input(n.label() + ": perm entry out of range");
    sstr[i] = in_str[size_t(p)];
    out_dims[i] = x.dims[size_t(p)];
  }
  return std::make_unique<StridedCopyKernel>("transpose_", StridedCopy(out_dims, sstr, 0, dtype_size(x.dtype)));
}

std::unique_ptr<Kernel> make_expand(const ir::Node& n) {
  const ir::Value& x = input_value(n, 0);
  const ir::Dims& od = n.outputs[0]->dims;
  const size_t ro = od.size(), ri = x.dims.size();
  if (ri > ro) throw_bad_input(n.label() + ": input rank exceeds the output rank");
  std::vector<int64_t> in_str = contiguous_strides(x.dims), sstr(ro, 0);
  for (size_t i = ro - ri; i < ro; ++i) {
    const size_t k = i - (ro - ri);
    sstr[i] = x.dims[k] == 1 ? 0 : in_str[k];
  }
  return std::make_unique<StridedCopyKernel>("expand_", StridedCopy(od, sstr, 0, dtype_size(x.dtype)));
}

std::unique_ptr<Kernel> make_shape(const ir::Node& n) {
  const int64_t r = int64_t(input_value(n, 0).dims.size());
  auto clampi = [&](int64_t v) { return std::min(std::max(v < 0 ? v + r : v, int64_t(0)), r); };
  const int64_t start = clampi(n.i("start", 0)), end = clampi(n.i("end", r));
  return make_kernel("shape", [start, end](const std::vector<const ir::Tensor*>& in,
                                           const std::vector<ir::Tensor*>& out) {
    int64_t* o = out[0]->data<int64_t>();
    for (int64_t i = start; i < end; ++i) o[i - start] = in[0]->dims()[size_t(i)];
  });
}

std::unique_ptr<Kernel> make_size(const ir::Node&) {
  return make_kernel("size", [](const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) {
    out[0]->data<int64_t>()[0] = in[0]->numel();
  });
}

}  // namespace

void register_shape_kernels(KernelRegistry& r) {
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}) r.add(op, make_copy);
  r.add("Dropout", make_dropout);
  r.add("Transpose", make_transpose);
  r.add("Expand", make_expand);
  r.add("Shape", make_shape);
  r.add("Size", make_size);
}

}  // namespace kiln::cpu
