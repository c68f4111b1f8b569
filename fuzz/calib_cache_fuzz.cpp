// libFuzzer target: arbitrary bytes as an INT8 calibration cache
// (kiln::quant::parse_calibration_cache). A kiln::Error is the expected
// answer to a malformed cache; anything else is a bug. A cache that parses
// must format and parse back to the same scales.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kiln/error.h"
#include "quant/calibration_cache.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  kiln::quant::CalibrationCache cache;
  try {
    cache = kiln::quant::parse_calibration_cache(text, "<fuzz>");
  } catch (const kiln::Error&) {
    return 0;
  }
  try {
    const auto again = kiln::quant::parse_calibration_cache(kiln::quant::format_calibration_cache(cache), "<again>");
    if (again.scales != cache.scales) std::abort();  // round trip lost a scale
  } catch (const kiln::Error&) {
    // A header kiln reads but would not write (e.g. one with a line break
    // cannot parse at all) is the only acceptable refusal here.
    if (!cache.header.empty()) std::abort();
  }
  return 0;
}
