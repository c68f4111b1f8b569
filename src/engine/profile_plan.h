// The profile plan: one file holding a specialization of the network per
// batch of a BatchProfile (kiln.h), with every constant stored once.
//
// Layout, integers little-endian; the header is laid out as a single plan's
// (plan.h) under its own magic, so tools that repair or check plan headers
// treat both alike:
//   "KILNPROF"                 8 bytes
//   container format version   u32 (kProfileFormatVersion)
//   kiln version               u32 length + bytes
//   target device              u32 length + bytes (every specialization's)
//   payload length             u64
//   checksum                   u64 FNV-1a 64 over every byte except these 8
//   payload:
//     graph format version     u32 (plan::kFormatVersion the graphs are encoded in)
//     u32 min, opt, max batch
//     u32 constant count, per constant: a tensor (plan::write_tensor)
//     u32 specialization count, per one: u32 batch, u64 length, graph
//       (plan::encode_graph with its constants as references into the table)
// Specializations are in ascending batch order, the first at min, the last
// at max, opt among them. Single plans keep their own format and magic.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/plan.h"
#include "ir/graph.h"
#include "kiln/kiln.h"

namespace kiln::plan {

constexpr char kProfileMagic[9] = "KILNPROF";
constexpr uint32_t kProfileFormatVersion = 1;

bool has_profile_magic(const uint8_t* data, size_t size);

// Throws kUsage unless 1 <= min <= opt <= max.
void check_profile(const BatchProfile& p);

struct Specialization {
  int batch = 0;
  std::unique_ptr<ir::Graph> graph;
};

struct ProfilePlan {
  std::string device, kiln_version;
  BatchProfile profile;
  ConstantTable constants;            // shared by the graphs' constant values
  std::vector<Specialization> specs;  // ascending batch
};

// Constants equal in dtype, dims and bytes are written once (found by a
// content hash, confirmed by comparing the bytes).
std::vector<uint8_t> write_profile_plan(const BatchProfile& profile, const std::vector<Specialization>& specs,
                                        const std::string& device);
// Checks header, checksum, versions, the profile, the batch order and every
// graph; throws kBadInput naming `origin` and what is wrong.
ProfilePlan read_profile_plan(const uint8_t* data, size_t size, const std::string& origin);

}  // namespace kiln::plan
