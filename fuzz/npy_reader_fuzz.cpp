// libFuzzer target: arbitrary bytes as a NumPy .npy file (kiln::npy::parse).
// A kiln::Error is the expected answer to a malformed file; anything else is a bug.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kiln/error.h"
#include "npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  try {
    kiln::HostTensor t = kiln::npy::parse(bytes, "<fuzz>");
    // A parsed tensor must serialize again: exercises the shape/size it reports.
    (void)kiln::npy::serialize(t);
  } catch (const kiln::Error&) {
  }
  return 0;
}
