// libFuzzer target: arbitrary bytes as a plan file for kiln::Runtime.
// A kiln::Error is the expected answer to a corrupt plan; anything else is a bug.
//
// Almost every mutation breaks the plan's checksum, so the payload decoder
// would never be reached. When the header is readable, the target rewrites the
// payload length and checksum to match the mutated bytes (odd-sized inputs are
// left as they are, so the header checks stay covered too). Batch-profile
// containers ("KILNPROF", engine/profile_plan.h) lay their header out the
// same way, so the repair serves them too; corpus/conv_profile.plan seeds them.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/plan.h"
#include "kiln/kiln.h"

namespace {
struct Quiet : kiln::Logger {
  void log(kiln::Severity, const std::string&) override {}
};

uint32_t get_u32(const std::vector<uint8_t>& b, size_t at) {
  uint32_t v = 0;
  for (int k = 3; k >= 0; --k) v = (v << 8) | b[at + k];
  return v;
}
void put_u64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  for (int k = 0; k < 8; ++k) b[at + k] = static_cast<uint8_t>(v >> (8 * k));
}

// Makes length and checksum agree with the bytes; no-op if the header's two
// strings do not fit.
void repair(std::vector<uint8_t>& b) {
  size_t at = kiln::plan::kMagicSize + 4;
  for (int s = 0; s < 2; ++s) {
    if (b.size() < at + 4) return;
    size_t len = get_u32(b, at);
    if (len > b.size() - at - 4) return;
    at += 4 + len;
  }
  if (b.size() < at + 16) return;
  const size_t payload_at = at + 16;
  put_u64(b, at, b.size() - payload_at);
  uint64_t h = kiln::plan::fnv1a64(b.data(), at + 8);
  h = kiln::plan::fnv1a64(b.data() + payload_at, b.size() - payload_at, h);
  put_u64(b, at + 8, h);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Quiet quiet;
  kiln::set_logger(&quiet);
  std::vector<uint8_t> plan(data, data + size);
  if (size % 2 == 0) repair(plan);
  try {
    auto engine = kiln::Runtime().deserialize(plan, "<fuzz>");
    (void)engine->summary();
    (void)engine->create_context();
  } catch (const kiln::Error&) {
  }
  return 0;
}
