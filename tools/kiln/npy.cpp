#include "npy.h"

#include <cctype>
#include <cstring>
#include <limits>
#include <map>

#include "kiln/error.h"
#include "kiln/kiln.h"

namespace kiln::npy {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kMaxRank = 64;  // numpy's own limit

struct DTypeName {
  DataType dtype;
  const char* descr;  // as written
};
constexpr DTypeName kDTypes[] = {
    {DataType::kFloat32, "<f4"}, {DataType::kFloat16, "<f2"}, {DataType::kInt8, "|i1"}, {DataType::kUInt8, "|u1"},
    {DataType::kInt32, "<i4"},   {DataType::kInt64, "<i8"},   {DataType::kBool, "|b1"},
};

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  throw_bad_input(origin + " is not a valid .npy file: " + what);
}

// A header value: a quoted string, True/False, or a tuple of ints.
struct HeaderValue {
  enum class Kind { kString, kBool, kTuple } kind = Kind::kString;
  std::string s;
  bool b = false;
  std::vector<int64_t> ints;
};

// Parser for the Python dict literal numpy writes as the header, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& origin) : t_(text), origin_(origin) {}

  std::map<std::string, HeaderValue> dict() {
    std::map<std::string, HeaderValue> out;
    ws();
    expect('{');
    for (;;) {
      ws();
      if (peek() == '}') { ++i_; break; }
      std::string key = quoted();
      ws();
      expect(':');
      ws();
      HeaderValue v = value();
      if (!out.emplace(key, std::move(v)).second) bad(origin_, "header repeats key '" + key + "'");
      ws();
      if (peek() == ',') { ++i_; continue; }
      ws();
      expect('}');
      break;
    }
    ws();
    if (i_ != t_.size()) bad(origin_, "unexpected text after the header dictionary");
    return out;
  }

 private:
  char peek() const { return i_ < t_.size() ? t_[i_] : '\0'; }
  void ws() { while (i_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[i_]))) ++i_; }
  void expect(char c) {
    if (peek() != c) bad(origin_, std::string("malformed header (expected '") + c + "' at column " + std::to_string(i_) + ")");
    ++i_;
  }
  std::string quoted() {
    char q = peek();
    if (q != '\'' && q != '"') bad(origin_, "malformed header (expected a quoted string at column " + std::to_string(i_) + ")");
    size_t end = t_.find(q, i_ + 1);
    if (end == std::string::npos) bad(origin_, "malformed header (unterminated string)");
    std::string s = t_.substr(i_ + 1, end - i_ - 1);
    i_ = end + 1;
    return s;
  }
  int64_t integer() {
    size_t start = i_;
    int64_t v = 0;
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      int d = peek() - '0';
      if (v > (std::numeric_limits<int64_t>::max() - d) / 10) bad(origin_, "shape dimension is too large");
      v = v * 10 + d;
      ++i_;
    }
    if (i_ == start) bad(origin_, "malformed shape (expected a non-negative integer at column " + std::to_string(i_) + ")");
    if (peek() == 'L') ++i_;  // written by Python 2
    return v;
  }
  HeaderValue value() {
    HeaderValue v;
    char c = peek();
    if (c == '\'' || c == '"') {
      v.s = quoted();
    } else if (t_.compare(i_, 4, "True") == 0 || t_.compare(i_, 5, "False") == 0) {
      v.kind = HeaderValue::Kind::kBool;
      v.b = t_[i_] == 'T';
      i_ += v.b ? 4 : 5;
    } else if (c == '(') {
      v.kind = HeaderValue::Kind::kTuple;
      ++i_;
      for (;;) {
        ws();
        if (peek() == ')') { ++i_; break; }
        if (v.ints.size() == kMaxRank) bad(origin_, "shape has more than 64 dimensions");
        v.ints.push_back(integer());
        ws();
        if (peek() == ',') { ++i_; continue; }
        expect(')');
        break;
      }
    } else if (c == '[') {
      throw_unsupported(origin_ + ": structured .npy dtypes are not supported; save a plain numeric array");
    } else {
      bad(origin_, "malformed header (unexpected '" + std::string(1, c) + "' at column " + std::to_string(i_) + ")");
    }
    return v;
  }

  const std::string& t_;
  const std::string& origin_;
  size_t i_ = 0;
};

DataType parse_descr(const std::string& d, const std::string& origin) {
  if (d.size() >= 2) {
    char order = d[0];
    std::string code = d.substr(1);
    for (const DTypeName& k : kDTypes) {
      if (code != std::string(k.descr + 1)) continue;
      bool one_byte = dtype_size(k.dtype) == 1;
      // '=' is native order, little-endian on every host kiln builds for.
      if (order == '<' || order == '=' || ((order == '|' || order == '>') && one_byte)) return k.dtype;
      if (order == '>') throw_unsupported(origin + ": big-endian dtype '" + d + "' is not supported; save it with arr.astype('<" + code + "')");
    }
  }
  throw_unsupported(origin + ": .npy dtype '" + d +
                    "' is not supported (kiln reads <f4 <f2 |i1 |u1 <i4 <i8 |b1); convert it, e.g. arr.astype(np.float32)");
}

}  // namespace

HostTensor parse(const std::vector<uint8_t>& bytes, const std::string& origin) {
  if (bytes.size() < kMagicLen + 2 || std::memcmp(bytes.data(), kMagic, kMagicLen) != 0)
    bad(origin, "it does not start with the \\x93NUMPY magic");
  const uint8_t major = bytes[6], minor = bytes[7];
  size_t header_len = 0, pos = 8;
  if (major == 1) {
    if (bytes.size() < pos + 2) bad(origin, "truncated header length");
    header_len = size_t(bytes[8]) | size_t(bytes[9]) << 8;
    pos += 2;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < pos + 4) bad(origin, "truncated header length");
    header_len = size_t(bytes[8]) | size_t(bytes[9]) << 8 | size_t(bytes[10]) << 16 | size_t(bytes[11]) << 24;
    pos += 4;
  } else {
    throw_unsupported(origin + ": .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                      " is not supported (kiln reads 1.0, 2.0 and 3.0)");
  }
  if (header_len > bytes.size() - pos) bad(origin, "header length " + std::to_string(header_len) + " runs past the end of the file");
  // Version 1/2 headers are latin-1 and 3 is UTF-8; the keys and values kiln
  // needs are ASCII either way, so the bytes are parsed as they are.
  std::string text(reinterpret_cast<const char*>(bytes.data() + pos), header_len);
  pos += header_len;
  auto dict = HeaderParser(text, origin).dict();

  auto get = [&](const char* key, HeaderValue::Kind kind) -> const HeaderValue& {
    auto it = dict.find(key);
    if (it == dict.end()) bad(origin, std::string("header has no '") + key + "'");
    if (it->second.kind != kind) bad(origin, std::string("header key '") + key + "' has the wrong type");
    return it->second;
  };
  HostTensor t;
  t.dtype = parse_descr(get("descr", HeaderValue::Kind::kString).s, origin);
  if (get("fortran_order", HeaderValue::Kind::kBool).b)
    bad(origin, "it is stored in Fortran order; save it with np.save(path, np.ascontiguousarray(arr))");
  t.shape = get("shape", HeaderValue::Kind::kTuple).ints;

  const size_t esize = dtype_size(t.dtype);
  const size_t available = bytes.size() - pos;
  bool empty = false;
  for (int64_t d : t.shape) empty = empty || d == 0;
  // An empty array's other dimensions must still multiply without overflow
  // (numpy refuses such shapes too): every later numel() relies on it.
  uint64_t nonzero = 1;
  for (int64_t d : t.shape) {
    if (d == 0) continue;
    if (nonzero > uint64_t(std::numeric_limits<int64_t>::max()) / esize / uint64_t(d))
      bad(origin, "shape " + shape_str(t.shape) + " has too many elements");
    nonzero *= uint64_t(d);
  }
  uint64_t numel = empty ? 0 : 1;
  if (!empty)
    for (int64_t d : t.shape) {
      // Bounded by the file size at every step, so the product cannot overflow.
      if (numel > available / esize / uint64_t(d))
        bad(origin, "shape " + shape_str(t.shape) + " needs more data than the file's " + std::to_string(available) +
                        " bytes");
      numel *= uint64_t(d);
    }
  const uint64_t need = numel * esize;
  if (need != available)
    bad(origin, "shape " + shape_str(t.shape) + " of " + dtype_name(t.dtype) + " needs " + std::to_string(need) +
                    " data bytes, the file holds " + std::to_string(available));
  t.data.assign(bytes.begin() + long(pos), bytes.end());
  if (t.dtype == DataType::kBool)
    for (auto& b : t.data) b = b ? 1 : 0;
  return t;
}

HostTensor load(const std::string& path) { return parse(read_file(path), path); }

std::vector<uint8_t> serialize(const HostTensor& t) {
  const char* descr = nullptr;
  for (const DTypeName& k : kDTypes)
    if (k.dtype == t.dtype) descr = k.descr;
  if (!descr) throw_unsupported(std::string("cannot save dtype ") + dtype_name(t.dtype) + " as .npy");
  for (int64_t d : t.shape)
    if (d < 0) throw_bad_input("cannot save a tensor of shape " + shape_str(t.shape) + " as .npy");
  if (uint64_t(t.numel()) * dtype_size(t.dtype) != t.data.size())
    throw_bad_input("cannot save a tensor of shape " + shape_str(t.shape) + ": it holds " +
                    std::to_string(t.data.size()) + " bytes");
  std::string shape = "(";
  for (size_t k = 0; k < t.shape.size(); ++k) shape += (k ? ", " : "") + std::to_string(t.shape[k]);
  if (t.shape.size() == 1) shape += ",";
  shape += ")";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces and end with '\n' so the data starts on a 64-byte boundary.
  bool v2 = header.size() + 1 + 10 > 0xffff;
  size_t prefix = v2 ? 12 : 10;
  size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');

  std::vector<uint8_t> out(kMagic, kMagic + kMagicLen);
  out.push_back(v2 ? 2 : 1);
  out.push_back(0);
  size_t n = header.size();
  for (size_t k = 0; k < (v2 ? 4u : 2u); ++k) out.push_back(uint8_t(n >> (8 * k)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), t.data.begin(), t.data.end());
  return out;
}

void save(const std::string& path, const HostTensor& t) { write_file_atomic(path, serialize(t)); }

}  // namespace kiln::npy
