// `kiln detect`'s image decoder (tools/kiln/image.cpp): files whose header
// declares too many pixels are refused with kBadInput before decoding; the
// fuzz seeds (hand-encoded by fuzz/image_seeds.py, not by stb) decode to the
// pattern they were written from; every seed truncation and every input under
// fuzz/regressions/image_decode_fuzz/ is either decoded or refused with a
// kiln::Error, through the same steps as the image_decode_fuzz target.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "kiln/error.h"

#include "image.h"

namespace {

namespace fs = std::filesystem;
using kiln::cli::decode_image;
using kiln::cli::Image;

fs::path fuzz_dir() {
  if (const char* root = std::getenv("KILN_SOURCE_DIR")) return fs::path(root) / "fuzz";
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "fuzz";
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

Image decode(const std::vector<uint8_t>& b, int64_t max_pixels = kiln::cli::kMaxImagePixels) {
  return decode_image(b.data(), b.size(), "img", max_pixels);
}

// The error decode() throws, or a failure when it throws none.
kiln::Error decode_error(const std::vector<uint8_t>& b, int64_t max_pixels = kiln::cli::kMaxImagePixels) {
  try {
    Image img = decode(b, max_pixels);
    ADD_FAILURE() << "decoded a " << img.width << " x " << img.height << " image";
  } catch (const kiln::Error& e) {
    return e;
  }
  return kiln::Error(kiln::ErrorCode::kInternal, "no error");
}

uint32_t crc32(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char ch : s) {
    c ^= ch;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

std::string be32(uint32_t v) {
  return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

// A PNG of ~60 bytes: a valid IHDR declaring w x h RGB, one tiny IDAT, IEND.
std::vector<uint8_t> png_declaring(uint32_t w, uint32_t h) {
  auto chunk = [](const std::string& kind, const std::string& data) {
    return be32(uint32_t(data.size())) + kind + data + be32(crc32(kind + data));
  };
  std::string ihdr = be32(w) + be32(h) + std::string("\x08\x02\x00\x00\x00", 5);
  std::string idat("\x78\x9c\x63\x00\x00\x00\x01\x00\x01", 9);  // zlib stream of one zero byte
  std::string f = std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", idat) + chunk("IEND", "");
  return std::vector<uint8_t>(f.begin(), f.end());
}

TEST(ImageLimits, HugeDeclaredSizeIsBadInputBeforeDecoding) {
  const std::vector<uint8_t> f = png_declaring(60000, 60000);
  ASSERT_LT(f.size(), 100u);
  kiln::Error e = decode_error(f);
  EXPECT_EQ(e.code(), kiln::ErrorCode::kBadInput);
  // Refused from the header (by stb's own 2^30-byte PNG check here), with the
  // limit's message, not stb's "outofmem" after trying.
  EXPECT_NE(std::string(e.what()).find("image 'img' declares"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("downscale"), std::string::npos) << e.what();
}

TEST(ImageLimits, OversizedRegressionFilesOfEveryFormatAreRefusedByTheLimit) {
  // 60000 x 60000 (stb would refuse these itself, as over 2^31 bytes) and
  // 16000 x 16000 (which stb would allocate 768 MB for), as PNG, JPEG, BMP, PPM.
  std::vector<fs::path> files = files_in(fuzz_dir() / "regressions/image_decode_fuzz");
  int checked = 0;
  for (const auto& p : files) {
    const std::string name = p.filename().string();
    if (name.rfind("oversized_", 0) != 0) continue;
    SCOPED_TRACE(name);
    const std::string dims = name.substr(10, name.find('.') - 10);  // "60000x60000"
    const std::string side = dims.substr(0, dims.find('x'));
    std::vector<uint8_t> b = read_bytes(p);
    EXPECT_LE(b.size(), 300u);
    kiln::Error e = decode_error(b);
    EXPECT_EQ(e.code(), kiln::ErrorCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find("downscale it first"), std::string::npos) << e.what();
    // Past stb's own checks only kiln's limit stands between these and a 768 MB buffer.
    if (side == "16000") {
      EXPECT_NE(std::string(e.what()).find("declares 16000 x 16000 pixels"), std::string::npos) << e.what();
    }
    ++checked;
  }
  EXPECT_EQ(checked, 8) << "expected 2 sizes x 4 formats under " << fuzz_dir() / "regressions/image_decode_fuzz";
}

TEST(ImageLimits, LimitCountsPixelsNotSides) {
  // 5 x 3 pixels: accepted at a limit of 15, refused at 14.
  std::vector<uint8_t> b = read_bytes(fuzz_dir() / "corpus/image_decode_fuzz/rgb_png8.png");
  ASSERT_FALSE(b.empty());
  Image img = decode(b, 15);
  EXPECT_EQ(img.width, 5);
  EXPECT_EQ(img.height, 3);
  kiln::Error e = decode_error(b, 14);
  EXPECT_EQ(e.code(), kiln::ErrorCode::kBadInput);
  EXPECT_NE(std::string(e.what()).find("declares 5 x 3 pixels"), std::string::npos) << e.what();
  // A long thin image is fine while its pixel count is: 1,000,000 x 1 is
  // refused only by its missing data, not by the limit.
  e = decode_error(png_declaring(1000000, 1));
  EXPECT_EQ(e.code(), kiln::ErrorCode::kBadInput);
  EXPECT_EQ(std::string(e.what()).find("declares"), std::string::npos) << e.what();
  // The default limit admits the photos of today's largest common sensors.
  EXPECT_GE(kiln::cli::kMaxImagePixels, int64_t(11648) * 8736);
}

// fuzz/image_seeds.py's pattern(w, h) and grey(w, h), written again here.
int pattern_at(int x, int y, int c) {
  int v = c == 0 ? 40 * x + 10 : c == 1 ? 60 * y + 20 : 200 - 30 * x + 10 * y;
  return std::clamp(v, 0, 255);
}
int grey_at(int x, int y) { return std::min(30 * x + 40 * y + 20, 255); }

// What a seed must decode to, by the first word of its name.
int expected(const std::string& kind, const Image& img, int x, int y, int c) {
  if (kind == "rgb" || kind == "jpeg") return pattern_at(x, y, c);
  if (kind == "rep2") return pattern_at(x / 2, y, c);
  if (kind == "rep3") return pattern_at(x / 3, y, c);
  if (kind == "grey") return grey_at(x, y);
  if (kind == "jpeggrey") {  // the pattern's luma (BT.601), as the encoder computed it
    return int(std::lround(0.299 * pattern_at(x, y, 0) + 0.587 * pattern_at(x, y, 1) + 0.114 * pattern_at(x, y, 2)));
  }
  if (kind == "checker") {
    static const int odd[3] = {250, 40, 10}, even[3] = {5, 90, 200};
    return ((x + y) % 2 ? odd : even)[c];
  }
  if (kind == "hdr") {  // RGBE with exponent 128: v/256, then stb's gamma 2.2 tone map
    return int(std::floor(std::pow(pattern_at(x, y, c) / 256.0, 1 / 2.2) * 255 + 0.5));
  }
  return -1;
}

TEST(ImageLimits, SeedsDecodeToThePatternTheyWereWrittenFrom) {
  std::vector<fs::path> seeds = files_in(fuzz_dir() / "corpus/image_decode_fuzz");
  ASSERT_GE(seeds.size(), 30u) << "seeds missing under " << fuzz_dir();
  int compared = 0;
  for (const auto& p : seeds) {
    const std::string name = p.filename().string();
    if (name.rfind("truncated_", 0) == 0) continue;
    SCOPED_TRACE(name);
    const std::string kind = name.substr(0, name.find('_'));
    Image img;
    ASSERT_NO_THROW(img = decode(read_bytes(p)));
    ASSERT_EQ(img.rgb.size(), size_t(img.width) * img.height * 3);
    // The sizes make_seeds.py wrote: 5 x 3 unless the name says otherwise.
    auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
    const int want_w = has("adam7") ? 9 : has("restart") ? 20 : has("jpeg") || has("split_idat") ? 11
                       : has("gif_large") ? 40 : kind == "rep2" ? 10 : kind == "rep3" ? 15 : 5;
    const int want_h = has("restart") ? 10 : has("adam7") || has("jpeg") || has("split_idat") ? 9
                       : has("gif_large") ? 8 : 3;
    EXPECT_EQ(img.width, want_w);
    EXPECT_EQ(img.height, want_h);
    if (kind == "size") continue;  // low bit depths: only the size is exact
    // Lossless formats exactly; JPEG (quality 90) within a few levels, more
    // where 4:2:0 halves the chroma resolution of a steep colour ramp.
    const int tol = has("420") ? 40 : kind == "jpeg" || kind == "jpeggrey" ? 12 : kind == "hdr" ? 1 : 0;
    int worst = 0;
    for (int y = 0; y < img.height; ++y)
      for (int x = 0; x < img.width; ++x)
        for (int c = 0; c < 3; ++c) {
          int want = expected(kind, img, x, y, c);
          ASSERT_GE(want, 0) << "no expectation for kind '" << kind << "'";
          worst = std::max(worst, std::abs(int(img.rgb[(size_t(y) * img.width + x) * 3 + c]) - want));
        }
    EXPECT_LE(worst, tol);
    ++compared;
  }
  EXPECT_GE(compared, 25);
}

// The image_decode_fuzz target's body: decode with its small limit, then
// detect's resize, box drawing and PNG encoding.
void fuzz_body(const std::vector<uint8_t>& b) {
  try {
    Image img = decode(b, int64_t(1) << 20);
    ASSERT_EQ(img.rgb.size(), size_t(img.width) * img.height * 3);
    std::vector<float> chw(3 * 5 * 7);
    kiln::cli::Normalization norm;
    norm.bgr = (b.size() & 1) != 0;
    kiln::cli::to_chw_float(img, 7, 5, norm, chw.data());
    const uint8_t color[3] = {255, 0, 0};
    kiln::cli::draw_rect(img, -2.5, 0.5, img.width * 0.75, img.height + 3.0, color, 2);
    if (int64_t(img.width) * img.height <= 4096) (void)kiln::cli::encode_png(img);
  } catch (const kiln::Error& e) {
    // Corrupt: bad input. A 16-bit PGM, which stb cannot decode safely: unsupported.
    EXPECT_TRUE(e.code() == kiln::ErrorCode::kBadInput ||
                (e.code() == kiln::ErrorCode::kUnsupported && std::string(e.what()).find("16-bit PGM") != std::string::npos))
        << e.what();
  }
}

TEST(ImageLimits, EveryRegressionAndEveryTruncatedSeedDecodesOrIsRefused) {
  for (const auto& p : files_in(fuzz_dir() / "regressions/image_decode_fuzz")) {
    SCOPED_TRACE(p.string());
    fuzz_body(read_bytes(p));
  }
  for (const auto& p : files_in(fuzz_dir() / "corpus/image_decode_fuzz")) {
    SCOPED_TRACE(p.string());
    std::vector<uint8_t> b = read_bytes(p);
    for (size_t n = 0; n <= b.size(); ++n) fuzz_body(std::vector<uint8_t>(b.begin(), b.begin() + n));
  }
}

TEST(ImageLimits, FuzzFindingsAreTypedErrors) {
  const fs::path reg = fuzz_dir() / "regressions/image_decode_fuzz";
  struct Case {
    const char* file;
    const char* says;
  } cases[] = {
      // Headers cut off before their size: stb returned 0-pixel images.
      {"zero_size_truncated.ppm", "declares 0 x 0 pixels"},
      {"zero_width_truncated.hdr", "declares 0 x 3 pixels"},
      // stb 2.27 wrote past its Huffman tables / overflowed an int.
      {"jpeg_dht_over_256_codes.jpg", "Huffman table of more than 256 codes"},
      // A progressive JPEG without DHT: stb decoded with uninitialized tables.
      {"jpeg_scan_without_huffman_tables.jpg", "Huffman table that no DHT segment defines"},
      {"pnm_header_int_overflow.pgm", "corrupt PNM header"},
      // A 16-bit PPM with fewer samples than declared: stb read past its buffer.
      {"ppm_16bit_short_data.ppm", "truncated 16-bit PNM"},
      // 214 bytes whose IDAT declares ~1 GiB: stb grew its buffer to 2 GiB first.
      {"png_idat_length_past_end.png", "IDAT chunk longer than the rest of the file"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    std::vector<uint8_t> b = read_bytes(reg / c.file);
    ASSERT_FALSE(b.empty());
    kiln::Error e = decode_error(b);
    EXPECT_EQ(e.code(), kiln::ErrorCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
  }
  // Any 16-bit PGM: stb widened grey to RGB as 8-bit samples, then read the
  // RGB size as 16-bit ones. Refused as unsupported.
  for (const char* f : {"pnm_16bit_short_data.pgm", "pgm_16bit.pgm"}) {
    SCOPED_TRACE(f);
    kiln::Error e = decode_error(read_bytes(reg / f));
    EXPECT_EQ(e.code(), kiln::ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("16-bit PGM"), std::string::npos) << e.what();
  }
  // A PNG whose first IDAT is empty (stb copied it into a null buffer) is
  // refused when corrupt, and decodes as before when it is not: the 5 x 3
  // seed with an empty IDAT chunk put before its data.
  EXPECT_EQ(decode_error(read_bytes(reg / "png_empty_idat_before_data.png")).code(), kiln::ErrorCode::kBadInput);
  std::vector<uint8_t> png = read_bytes(fuzz_dir() / "corpus/image_decode_fuzz/rgb_png8.png");
  const size_t idat = 8 + 12 + 13;  // signature, then IHDR (13 bytes of data)
  ASSERT_EQ(std::string(png.begin() + idat + 4, png.begin() + idat + 8), "IDAT");
  const uint8_t empty_idat[12] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};  // CRC of "IDAT"
  std::vector<uint8_t> with_empty(png.begin(), png.begin() + idat);
  with_empty.insert(with_empty.end(), empty_idat, empty_idat + 12);
  with_empty.insert(with_empty.end(), png.begin() + idat, png.end());
  Image img = decode(with_empty);
  ASSERT_EQ(img.width, 5);
  ASSERT_EQ(img.height, 3);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(img.rgb[(y * 5 + x) * 3 + c], pattern_at(x, y, c));
}

TEST(ImageLimits, LoadImageReadsTheFileAndNamesItInErrors) {
  const fs::path dir = fs::temp_directory_path() / ("kiln_image_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::vector<uint8_t> bytes = read_bytes(fuzz_dir() / "corpus/image_decode_fuzz/rgb_png8.png");
  const fs::path file = dir / "photo.png";
  std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  Image img = kiln::cli::load_image(file.string());
  EXPECT_EQ(img.width, 5);
  EXPECT_EQ(img.height, 3);
  EXPECT_EQ(img.rgb, decode(bytes).rgb);
  for (const fs::path& bad : {dir / "missing.png", dir}) {
    try {
      kiln::cli::load_image(bad.string());
      ADD_FAILURE() << bad << " was accepted";
    } catch (const kiln::Error& e) {
      EXPECT_EQ(e.code(), kiln::ErrorCode::kBadInput);
      EXPECT_NE(std::string(e.what()).find(bad.string()), std::string::npos) << e.what();
    }
  }
  const std::vector<uint8_t> huge = png_declaring(60000, 60000);
  const fs::path huge_file = dir / "huge.png";
  std::ofstream(huge_file, std::ios::binary).write(reinterpret_cast<const char*>(huge.data()), huge.size());
  try {
    kiln::cli::load_image(huge_file.string());
    ADD_FAILURE() << "a 60000 x 60000 header was accepted";
  } catch (const kiln::Error& e) {
    EXPECT_EQ(e.code(), kiln::ErrorCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find(huge_file.string() + "' declares"), std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
