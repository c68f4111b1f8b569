// kiln public API: element types and host tensors.
// HostTensor is a dense, row-major (C order) buffer on the host; it is what
// ExecutionContext::run takes and returns and what .npy files hold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

enum class DataType : uint8_t {
  kFloat32 = 0,
  kFloat16 = 1,
  kInt8 = 2,
  kUInt8 = 3,
  kInt32 = 4,
  kInt64 = 5,
  kBool = 6,
};

size_t dtype_size(DataType t);
const char* dtype_name(DataType t);  // "fp32", "fp16", "int8", ...

struct HostTensor {
  DataType dtype = DataType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // numel * dtype_size bytes

  int64_t numel() const;
  template <typename T> T* as() { return reinterpret_cast<T*>(data.data()); }
  template <typename T> const T* as() const { return reinterpret_cast<const T*>(data.data()); }
  static HostTensor zeros(DataType dtype, std::vector<int64_t> shape);
};

std::string shape_str(const std::vector<int64_t>& shape);  // "[1,3,224,224]"

// IEEE half <-> float, round-to-nearest-even.
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);

}  // namespace kiln
