#include "image.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

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

Image load_image(const std::string& path) {
  // stbi_load accepts a missing file quietly as "can't fopen"; say which file.
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw_bad_input("cannot open image '" + path + "': no such file or not readable");
  int w = 0, h = 0, channels = 0;
  unsigned char* px = stbi_load_from_file(f, &w, &h, &channels, 3);
  std::fclose(f);
  if (!px) {
    const char* why = stbi_failure_reason();
    throw_bad_input("cannot decode image '" + path + "': " + (why ? why : "unknown format") +
                    " (give a PNG, JPEG, BMP, TGA, GIF or PNM file)");
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
