// Little-endian byte streams for the plan file. The reader never trusts a
// length or count it reads: each is checked against the bytes that remain
// before anything is allocated, so a truncated or hostile plan fails with
// kBadInput instead of crashing or reserving gigabytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kiln/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kiln's plan format copies tensor data verbatim and assumes a little-endian host"
#endif

namespace kiln::plan {

class ByteWriter {
 public:
  void u8(uint8_t v) { buf_.push_back(v); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void i32(int32_t v) { put(static_cast<uint32_t>(v), 4); }
  void i64(int64_t v) { put(static_cast<uint64_t>(v), 8); }
  void f32(float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    put(bits, 4);
  }
  void str(const std::string& s) {
    count(s.size());
    bytes(s.data(), s.size());
  }
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  // Counts are u32; a graph larger than that is a kiln bug, not user input.
  void count(size_t n) {
    if (n > 0xffffffffu) throw_internal("plan writer: count " + std::to_string(n) + " does not fit in 32 bits");
    u32(static_cast<uint32_t>(n));
  }
  std::vector<uint8_t>& buffer() { return buf_; }

 private:
  void put(uint64_t v, int n) {
    for (int k = 0; k < n; ++k) buf_.push_back(static_cast<uint8_t>(v >> (8 * k)));
  }
  std::vector<uint8_t> buf_;
};

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string origin, size_t base_offset = 0)
      : p_(data), n_(size), origin_(std::move(origin)), base_(base_offset) {}

  size_t remaining() const { return n_ - pos_; }
  size_t offset() const { return base_ + pos_; }

  uint8_t u8() { return static_cast<uint8_t>(get(1, "a byte")); }
  uint32_t u32() { return static_cast<uint32_t>(get(4, "a 32-bit field")); }
  uint64_t u64() { return get(8, "a 64-bit field"); }
  int32_t i32() { return static_cast<int32_t>(static_cast<uint32_t>(get(4, "a 32-bit field"))); }
  int64_t i64() { return static_cast<int64_t>(get(8, "a 64-bit field")); }
  float f32() {
    uint32_t bits = u32();
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  std::string str(const char* what) {
    uint32_t len = u32();
    if (len > remaining()) fail(std::string(what) + " of " + std::to_string(len) + " bytes runs past the end");
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }
  const uint8_t* bytes(uint64_t n, const char* what) {
    if (n > remaining()) fail(std::string(what) + " of " + std::to_string(n) + " bytes runs past the end");
    const uint8_t* b = p_ + pos_;
    pos_ += static_cast<size_t>(n);
    return b;
  }
  // A count of items that each take at least `min_item_bytes` in the stream.
  uint32_t count(size_t min_item_bytes, const char* what) {
    uint32_t c = u32();
    if (min_item_bytes && c > remaining() / min_item_bytes)
      fail(std::string(what) + " count " + std::to_string(c) + " exceeds what the remaining " +
           std::to_string(remaining()) + " bytes can hold");
    return c;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw_bad_input("plan " + origin_ + " is corrupt (" + what + " at byte " + std::to_string(offset()) +
                    "): rebuild it with `kiln build`");
  }

 private:
  uint64_t get(int n, const char* what) {
    if (remaining() < size_t(n)) fail(std::string("truncated while reading ") + what);
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) v |= uint64_t(p_[pos_ + k]) << (8 * k);
    pos_ += size_t(n);
    return v;
  }

  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  std::string origin_;
  size_t base_;
};

}  // namespace kiln::plan
