// libFuzzer target: arbitrary bytes as an ONNX model, through the same path
// kiln::parse_onnx takes (import, then shape inference with constant folding).
// A kiln::Error is the expected answer to a bad model; anything else (a crash,
// a sanitizer report, another exception type) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "kiln/kiln.h"

namespace {
// External-data references resolve against a folder that does not exist, so
// fuzz inputs can never read files from the machine running the fuzzer.
const char* kBaseDir = "/nonexistent-kiln-fuzz-dir";

struct Quiet : kiln::Logger {
  void log(kiln::Severity, const std::string&) override {}
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Quiet quiet;
  kiln::set_logger(&quiet);
  std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    kiln::NetworkPtr net = kiln::parse_onnx_bytes(bytes, kBaseDir);
    (void)kiln::summarize(*net);
  } catch (const kiln::Error&) {
  }
  return 0;
}
