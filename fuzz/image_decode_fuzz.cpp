// libFuzzer target: arbitrary bytes as an image file for `kiln detect`
// (tools/kiln/image.cpp: stb_image decoding with kiln's size limit), then the
// rest of detect's per-image path: resize + normalize into a network input,
// draw a box, encode the result as PNG. A kiln::Error is the expected answer
// to a bad file; anything else (a crash, a sanitizer report, an allocation
// over the fuzzer's malloc limit, another exception type) is a bug.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "image.h"
#include "kiln/error.h"

namespace {
// Far below kiln's real limit so every input decodes in milliseconds; the
// limit check itself is the same code. The real limit is tested in
// tests/engine/image_limits_test.cpp.
constexpr int64_t kFuzzMaxPixels = int64_t(1) << 20;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln::cli;
  try {
    Image img = decode_image(data, size, "<fuzz>", kFuzzMaxPixels);
    // A decoded image must be what it says: detect indexes rgb by width/height.
    if (img.width <= 0 || img.height <= 0 || int64_t(img.width) * img.height > kFuzzMaxPixels ||
        img.rgb.size() != size_t(img.width) * size_t(img.height) * 3)
      __builtin_trap();
    // An odd, non-square input size exercises both up- and down-sampling.
    std::vector<float> chw(3 * 5 * 7);
    Normalization norm;
    norm.bgr = (size & 1) != 0;
    to_chw_float(img, 7, 5, norm, chw.data());
    // A box partly outside the image, as a detector may return.
    const uint8_t color[3] = {255, 0, 0};
    draw_rect(img, -2.5, 0.5, img.width * 0.75, img.height + 3.0, color, 2);
    if (int64_t(img.width) * img.height <= 4096) (void)encode_png(img);
  } catch (const kiln::Error&) {
  }
  return 0;
}
