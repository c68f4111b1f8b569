// TensorProto -> ir::Tensor: raw_data, the typed repeated fields and external
// data files. Every size is validated against the bytes actually present
// before allocating, so a tiny hostile file cannot request a huge buffer.
#include "onnx/tensor_proto.h"

#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

#include "kiln/error.h"

namespace kiln::onnx_import {

namespace {

using TP = onnx::TensorProto;

std::string supported_list() { return "float32, float16, int8, uint8, int32, int64, bool"; }

// The checked product of dims, naming the tensor on failure.
int64_t checked_numel(const TP& tp, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : tp.dims()) {
    if (d < 0) throw_bad_input(what + " has a negative dimension " + std::to_string(d));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw_bad_input(what + " has a shape whose element count overflows");
    n *= d;
  }
  return n;
}

// Lexically checks that `location` names a file inside the model's directory.
void check_location(const std::string& location, const std::string& what) {
  if (location.empty()) throw_bad_input(what + " has external data without a 'location'");
  if (location[0] == '/' || location[0] == '\\' || (location.size() > 1 && location[1] == ':'))
    throw_bad_input(what + ": external data location '" + location +
                    "' is an absolute path; it must be relative to the model's directory");
  int depth = 0;
  size_t start = 0;
  while (start <= location.size()) {
    size_t end = location.find_first_of("/\\", start);
    if (end == std::string::npos) end = location.size();
    std::string part = location.substr(start, end - start);
    if (part == "..") {
      if (--depth < 0)
        throw_bad_input(what + ": external data location '" + location +
                        "' points outside the model's directory");
    } else if (!part.empty() && part != ".") {
      ++depth;
    }
    start = end + 1;
  }
}

int64_t parse_int_field(const std::string& key, const std::string& v, const std::string& what) {
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 18)
    throw_bad_input(what + ": external data '" + key + "' is '" + v + "', expected a non-negative integer");
  return std::stoll(v);
}

ir::Tensor read_external(const TP& tp, DataType dt, const ir::Dims& dims, int64_t nbytes,
                         const std::string& base_dir, const std::string& what) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const auto& kv : tp.external_data()) {
    if (kv.key() == "location") location = kv.value();
    else if (kv.key() == "offset") offset = parse_int_field("offset", kv.value(), what);
    else if (kv.key() == "length") length = parse_int_field("length", kv.value(), what);
  }
  check_location(location, what);
  std::string path = base_dir.empty() ? location : base_dir + "/" + location;
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw_bad_input(what + ": cannot open external data file '" + path + "'");
  int64_t fsize = int64_t(f.tellg());
  if (length < 0) length = nbytes;
  if (length != nbytes)
    throw_bad_input(what + ": external data length " + std::to_string(length) + " does not match its shape " +
                    shape_str(dims) + " (" + std::to_string(nbytes) + " bytes)");
  if (fsize < 0 || offset > fsize || length > fsize - offset)
    throw_bad_input(what + ": external data file '" + path + "' has " + std::to_string(fsize) +
                    " bytes, too short for offset " + std::to_string(offset) + " + length " + std::to_string(length));
  ir::Tensor t(dt, dims);
  f.seekg(offset);
  if (nbytes && !f.read(static_cast<char*>(t.raw()), nbytes))
    throw_bad_input(what + ": failed reading " + std::to_string(nbytes) + " bytes from '" + path + "'");
  return t;
}

template <typename Src, typename Dst> void narrow_copy(const Src& src, Dst* dst) {
  for (int i = 0; i < src.size(); ++i) dst[i] = static_cast<Dst>(src.Get(i));
}

}  // namespace

bool dtype_from_onnx(int onnx_type, DataType* out) {
  switch (onnx_type) {
    case TP::FLOAT: *out = DataType::kFloat32; return true;
    case TP::FLOAT16: *out = DataType::kFloat16; return true;
    case TP::INT8: *out = DataType::kInt8; return true;
    case TP::UINT8: *out = DataType::kUInt8; return true;
    case TP::INT32: *out = DataType::kInt32; return true;
    case TP::INT64: *out = DataType::kInt64; return true;
    case TP::BOOL: *out = DataType::kBool; return true;
    default: return false;
  }
}

int onnx_from_dtype(DataType t) {
  switch (t) {
    case DataType::kFloat32: return TP::FLOAT;
    case DataType::kFloat16: return TP::FLOAT16;
    case DataType::kInt8: return TP::INT8;
    case DataType::kUInt8: return TP::UINT8;
    case DataType::kInt32: return TP::INT32;
    case DataType::kInt64: return TP::INT64;
    case DataType::kBool: return TP::BOOL;
  }
  return TP::UNDEFINED;
}

std::string onnx_type_name(int onnx_type) {
  // Numbering from onnx.proto; the tail postdates libonnx 1.12's enum.
  static const char* names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32",
                                "INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64",
                                "COMPLEX64", "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ",
                                "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0"};
  if (onnx_type >= 0 && onnx_type < int(sizeof(names) / sizeof(names[0]))) return names[onnx_type];
  return "type " + std::to_string(onnx_type);
}

ir::Tensor tensor_from_proto(const TP& tp, const std::string& base_dir, const std::string& what) {
  if (tp.has_segment()) throw_unsupported(what + " is a segmented tensor, which kiln does not support");
  DataType dt;
  if (!dtype_from_onnx(tp.data_type(), &dt))
    throw_unsupported(what + " has data type " + onnx_type_name(tp.data_type()) +
                      ", which kiln does not support (supported: " + supported_list() + ")");
  const int64_t n = checked_numel(tp, what);
  const int64_t esize = int64_t(dtype_size(dt));
  if (n > std::numeric_limits<int64_t>::max() / esize) throw_bad_input(what + " is too large");
  const int64_t nbytes = n * esize;
  ir::Dims dims(tp.dims().begin(), tp.dims().end());

  if (tp.data_location() == TP::EXTERNAL) return read_external(tp, dt, dims, nbytes, base_dir, what);

  if (tp.has_raw_data() && (!tp.raw_data().empty() || n == 0)) {
    if (int64_t(tp.raw_data().size()) != nbytes)
      throw_bad_input(what + " has " + std::to_string(tp.raw_data().size()) + " bytes of raw_data, but its shape " +
                      shape_str(dims) + " needs " + std::to_string(nbytes));
    ir::Tensor t(dt, dims);
    if (nbytes) std::memcpy(t.raw(), tp.raw_data().data(), size_t(nbytes));
    return t;
  }

  // Typed fields: each ONNX dtype stores its values in one specific field.
  int64_t have = 0;
  switch (dt) {
    case DataType::kFloat32: have = tp.float_data_size(); break;
    case DataType::kInt64: have = tp.int64_data_size(); break;
    default: have = tp.int32_data_size(); break;  // int32, int8, uint8, bool, float16 bits
  }
  if (have != n)
    throw_bad_input(what + " holds " + std::to_string(have) + " values, but its shape " + shape_str(dims) +
                    " needs " + std::to_string(n));
  ir::Tensor t(dt, dims);
  switch (dt) {
    case DataType::kFloat32: narrow_copy(tp.float_data(), t.data<float>()); break;
    case DataType::kInt64: narrow_copy(tp.int64_data(), t.data<int64_t>()); break;
    case DataType::kInt32: narrow_copy(tp.int32_data(), t.data<int32_t>()); break;
    case DataType::kInt8: narrow_copy(tp.int32_data(), t.data<int8_t>()); break;
    case DataType::kUInt8: narrow_copy(tp.int32_data(), t.data<uint8_t>()); break;
    case DataType::kFloat16: narrow_copy(tp.int32_data(), t.data<uint16_t>()); break;
    case DataType::kBool:
      for (int i = 0; i < tp.int32_data_size(); ++i) t.data<uint8_t>()[i] = tp.int32_data(i) != 0;
      break;
  }
  return t;
}

}  // namespace kiln::onnx_import
