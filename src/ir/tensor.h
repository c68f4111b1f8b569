// A typed, dense, row-major buffer: constants (weights, folded values) and
// activations. Storage is shared so copies are cheap; 64-byte aligned for SIMD.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/types.h"

namespace kiln::ir {

using Dims = std::vector<int64_t>;

int64_t numel_of(const Dims& dims);  // product; throws kBadInput on overflow/negative

class Tensor {
 public:
  Tensor() = default;
  Tensor(DataType dtype, Dims dims);  // zero-filled
  // A view of nbytes() bytes at `offset` into `base` (e.g. an engine's
  // activation arena); shares ownership of `base`, copies nothing.
  static Tensor view(DataType dtype, Dims dims, std::shared_ptr<uint8_t> base, size_t offset);

  DataType dtype() const { return dtype_; }
  const Dims& dims() const { return dims_; }
  int rank() const { return static_cast<int>(dims_.size()); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }

  void* raw() { return data_.get(); }
  const void* raw() const { return data_.get(); }
  template <typename T> T* data() { return static_cast<T*>(raw()); }
  template <typename T> const T* data() const { return static_cast<const T*>(raw()); }

  // Same storage, new dims of equal numel (Reshape/Flatten/Squeeze need no copy).
  Tensor reshaped(Dims dims) const;
  Tensor clone() const;

  // Values as int64 / double whatever the dtype (for shape math, attributes).
  std::vector<int64_t> to_int64() const;
  std::vector<double> to_double() const;
  static Tensor from_int64(const std::vector<int64_t>& v, Dims dims);
  static Tensor from_float(const std::vector<float>& v, Dims dims);

  HostTensor to_host() const;
  static Tensor from_host(const HostTensor& h);

 private:
  DataType dtype_ = DataType::kFloat32;
  Dims dims_;
  int64_t numel_ = 0;
  std::shared_ptr<uint8_t> data_;
};

}  // namespace kiln::ir
