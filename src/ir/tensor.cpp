#include "ir/tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>

#include "kiln/error.h"

namespace kiln::ir {

namespace {
// Guard against hostile shapes: no single tensor above this many bytes.
constexpr int64_t kMaxTensorBytes = int64_t(16) << 30;

std::shared_ptr<uint8_t> alloc_bytes(size_t n) {
  size_t rounded = (n + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw_bad_input("out of memory allocating " + std::to_string(n) + " bytes");
  std::memset(p, 0, rounded);
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}

template <typename F> void for_each_as(DataType dt, const void* raw, int64_t n, F f) {
  switch (dt) {
    case DataType::kFloat32: for (int64_t i = 0; i < n; ++i) f(i, static_cast<const float*>(raw)[i]); break;
    case DataType::kFloat16: for (int64_t i = 0; i < n; ++i) f(i, half_to_float(static_cast<const uint16_t*>(raw)[i])); break;
    case DataType::kInt8: for (int64_t i = 0; i < n; ++i) f(i, static_cast<const int8_t*>(raw)[i]); break;
    case DataType::kUInt8: for (int64_t i = 0; i < n; ++i) f(i, static_cast<const uint8_t*>(raw)[i]); break;
    case DataType::kInt32: for (int64_t i = 0; i < n; ++i) f(i, static_cast<const int32_t*>(raw)[i]); break;
    case DataType::kInt64: for (int64_t i = 0; i < n; ++i) f(i, static_cast<const int64_t*>(raw)[i]); break;
    case DataType::kBool: for (int64_t i = 0; i < n; ++i) f(i, static_cast<const uint8_t*>(raw)[i] ? 1 : 0); break;
  }
}
}  // namespace

int64_t numel_of(const Dims& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) throw_bad_input("negative dimension " + std::to_string(d) + " in shape " + shape_str(dims));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw_bad_input("shape " + shape_str(dims) + " has too many elements");
    n *= d;
  }
  return n;
}

Tensor::Tensor(DataType dtype, Dims dims) : dtype_(dtype), dims_(std::move(dims)) {
  numel_ = numel_of(dims_);
  if (numel_ > kMaxTensorBytes / int64_t(dtype_size(dtype_)))
    throw_bad_input("tensor of shape " + shape_str(dims_) + " exceeds kiln's 16 GiB tensor limit");
  data_ = alloc_bytes(nbytes());
}

Tensor Tensor::view(DataType dtype, Dims dims, std::shared_ptr<uint8_t> base, size_t offset) {
  Tensor t;
  t.dtype_ = dtype;
  t.dims_ = std::move(dims);
  t.numel_ = numel_of(t.dims_);
  if (!base) throw_internal("Tensor::view: no base buffer");
  uint8_t* p = base.get() + offset;
  t.data_ = std::shared_ptr<uint8_t>(std::move(base), p);  // aliasing: owns base, points at p
  return t;
}

Tensor Tensor::reshaped(Dims dims) const {
  if (numel_of(dims) != numel_)
    throw_bad_input("cannot reshape " + shape_str(dims_) + " to " + shape_str(dims));
  Tensor t = *this;
  t.dims_ = std::move(dims);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t(dtype_, dims_);
  if (nbytes()) std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

std::vector<int64_t> Tensor::to_int64() const {
  std::vector<int64_t> v(static_cast<size_t>(numel_));
  for_each_as(dtype_, raw(), numel_, [&](int64_t i, auto x) { v[size_t(i)] = static_cast<int64_t>(x); });
  return v;
}

std::vector<double> Tensor::to_double() const {
  std::vector<double> v(static_cast<size_t>(numel_));
  for_each_as(dtype_, raw(), numel_, [&](int64_t i, auto x) { v[size_t(i)] = static_cast<double>(x); });
  return v;
}

Tensor Tensor::from_int64(const std::vector<int64_t>& v, Dims dims) {
  Tensor t(DataType::kInt64, std::move(dims));
  if (size_t(t.numel()) != v.size()) throw_internal("from_int64: size mismatch");
  if (!v.empty()) std::memcpy(t.raw(), v.data(), v.size() * 8);
  return t;
}

Tensor Tensor::from_float(const std::vector<float>& v, Dims dims) {
  Tensor t(DataType::kFloat32, std::move(dims));
  if (size_t(t.numel()) != v.size()) throw_internal("from_float: size mismatch");
  if (!v.empty()) std::memcpy(t.raw(), v.data(), v.size() * 4);
  return t;
}

HostTensor Tensor::to_host() const {
  HostTensor h;
  h.dtype = dtype_;
  h.shape = dims_;
  h.data.assign(static_cast<const uint8_t*>(raw()), static_cast<const uint8_t*>(raw()) + nbytes());
  return h;
}

Tensor Tensor::from_host(const HostTensor& h) {
  Tensor t(h.dtype, h.shape);
  if (h.data.size() != t.nbytes())
    throw_bad_input("host tensor of shape " + shape_str(h.shape) + " holds " + std::to_string(h.data.size()) +
                    " bytes, expected " + std::to_string(t.nbytes()));
  if (t.nbytes()) std::memcpy(t.raw(), h.data.data(), t.nbytes());
  return t;
}

}  // namespace kiln::ir
