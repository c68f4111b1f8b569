// Image helpers for `kiln detect`: decode, resize, normalize, draw, encode PNG.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kiln::cli {

// 8-bit RGB pixels, row-major, 3 bytes a pixel.
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

// Largest image kiln decodes, in pixels (about 134 million, e.g. 12000 x 11000).
// Decoding holds ~3 bytes a pixel twice (stb's buffer, then Image::rgb) plus
// the decoder's working buffers, so a tiny file whose header declares more is
// refused from the header alone, before anything that size is allocated.
constexpr int64_t kMaxImagePixels = int64_t(1) << 27;

// Decodes any format stb_image reads (PNG, JPEG, BMP, ...) to RGB; kBadInput
// naming `path` when it is missing, not a readable image, or larger than
// kMaxImagePixels.
Image load_image(const std::string& path);

// The same from the file's bytes in memory; `name` names the image in errors.
// Images declaring more than `max_pixels` pixels are refused before decoding.
Image decode_image(const uint8_t* data, size_t size, const std::string& name,
                   int64_t max_pixels = kMaxImagePixels);

// How pixels become the engine's input values: value = (p * scale - mean[c]) / std[c],
// p in 0..255, channels in RGB or BGR order.
struct Normalization {
  float scale = 1.0f / 255.0f;
  float mean[3] = {0, 0, 0};
  float std[3] = {1, 1, 1};
  bool bgr = false;
};

// Bilinear resize (pixel centres aligned, as align_corners=False) to out_w x
// out_h, normalized, written as planar CHW floats into `dst` (3*out_h*out_w).
void to_chw_float(const Image& img, int out_w, int out_h, const Normalization& norm, float* dst);

// Draws a rectangle outline `thickness` pixels wide inside [x0,x1] x [y0,y1]
// (clipped to the image).
void draw_rect(Image& img, double x0, double y0, double x1, double y1, const uint8_t color[3], int thickness);

// The image encoded as PNG bytes.
std::vector<uint8_t> encode_png(const Image& img);

}  // namespace kiln::cli
