// SharedUploads: content-keyed (hash, then a byte compare against a host copy
// kept for the scope's life) device copies of one thread's uploads.
#include "backends/cuda/upload_sharing.h"

#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

namespace kiln::cuda {

namespace {

struct Copy {
  std::vector<uint8_t> host;
  DevicePtr device;
};

struct Scope {
  std::unordered_map<uint64_t, std::vector<Copy>> copies;
  int64_t shared = 0;
};

thread_local Scope* current = nullptr;

uint64_t hash_bytes(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull ^ n;
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

}  // namespace

SharedUploads::SharedUploads() {
  if (!current) {
    current = new Scope;
    owner_ = true;
  }
}

SharedUploads::~SharedUploads() {
  if (owner_) {
    delete current;
    current = nullptr;
  }
}

int64_t SharedUploads::bytes_shared() const { return current ? current->shared : 0; }

DevicePtr SharedUploads::find(const void* host, size_t bytes) {
  if (!current || !bytes) return nullptr;
  const auto* p = static_cast<const uint8_t*>(host);
  auto it = current->copies.find(hash_bytes(p, bytes));
  if (it == current->copies.end()) return nullptr;
  for (const Copy& c : it->second)
    if (c.host.size() == bytes && std::memcmp(c.host.data(), p, bytes) == 0) {
      current->shared += int64_t(bytes);
      return c.device;
    }
  return nullptr;
}

void SharedUploads::store(const void* host, size_t bytes, const DevicePtr& device) {
  if (!current || !bytes) return;
  const auto* p = static_cast<const uint8_t*>(host);
  current->copies[hash_bytes(p, bytes)].push_back({std::vector<uint8_t>(p, p + bytes), device});
}

}  // namespace kiln::cuda
