// Writes a plan seed for plan_reader_fuzz: builds a CPU engine from a small
// ONNX model. Usage: make_plan_seed <model.onnx> <out.plan> [MIN OPT MAX]
// With MIN OPT MAX (a model with a symbolic batch), writes a batch-profile plan.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "kiln/kiln.h"

int main(int argc, char** argv) {
  if (argc != 3 && argc != 6) {
    std::fprintf(stderr, "usage: %s <model.onnx> <out.plan> [MIN OPT MAX]\n", argv[0]);
    return 2;
  }
  try {
    std::vector<uint8_t> plan;
    if (argc == 6) {
      const kiln::BatchProfile p{std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5])};
      plan = kiln::Builder().build_profile(argv[1], {}, p);
    } else {
      plan = kiln::Builder().build(*kiln::parse_onnx(argv[1]));
    }
    std::ofstream out(argv[2], std::ios::binary);
    out.write(reinterpret_cast<const char*>(plan.data()), static_cast<std::streamsize>(plan.size()));
    return out ? 0 : 1;
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  }
}
