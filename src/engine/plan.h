// The plan file: a built graph (nodes with their tactics and precisions,
// values with shapes, constants with data) that loads without the ONNX file.
//
// Layout, all integers little-endian:
//   "KILNPLAN"                 8 bytes
//   format version             u32 (kFormatVersion)
//   kiln version               u32 length + bytes ("0.1.0")
//   target device              u32 length + bytes ("cpu", "cuda:sm_90:<gpu>")
//   payload length             u64
//   checksum                   u64 FNV-1a 64 over every byte of the file except
//                              these 8 (header fields above, then the payload)
//   payload                    the graph, see plan.cpp (encode_graph)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::plan {

constexpr char kMagic[9] = "KILNPLAN";
constexpr size_t kMagicSize = 8;
constexpr uint32_t kFormatVersion = 3;  // 2: graph metadata; 3: value layouts

bool has_plan_magic(const uint8_t* data, size_t size);
uint64_t fnv1a64(const uint8_t* data, size_t size, uint64_t seed = 0xcbf29ce484222325ull);

struct Header {
  uint32_t format_version = 0;
  std::string kiln_version;
  std::string device;
  size_t payload_offset = 0;
  size_t payload_size = 0;
};

// Graph <-> payload. Every value the graph holds is written; nodes keep their
// order. The graph must be fully shape-inferred (kInternal otherwise).
//
// Profile plans (engine/profile_plan.h) keep their constants in one table
// shared by several graphs: given `shared`, encode_graph writes each constant
// as a reference (constant flag 2, u32 index that `shared` returns) instead
// of its data, and decode_graph resolves such references in `table` (the
// Tensor objects themselves are shared). Single plans never hold references,
// and a decode without a table refuses them.
using ConstantIndex = std::function<uint32_t(const ir::Tensor&)>;
using ConstantTable = std::vector<std::shared_ptr<const ir::Tensor>>;
std::vector<uint8_t> encode_graph(const ir::Graph& g, const ConstantIndex* shared = nullptr);
// Checks every count, length, index and enum; throws kBadInput naming `origin`.
std::unique_ptr<ir::Graph> decode_graph(const uint8_t* data, size_t size, const std::string& origin,
                                        size_t base_offset = 0, const ConstantTable* table = nullptr);

// One tensor as u8 dtype, u32 rank, i64 dims, u64 byte count, data (the form
// attribute tensors take); read_tensor checks it all before allocating.
class ByteWriter;
class ByteReader;
void write_tensor(ByteWriter& w, const ir::Tensor& t);
ir::Tensor read_tensor(ByteReader& r, const char* what);

// Header + checksum around a payload, and the inverse. read_header checks the
// magic, format version, lengths and checksum, in that order; the caller
// decides whether it can run `device`.
std::vector<uint8_t> wrap_payload(const std::vector<uint8_t>& payload, const std::string& device);
Header read_header(const uint8_t* data, size_t size, const std::string& origin);

inline std::vector<uint8_t> write_plan(const ir::Graph& g, const std::string& device) {
  return wrap_payload(encode_graph(g), device);
}

}  // namespace kiln::plan
