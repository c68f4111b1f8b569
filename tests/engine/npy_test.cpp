// tools/kiln/npy: .npy read/write against files written by numpy 2.4
// (np.save / numpy.lib.format.write_array), embedded below as hex.
#include "npy.h"

#include <gtest/gtest.h>

#include <cstring>

#include "kiln/error.h"

namespace kiln {
namespace {

// Files numpy wrote, hex-encoded.
constexpr const char* kF32 =
    "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73"
    "652c20277368617065273a2028322c2032292c207d202020202020202020202020202020202020202020202020202020"
    "202020202020202020202020202020202020202020202020202020202020200a0000c03f000000c00000404000008040";
constexpr const char* kI64 =
    "934e554d5059010076007b276465736372273a20273c6938272c2027666f727472616e5f6f72646572273a2046616c73"
    "652c20277368617065273a2028332c292c207d2020202020202020202020202020202020202020202020202020202020"
    "202020202020202020202020202020202020202020202020202020202020200a0100000000000000feffffffffffffff"
    "2c01000000000000";
constexpr const char* kBoolScalar =
    "934e554d5059010076007b276465736372273a20277c6231272c2027666f727472616e5f6f72646572273a2046616c73"
    "652c20277368617065273a2028292c207d20202020202020202020202020202020202020202020202020202020202020"
    "202020202020202020202020202020202020202020202020202020202020200a01";
constexpr const char* kF16 =
    "934e554d5059010076007b276465736372273a20273c6632272c2027666f727472616e5f6f72646572273a2046616c73"
    "652c20277368617065273a2028312c2033292c207d202020202020202020202020202020202020202020202020202020"
    "202020202020202020202020202020202020202020202020202020202020200a003c00400042";
constexpr const char* kEmptyI32 =
    "934e554d5059010076007b276465736372273a20273c6934272c2027666f727472616e5f6f72646572273a2046616c73"
    "652c20277368617065273a2028302c2033292c207d202020202020202020202020202020202020202020202020202020"
    "202020202020202020202020202020202020202020202020202020202020200a";
constexpr const char* kU8v2 =
    "934e554d50590200740000007b276465736372273a20277c7531272c2027666f727472616e5f6f72646572273a204661"
    "6c73652c20277368617065273a2028322c292c207d202020202020202020202020202020202020202020202020202020"
    "202020202020202020202020202020202020202020202020202020202020200a0102";
constexpr const char* kI1v3 =
    "934e554d50590300740000007b276465736372273a20277c6931272c2027666f727472616e5f6f72646572273a204661"
    "6c73652c20277368617065273a2028322c292c207d202020202020202020202020202020202020202020202020202020"
    "202020202020202020202020202020202020202020202020202020202020200a01fe";
constexpr const char* kFortran =
    "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2054727565"
    "2c20277368617065273a2028322c2033292c207d20202020202020202020202020202020202020202020202020202020"
    "202020202020202020202020202020202020202020202020202020202020200a00000000000040400000803f00008040"
    "000000400000a040";
constexpr const char* kF64 =
    "934e554d5059010076007b276465736372273a20273c6638272c2027666f727472616e5f6f72646572273a2046616c73"
    "652c20277368617065273a2028312c292c207d2020202020202020202020202020202020202020202020202020202020"
    "202020202020202020202020202020202020202020202020202020202020200a000000000000f03f";
constexpr const char* kBigF4 =
    "934e554d5059010076007b276465736372273a20273e6634272c2027666f727472616e5f6f72646572273a2046616c73"
    "652c20277368617065273a2028312c292c207d2020202020202020202020202020202020202020202020202020202020"
    "202020202020202020202020202020202020202020202020202020202020200a3f800000";

std::vector<uint8_t> unhex(const char* h) {
  std::vector<uint8_t> out;
  for (size_t k = 0; h[k] && h[k + 1]; k += 2) out.push_back(uint8_t(std::stoi(std::string(h + k, 2), nullptr, 16)));
  return out;
}

template <typename T> std::vector<T> values(const HostTensor& t) {
  std::vector<T> v(size_t(t.numel()));
  std::memcpy(v.data(), t.data.data(), t.data.size());
  return v;
}

ErrorCode parse_error(const std::vector<uint8_t>& bytes, std::string* message = nullptr) {
  try {
    npy::parse(bytes, "t.npy");
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return ErrorCode::kInternal;  // no error: callers expect one
}

TEST(Npy, ReadsNumpyFiles) {
  HostTensor f = npy::parse(unhex(kF32), "f.npy");
  EXPECT_EQ(f.dtype, DataType::kFloat32);
  EXPECT_EQ(f.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(values<float>(f), (std::vector<float>{1.5f, -2.f, 3.f, 4.f}));

  HostTensor i = npy::parse(unhex(kI64), "i.npy");
  EXPECT_EQ(i.dtype, DataType::kInt64);
  EXPECT_EQ(i.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(values<int64_t>(i), (std::vector<int64_t>{1, -2, 300}));

  HostTensor b = npy::parse(unhex(kBoolScalar), "b.npy");
  EXPECT_EQ(b.dtype, DataType::kBool);
  EXPECT_TRUE(b.shape.empty());
  EXPECT_EQ(b.data, (std::vector<uint8_t>{1}));

  HostTensor h = npy::parse(unhex(kF16), "h.npy");
  EXPECT_EQ(h.dtype, DataType::kFloat16);
  EXPECT_EQ(h.shape, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(values<uint16_t>(h), (std::vector<uint16_t>{0x3c00, 0x4000, 0x4200}));  // 1, 2, 3

  HostTensor e = npy::parse(unhex(kEmptyI32), "e.npy");
  EXPECT_EQ(e.dtype, DataType::kInt32);
  EXPECT_EQ(e.shape, (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(e.data.empty());

  HostTensor u = npy::parse(unhex(kU8v2), "u.npy");
  EXPECT_EQ(u.dtype, DataType::kUInt8);
  EXPECT_EQ(u.data, (std::vector<uint8_t>{1, 2}));

  HostTensor s = npy::parse(unhex(kI1v3), "s.npy");
  EXPECT_EQ(s.dtype, DataType::kInt8);
  EXPECT_EQ(values<int8_t>(s), (std::vector<int8_t>{1, -2}));
}

TEST(Npy, WritesWhatNumpyWrites) {
  for (const char* hex : {kF32, kI64, kBoolScalar, kF16, kEmptyI32}) {
    std::vector<uint8_t> file = unhex(hex);
    EXPECT_EQ(npy::serialize(npy::parse(file, "x.npy")), file);
  }
}

TEST(Npy, SaveAndLoadFile) {
  std::string path = ::testing::TempDir() + "/kiln_npy_test.npy";
  HostTensor t = HostTensor::zeros(DataType::kInt32, {2, 1, 3});
  for (int k = 0; k < 6; ++k) t.as<int32_t>()[k] = k * k - 3;
  npy::save(path, t);
  HostTensor back = npy::load(path);
  EXPECT_EQ(back.dtype, t.dtype);
  EXPECT_EQ(back.shape, t.shape);
  EXPECT_EQ(back.data, t.data);
  std::string msg;
  try {
    npy::load(path + ".absent");
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find(path + ".absent"), std::string::npos) << msg;
}

TEST(Npy, RefusesUnsupportedLayouts) {
  std::string msg;
  EXPECT_EQ(parse_error(unhex(kFortran), &msg), ErrorCode::kBadInput);
  EXPECT_NE(msg.find("Fortran order"), std::string::npos) << msg;
  EXPECT_EQ(parse_error(unhex(kF64), &msg), ErrorCode::kUnsupported);
  EXPECT_NE(msg.find("'<f8'"), std::string::npos) << msg;
  EXPECT_EQ(parse_error(unhex(kBigF4), &msg), ErrorCode::kUnsupported);
  EXPECT_NE(msg.find("big-endian"), std::string::npos) << msg;
  std::vector<uint8_t> v9 = unhex(kF32);
  v9[6] = 9;
  EXPECT_EQ(parse_error(v9), ErrorCode::kUnsupported);
}

TEST(Npy, EveryTruncationIsBadInput) {
  std::vector<uint8_t> file = unhex(kI64);
  for (size_t n = 0; n < file.size(); ++n)
    EXPECT_EQ(parse_error(std::vector<uint8_t>(file.begin(), file.begin() + long(n))), ErrorCode::kBadInput) << n;
}

// Rewrites the header of a valid file (numpy pads with spaces; keep the length).
std::vector<uint8_t> with_header(std::string header) {
  std::vector<uint8_t> file = unhex(kF32);
  size_t len = file[8] | file[9] << 8;
  header.resize(len - 1, ' ');
  header += '\n';
  std::memcpy(file.data() + 10, header.data(), len);
  return file;
}

TEST(Npy, HostileHeadersAreBadInput) {
  // Sanity: the unmodified header parses.
  EXPECT_NO_THROW(npy::parse(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"), "ok"));
  for (const char* h : {
           "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 1), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 2), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, }",
           "{'descr': '<f4', 'fortran_order': False}",
           "{'descr': '<f4', 'shape': (2, 2), }",
           "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
           "{'descr': '<f4, 'fortran_order': False, 'shape': (2, 2), }",
           "{'descr': 4, 'fortran_order': False, 'shape': (2, 2), }",
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), } trailing",
           "descr",
           "",
       }) {
    EXPECT_EQ(parse_error(with_header(h)), ErrorCode::kBadInput) << h;
  }
  std::vector<uint8_t> long_header = unhex(kF32);
  long_header[8] = 0xff;
  long_header[9] = 0xff;
  EXPECT_EQ(parse_error(long_header), ErrorCode::kBadInput);
  std::vector<uint8_t> extra = unhex(kF32);
  extra.push_back(0);
  EXPECT_EQ(parse_error(extra), ErrorCode::kBadInput);
}

}  // namespace
}  // namespace kiln
