// Profile plan container: write with constants deduplicated, read with every
// field checked (layout in profile_plan.h).
#include "engine/profile_plan.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <unordered_map>

#include "engine/plan_bytes.h"
#include "kiln/error.h"

namespace kiln {

std::vector<int> profile_batches(const BatchProfile& p) {
  plan::check_profile(p);
  std::vector<int> b = {p.min, p.opt, p.max};
  // Powers of two between min and max: a batch b runs on at most 2b rows.
  for (int64_t q = 1; q < p.max; q *= 2)
    if (q > p.min) b.push_back(int(q));
  std::sort(b.begin(), b.end());
  b.erase(std::unique(b.begin(), b.end()), b.end());
  return b;
}

namespace plan {

namespace {

constexpr uint32_t kMaxHeaderString = 256;
// More specializations than any valid profile has (about log2(max) + 3).
constexpr uint32_t kMaxSpecializations = 64;

// A 64-bit hash over 8-byte words, fast enough for hundreds of MB of weights;
// equal hashes are confirmed by comparing bytes, so quality only affects speed.
uint64_t content_hash(const ir::Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.raw());
  const size_t n = t.nbytes();
  uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t(t.dtype()) << 56) ^ n;
  size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    uint64_t w;
    std::memcpy(&w, p + k, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; k < n; ++k) h = (h ^ p[k]) * 0x100000001b3ull;
  return h;
}

bool same_tensor(const ir::Tensor& a, const ir::Tensor& b) {
  return a.dtype() == b.dtype() && a.dims() == b.dims() &&
         (a.raw() == b.raw() || a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

// Collects each distinct constant once and hands out its table index.
class Dedupe {
 public:
  uint32_t index(const ir::Tensor& t) {
    std::vector<uint32_t>& bucket = by_hash_[content_hash(t)];
    for (uint32_t i : bucket)
      if (same_tensor(*table_[i], t)) return i;
    if (table_.size() >= 0xffffffffu) throw_internal("profile plan writer: too many constants");
    table_.push_back(&t);
    bucket.push_back(uint32_t(table_.size() - 1));
    return bucket.back();
  }
  const std::vector<const ir::Tensor*>& table() const { return table_; }

 private:
  std::vector<const ir::Tensor*> table_;
  std::unordered_map<uint64_t, std::vector<uint32_t>> by_hash_;
};

}  // namespace

bool has_profile_magic(const uint8_t* data, size_t size) {
  return size >= kMagicSize && std::memcmp(data, kProfileMagic, kMagicSize) == 0;
}

void check_profile(const BatchProfile& p) {
  if (p.min < 1 || p.min > p.opt || p.opt > p.max)
    throw_usage("batch profile min " + std::to_string(p.min) + ", opt " + std::to_string(p.opt) + ", max " +
                std::to_string(p.max) + " is invalid: it needs 1 <= min <= opt <= max");
}

std::vector<uint8_t> write_profile_plan(const BatchProfile& profile, const std::vector<Specialization>& specs,
                                        const std::string& device) {
  check_profile(profile);
  if (specs.empty() || specs.front().batch != profile.min || specs.back().batch != profile.max)
    throw_internal("profile plan writer: specializations must run from the min to the max batch");
  // The graphs first, so the table holds exactly the constants they use.
  Dedupe dedupe;
  const ConstantIndex index = [&](const ir::Tensor& t) { return dedupe.index(t); };
  std::vector<std::vector<uint8_t>> graphs;
  for (size_t k = 0; k < specs.size(); ++k) {
    if (k && specs[k].batch <= specs[k - 1].batch)
      throw_internal("profile plan writer: specializations must be in ascending batch order");
    graphs.push_back(encode_graph(*specs[k].graph, &index));
  }

  ByteWriter p;
  p.u32(kFormatVersion);
  p.u32(uint32_t(profile.min));
  p.u32(uint32_t(profile.opt));
  p.u32(uint32_t(profile.max));
  p.count(dedupe.table().size());
  for (const ir::Tensor* t : dedupe.table()) write_tensor(p, *t);
  p.count(specs.size());
  for (size_t k = 0; k < specs.size(); ++k) {
    p.u32(uint32_t(specs[k].batch));
    p.u64(graphs[k].size());
    p.bytes(graphs[k].data(), graphs[k].size());
  }
  const std::vector<uint8_t>& payload = p.buffer();

  ByteWriter w;
  w.bytes(kProfileMagic, kMagicSize);
  w.u32(kProfileFormatVersion);
  w.str(version());
  w.str(device);
  w.u64(payload.size());
  std::vector<uint8_t>& out = w.buffer();
  uint64_t h = fnv1a64(out.data(), out.size());
  h = fnv1a64(payload.data(), payload.size(), h);
  w.u64(h);
  out.insert(out.end(), payload.begin(), payload.end());
  return std::move(out);
}

ProfilePlan read_profile_plan(const uint8_t* data, size_t size, const std::string& origin) {
  if (!has_profile_magic(data, size))
    throw_bad_input(origin + " is not a kiln profile plan (it does not start with \"KILNPROF\")");
  ByteReader r(data, size, origin);
  r.bytes(kMagicSize, "magic");
  const uint32_t container_version = r.u32();
  if (container_version != kProfileFormatVersion)
    throw_bad_input("profile plan " + origin + " was written by container format version " +
                    std::to_string(container_version) + ", this kiln reads version " +
                    std::to_string(kProfileFormatVersion) + ": rebuild it with `kiln build`");
  auto short_str = [&](const char* what) {
    uint32_t len = r.u32();
    if (len > kMaxHeaderString) r.fail(std::string(what) + " of " + std::to_string(len) + " bytes is too long");
    const uint8_t* p = r.bytes(len, what);
    return std::string(reinterpret_cast<const char*>(p), len);
  };
  ProfilePlan out;
  out.kiln_version = short_str("kiln version");
  out.device = short_str("device name");
  const uint64_t payload_size = r.u64();
  const size_t checksum_at = r.offset();
  const uint64_t checksum = r.u64();
  const size_t payload_at = r.offset();
  if (payload_size != r.remaining())
    throw_bad_input("profile plan " + origin + " is " + (payload_size > r.remaining() ? "truncated" : "corrupt") +
                    " (its header promises " + std::to_string(payload_size) + " payload bytes, the file holds " +
                    std::to_string(r.remaining()) + "): rebuild it with `kiln build`");
  uint64_t got = fnv1a64(data, checksum_at);
  got = fnv1a64(data + payload_at, size - payload_at, got);
  if (got != checksum) throw_bad_input("profile plan " + origin + " is corrupt (checksum mismatch): rebuild it");

  const uint32_t graph_version = r.u32();
  if (graph_version != kFormatVersion)
    throw_bad_input("profile plan " + origin + " holds graphs of plan format version " + std::to_string(graph_version) +
                    ", this kiln reads version " + std::to_string(kFormatVersion) + ": rebuild it with `kiln build`");
  const uint32_t bounds[3] = {r.u32(), r.u32(), r.u32()};
  for (uint32_t b : bounds)
    if (b > uint32_t(INT_MAX)) r.fail("batch " + std::to_string(b) + " of the profile is too large");
  out.profile = {int(bounds[0]), int(bounds[1]), int(bounds[2])};
  if (out.profile.min < 1 || out.profile.min > out.profile.opt || out.profile.opt > out.profile.max)
    r.fail("profile min " + std::to_string(bounds[0]) + ", opt " + std::to_string(bounds[1]) + ", max " +
           std::to_string(bounds[2]) + " is not ordered 1 <= min <= opt <= max");

  // Each constant takes at least dtype, rank and byte count.
  const uint32_t nconst = r.count(13, "shared constant");
  out.constants.reserve(nconst);
  for (uint32_t k = 0; k < nconst; ++k)
    out.constants.push_back(std::make_shared<const ir::Tensor>(read_tensor(r, "shared constant")));

  const uint32_t nspecs = r.count(12, "specialization");
  if (nspecs == 0 || nspecs > kMaxSpecializations)
    r.fail(std::to_string(nspecs) + " specializations (a profile has 1 to " + std::to_string(kMaxSpecializations) + ")");
  bool has_opt = false;
  for (uint32_t k = 0; k < nspecs; ++k) {
    const uint32_t batch = r.u32();
    if (batch < uint32_t(out.profile.min) || batch > uint32_t(out.profile.max) ||
        (k && batch <= uint32_t(out.specs.back().batch)))
      r.fail("specialization batch " + std::to_string(batch) + " is outside the profile or out of order");
    has_opt = has_opt || batch == uint32_t(out.profile.opt);
    const uint64_t len = r.u64();
    const size_t at = r.offset();
    const uint8_t* bytes = r.bytes(len, "specialization graph");
    Specialization s;
    s.batch = int(batch);
    s.graph = decode_graph(bytes, size_t(len), origin, at, &out.constants);
    out.specs.push_back(std::move(s));
  }
  if (out.specs.front().batch != out.profile.min || out.specs.back().batch != out.profile.max || !has_opt)
    r.fail("the specializations do not cover the profile's min, opt and max batches");
  if (r.remaining()) r.fail(std::to_string(r.remaining()) + " unexpected trailing bytes");
  return out;
}

}  // namespace plan
}  // namespace kiln
