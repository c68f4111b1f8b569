#include "image.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// Debian's libstb ships the implementations in libstb.so; without it this file
// compiles them in (KILN_STB_IMPLEMENTATION set by CMake).
#ifdef KILN_STB_IMPLEMENTATION
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#endif
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include "kiln/error.h"

namespace kiln::cli {

namespace {
// Two JPEG faults of stb_image 2.27 (Debian 12's libstb), found by fuzzing:
// it writes past its Huffman tables when a DHT segment declares more than 256
// codes, and it decodes a scan with Huffman tables no DHT defined, reading
// uninitialized memory as table entries (and indexing with them). This walks
// the segments as stb does (fill bytes, entropy-coded data up to the next
// marker, length-prefixed segments) and says which fault a file would hit.
// Where the walk goes on past a point stb stops at, it only refuses more.
enum class JpegFault { kNone, kTableOverflow, kUndefinedTable };

JpegFault jpeg_fault(const uint8_t* d, size_t n) {
  auto at = [&](size_t i) -> size_t { return i < n ? d[i] : 0; };  // stb reads 0 past the end
  size_t p = 0;
  while (p < n && d[p] == 0xFF) ++p;
  if (p == 0 || at(p) != 0xD8) return JpegFault::kNone;  // not a JPEG (SOI after fill bytes)
  ++p;
  bool defined[2][4] = {};  // [DC, AC][table id]
  bool progressive = false;
  while (p < n) {
    if (d[p] != 0xFF) {  // entropy-coded data or padding: look for the next marker
      ++p;
      continue;
    }
    while (p < n && d[p] == 0xFF) ++p;
    if (p >= n) break;
    const size_t m = d[p++];
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue;  // stuffing, TEM, RSTn, SOI
    if (m == 0xD9) break;                                                // EOI
    const size_t len = at(p) << 8 | at(p + 1);
    if (m == 0xC2) progressive = true;
    if (m == 0xC4) {
      // One or more tables: class/id byte, 16 code counts, then the codes.
      for (size_t t = p + 2, left = len >= 2 ? len - 2 : 0; left > 0;) {
        size_t codes = 0;
        for (size_t i = 1; i <= 16; ++i) codes += at(t + i);
        if (codes > 256) return JpegFault::kTableOverflow;
        if (at(t) >> 4 <= 1 && (at(t) & 15) <= 3) defined[at(t) >> 4][at(t) & 15] = true;
        t += 17 + codes;
        left = left > 17 + codes ? left - 17 - codes : 0;
      }
    }
    if (m == 0xDA) {
      // Scan header: component count, (component, DC << 4 | AC table) each,
      // then spectral start and successive-approximation high bit. Which
      // tables stb reads: both in a sequential scan; in a progressive one the
      // DC table for a first DC pass, the AC table for an AC pass.
      const size_t count = at(p + 2), ss = at(p + 3 + 2 * count), ah = at(p + 5 + 2 * count) >> 4;
      for (size_t c = 0; c < count; ++c) {
        const size_t dc = at(p + 4 + 2 * c) >> 4, ac = at(p + 4 + 2 * c) & 15;
        if (dc > 3 || ac > 3) break;  // stb refuses these itself
        const bool needs_dc = !progressive || (ss == 0 && ah == 0), needs_ac = !progressive || ss > 0;
        if ((needs_dc && !defined[0][dc]) || (needs_ac && !defined[1][ac])) return JpegFault::kUndefinedTable;
      }
    }
    p += len;
  }
  return JpegFault::kNone;
}

// stb_image 2.27 reads a PNM header's width, height and maximum value into an
// int without an overflow check (undefined behaviour past 2^31 - 1). Its
// 16-bit path (maximum value over 255) reads past its buffer when the file
// holds fewer samples than the header declares, and for every 16-bit PGM
// (it widens grey to RGB as if the samples were 8-bit, then converts 16 to
// 8 bits over the RGB size). Reads the header the same way, whitespace and
// '#' comments included.
enum class PnmFault { kNone, kOverflow, kShortSixteenBit, kSixteenBitGrey };

PnmFault pnm_header_fault(const uint8_t* d, size_t n) {
  if (n < 2 || d[0] != 'P' || (d[1] != '5' && d[1] != '6')) return PnmFault::kNone;
  auto space = [](uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  size_t p = 2;
  int64_t v[3] = {0, 0, 0};  // width, height, maximum value
  for (int field = 0; field < 3; ++field) {
    for (;;) {
      while (p < n && space(d[p])) ++p;
      if (p >= n || d[p] != '#') break;
      while (p < n && d[p] != '\n' && d[p] != '\r') ++p;
    }
    for (; p < n && d[p] >= '0' && d[p] <= '9'; ++p)
      if ((v[field] = v[field] * 10 + (d[p] - '0')) > INT_MAX) return PnmFault::kOverflow;
  }
  if (v[2] <= 255) return PnmFault::kNone;
  if (d[1] == '5') return PnmFault::kSixteenBitGrey;
  // One whitespace byte ends the header; then 2 bytes per sample.
  const uint64_t need = uint64_t(v[0]) * uint64_t(v[1]) * (d[1] == '6' ? 3u : 1u) * 2u;
  const uint64_t have = p + 1 < n ? uint64_t(n - p - 1) : 0;
  return have < need ? PnmFault::kShortSixteenBit : PnmFault::kNone;
}

// A PNG's chunks as stb_image 2.27 walks them, for two of its faults: it
// grows its data buffer to the length an IDAT chunk declares before reading
// the chunk (a 200-byte file can ask for 2 GiB), and it copies a zero-length
// IDAT that comes before any data into its still-null buffer (memcpy from
// null: undefined behaviour).
struct PngChunks {
  bool idat_past_end = false;         // an IDAT longer than the rest of the file
  std::vector<size_t> leading_empty;  // offsets of zero-length IDATs before the data
};

PngChunks scan_png(const uint8_t* d, size_t n) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  PngChunks out;
  if (n < 8 || std::memcmp(d, kSignature, 8) != 0) return out;
  bool data_seen = false;
  for (size_t p = 8; p + 8 <= n;) {
    const size_t len = size_t(d[p]) << 24 | size_t(d[p + 1]) << 16 | size_t(d[p + 2]) << 8 | d[p + 3];
    const bool past_end = len > n - p - 8;
    if (std::memcmp(d + p + 4, "IDAT", 4) == 0) {
      if (past_end) out.idat_past_end = true;
      if (len == 0 && !data_seen) out.leading_empty.push_back(p);
      data_seen |= len > 0;
    }
    if (past_end || std::memcmp(d + p + 4, "IEND", 4) == 0) break;
    p += len + 12;
  }
  return out;
}
}  // namespace

Image load_image(const std::string& path) {
  // stb would accept a missing file quietly as "can't fopen"; say which file.
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw_bad_input("cannot open image '" + path + "': no such file or not readable");
  // Read in chunks rather than by the reported size: pipes and /dev/stdin work too.
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) bytes.insert(bytes.end(), chunk, chunk + n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) throw_bad_input("cannot read image '" + path + "': read error (is it a directory?)");
  return decode_image(bytes.data(), bytes.size(), path);
}

Image decode_image(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels) {
  const std::string formats = " (give a PNG, JPEG, BMP, TGA, GIF or PNM file)";
  auto too_large = [&](const std::string& what) {
    char limit[96];
    std::snprintf(limit, sizeof limit, "; kiln decodes images of at most %.1f million pixels: downscale it first",
                  double(max_pixels) / 1e6);
    throw_bad_input("image '" + name + "' " + what + limit);
  };
  // stb returns an image of 0 pixels for a header cut off before its size
  // (PNM, HDR); detect would then index an empty buffer.
  auto no_pixels = [&](int w, int h) {
    throw_bad_input("image '" + name + "' declares " + std::to_string(w) + " x " + std::to_string(h) +
                    " pixels: it is truncated or corrupt" + formats);
  };
  // stb takes the length as an int.
  if (size > size_t(INT_MAX)) too_large("is a file over 2 GiB");
  // Inputs that make stb 2.27 misbehave, refused or repaired first.
  switch (jpeg_fault(data, size)) {
    case JpegFault::kTableOverflow:
      throw_bad_input("cannot decode image '" + name + "': corrupt JPEG (a Huffman table of more than 256 codes)");
    case JpegFault::kUndefinedTable:
      throw_bad_input("cannot decode image '" + name + "': corrupt JPEG (a scan uses a Huffman table that no DHT "
                      "segment defines)");
    case JpegFault::kNone:
      break;
  }
  switch (pnm_header_fault(data, size)) {
    case PnmFault::kOverflow:
      throw_bad_input("cannot decode image '" + name + "': corrupt PNM header (a number over 2^31 - 1)");
    case PnmFault::kSixteenBitGrey:
      throw_unsupported("cannot decode image '" + name + "': 16-bit PGM (maximum value over 255) is not supported; "
                        "convert it to 8 bits");
    case PnmFault::kShortSixteenBit:
      throw_bad_input("cannot decode image '" + name + "': truncated 16-bit PNM (fewer samples than its header "
                      "declares)");
    case PnmFault::kNone:
      break;
  }
  const PngChunks chunks = scan_png(data, size);
  if (chunks.idat_past_end)
    throw_bad_input("cannot decode image '" + name + "': truncated or corrupt PNG (an IDAT chunk longer than the "
                    "rest of the file)");
  // Zero-length chunks carry nothing: without them (stb checks no CRCs) stb
  // decodes the same image.
  std::vector<uint8_t> png;
  if (!chunks.leading_empty.empty()) {
    size_t from = 0;
    for (size_t p : chunks.leading_empty) {
      png.insert(png.end(), data + from, data + p);
      from = std::min(p + 12, size);  // its CRC may be cut off
    }
    png.insert(png.end(), data + from, data + size);
    data = png.data();
    size = png.size();
  }
  const int len = int(size);
  int w = 0, h = 0, channels = 0;
  // The header alone gives the size (a top-down BMP's height is negative
  // here). Where stb cannot read a header, decoding fails too and says why.
  if (stbi_info_from_memory(data, len, &w, &h, &channels)) {
    const int64_t aw = std::abs(int64_t(w)), ah = std::abs(int64_t(h));
    if (aw * ah > max_pixels) {
      char dims[96];
      std::snprintf(dims, sizeof dims, "declares %lld x %lld pixels (%.1f million)", (long long)aw, (long long)ah,
                    double(aw) * double(ah) / 1e6);
      too_large(dims);
    }
  }
  unsigned char* px = stbi_load_from_memory(data, len, &w, &h, &channels, 3);
  if (!px) {
    const char* why = stbi_failure_reason();
    // stb's own size checks (2^24 a side, 2^31 bytes) also refuse from the header.
    if (why && std::string(why) == "too large") too_large("declares too many pixels");
    // The reason can quote raw bytes of the file (an unknown PNG chunk type).
    std::string reason = why && *why ? why : "unknown format";
    for (char& c : reason)
      if (c < 0x20 || c > 0x7e) c = '?';
    throw_bad_input("cannot decode image '" + name + "': " + reason + formats);
  }
  if (w <= 0 || h <= 0) {
    stbi_image_free(px);
    no_pixels(w, h);
  }
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(px, px + size_t(w) * size_t(h) * 3);
  stbi_image_free(px);
  return img;
}

void to_chw_float(const Image& img, int out_w, int out_h, const Normalization& norm, float* dst) {
  const double sx = double(img.width) / out_w, sy = double(img.height) / out_h;
  const size_t plane = size_t(out_w) * size_t(out_h);
  for (int y = 0; y < out_h; ++y) {
    // Source coordinate of this output pixel's centre, clamped at the borders.
    double fy = std::clamp((y + 0.5) * sy - 0.5, 0.0, double(img.height - 1));
    int y0 = int(fy), y1 = std::min(y0 + 1, img.height - 1);
    double wy = fy - y0;
    for (int x = 0; x < out_w; ++x) {
      double fx = std::clamp((x + 0.5) * sx - 0.5, 0.0, double(img.width - 1));
      int x0 = int(fx), x1 = std::min(x0 + 1, img.width - 1);
      double wx = fx - x0;
      for (int c = 0; c < 3; ++c) {
        auto at = [&](int yy, int xx) { return double(img.rgb[(size_t(yy) * img.width + xx) * 3 + c]); };
        double top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx;
        double bot = at(y1, x0) * (1 - wx) + at(y1, x1) * wx;
        double p = top * (1 - wy) + bot * wy;
        int oc = norm.bgr ? 2 - c : c;
        dst[size_t(oc) * plane + size_t(y) * out_w + x] =
            float((p * norm.scale - norm.mean[oc]) / norm.std[oc]);
      }
    }
  }
}

void draw_rect(Image& img, double x0, double y0, double x1, double y1, const uint8_t color[3], int thickness) {
  if (!(x0 <= x1) || !(y0 <= y1) || img.width == 0 || img.height == 0) return;  // NaN or empty
  auto clampi = [](double v, int hi) { return int(std::clamp(std::floor(v), 0.0, double(hi))); };
  int l = clampi(x0, img.width - 1), r = clampi(x1, img.width - 1);
  int t = clampi(y0, img.height - 1), b = clampi(y1, img.height - 1);
  auto put = [&](int x, int y) {
    uint8_t* p = &img.rgb[(size_t(y) * img.width + x) * 3];
    p[0] = color[0], p[1] = color[1], p[2] = color[2];
  };
  for (int k = 0; k < thickness; ++k) {
    for (int x = l; x <= r; ++x) {
      put(x, std::min(t + k, b));
      put(x, std::max(b - k, t));
    }
    for (int y = t; y <= b; ++y) {
      put(std::min(l + k, r), y);
      put(std::max(r - k, l), y);
    }
  }
}

namespace {
void append_bytes(void* ctx, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(ctx);
  auto* p = static_cast<uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}
}  // namespace

std::vector<uint8_t> encode_png(const Image& img) {
  std::vector<uint8_t> out;
  if (!stbi_write_png_to_func(append_bytes, &out, img.width, img.height, 3, img.rgb.data(), img.width * 3))
    throw_internal("PNG encoding failed");
  return out;
}

}  // namespace kiln::cli
