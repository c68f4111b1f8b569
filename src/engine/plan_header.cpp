// Plan header: magic, versions, device, payload length and checksum.
#include <cstring>

#include "engine/plan.h"
#include "engine/plan_bytes.h"
#include "kiln/error.h"
#include "kiln/kiln.h"

namespace kiln::plan {

namespace {
// Header strings are short names; a longer one means the file is damaged.
constexpr uint32_t kMaxHeaderString = 256;
}  // namespace

bool has_plan_magic(const uint8_t* data, size_t size) {
  return size >= kMagicSize && std::memcmp(data, kMagic, kMagicSize) == 0;
}

uint64_t fnv1a64(const uint8_t* data, size_t size, uint64_t h) {
  for (size_t k = 0; k < size; ++k) {
    h ^= data[k];
    h *= 0x100000001b3ull;
  }
  return h;
}

std::vector<uint8_t> wrap_payload(const std::vector<uint8_t>& payload, const std::string& device) {
  ByteWriter w;
  w.bytes(kMagic, kMagicSize);
  w.u32(kFormatVersion);
  w.str(version());
  w.str(device);
  w.u64(payload.size());
  std::vector<uint8_t>& out = w.buffer();
  const size_t checksum_at = out.size();
  uint64_t h = fnv1a64(out.data(), checksum_at);
  h = fnv1a64(payload.data(), payload.size(), h);
  w.u64(h);
  out.reserve(out.size() + payload.size());
  out.insert(out.end(), payload.begin(), payload.end());
  return std::move(out);
}

Header read_header(const uint8_t* data, size_t size, const std::string& origin) {
  if (!has_plan_magic(data, size))
    throw_bad_input(origin + " is not a kiln plan (it does not start with \"KILNPLAN\")");
  ByteReader r(data, size, origin);
  r.bytes(kMagicSize, "magic");
  Header h;
  h.format_version = r.u32();
  if (h.format_version != kFormatVersion)
    throw_bad_input("plan " + origin + " was written by format version " + std::to_string(h.format_version) +
                    ", this kiln reads version " + std::to_string(kFormatVersion) +
                    ": rebuild it with `kiln build`");
  auto short_str = [&](const char* what) {
    uint32_t len = r.u32();
    if (len > kMaxHeaderString) r.fail(std::string(what) + " of " + std::to_string(len) + " bytes is too long");
    const uint8_t* p = r.bytes(len, what);
    return std::string(reinterpret_cast<const char*>(p), len);
  };
  h.kiln_version = short_str("kiln version");
  h.device = short_str("device name");
  uint64_t payload_size = r.u64();
  const size_t checksum_at = r.offset();
  uint64_t checksum = r.u64();
  h.payload_offset = r.offset();
  if (payload_size != r.remaining())
    throw_bad_input("plan " + origin + " is " + (payload_size > r.remaining() ? "truncated" : "corrupt") +
                    " (its header promises " + std::to_string(payload_size) + " payload bytes, the file holds " +
                    std::to_string(r.remaining()) + "): rebuild it with `kiln build`");
  h.payload_size = size_t(payload_size);
  uint64_t got = fnv1a64(data, checksum_at);
  got = fnv1a64(data + h.payload_offset, h.payload_size, got);
  if (got != checksum) throw_bad_input("plan " + origin + " is corrupt (checksum mismatch): rebuild it");
  return h;
}

}  // namespace kiln::plan
