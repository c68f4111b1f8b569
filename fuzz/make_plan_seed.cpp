// Writes a plan seed for plan_reader_fuzz: builds a CPU engine from a small
// ONNX model. Usage: make_plan_seed <model.onnx> <out.plan>
#include <cstdio>
#include <fstream>
#include <vector>

#include "kiln/kiln.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <model.onnx> <out.plan>\n", argv[0]);
    return 2;
  }
  try {
    auto net = kiln::parse_onnx(argv[1]);
    std::vector<uint8_t> plan = kiln::Builder().build(*net);
    std::ofstream out(argv[2], std::ios::binary);
    out.write(reinterpret_cast<const char*>(plan.data()), static_cast<std::streamsize>(plan.size()));
    return out ? 0 : 1;
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  }
}
