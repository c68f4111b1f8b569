// Per-layer precision choice for FP16 builds, as a pure function of measured
// times (no GPU, no graph), so the rule can be tested on hand-made numbers.
//
// The model: a plan's time is the sum of its layers' times, each in the
// precision it runs, plus the Reformat layers that precision changes need.
// A tensor stored in one precision and read in the other costs one
// conversion (shared by every reader that wants it); a tensor stored in FP16
// and read in FP16 by a reader that wants another layout (a channels-last
// convolution feeding a row-major layer) costs one layout change. For the
// INT8 choice (INT8 in the FP32 role), a layer may instead handle float
// itself at the price of its wider bytes (PrecisionTensor::follows_reads,
// PrecisionRead::either_in_fp32). Layers pinned by the user never change;
// the rest are chosen to minimize the total.
#pragma once

#include <string>
#include <vector>

namespace kiln::cuda_build {

struct PrecisionLayer {
  std::string name;
  double fp16_ms = 0, fp32_ms = 0;  // best tactic time in each precision (0: elided layer)
  enum Pin { kFree, kFp16, kFp32 } pin = kFree;
};

struct PrecisionRead {
  int layer = -1;         // reads in this layer's precision; -1: always in `fp16`'s
  bool fp16 = false;      // the fixed precision when layer == -1
  bool relayout = false;  // reading it FP16 from FP16 storage also changes its layout
  bool either_in_fp32 = false;  // in the `fp32` role it reads either precision (an INT8 conv's residual)
};

struct PrecisionTensor {
  std::string name;
  int producer = -1;   // stored in this layer's precision; -1: always in `fp16`'s
  bool fp16 = false;   // the fixed precision when producer == -1
  std::vector<PrecisionRead> reads;
  double reformat_ms = 0;  // one conversion to the other precision
  double relayout_ms = 0;  // one FP16 layout change
  // Layers in the `fp32` role that handle this tensor in `fp16`'s precision
  // themselves (an INT8 conv writing float for a float reader, or reading a
  // float residual) take `wide_ms` longer each: a producer that
  // follows_reads stores in `fp16`'s precision whenever a read wants it
  // (only reads that then disagree cost a conversion), and an
  // either_in_fp32 read of `fp16` storage costs the same.
  bool follows_reads = false;
  double wide_ms = 0;
};

struct PrecisionProblem {
  std::vector<PrecisionLayer> layers;
  std::vector<PrecisionTensor> tensors;
  // A free layer leaves FP16 only for a gain above fp32_margin_ms +
  // fp32_margin_rel * fp16_ms: ties and timing noise keep FP16.
  double fp32_margin_ms = 0, fp32_margin_rel = 0;
};

struct PrecisionChoice {
  std::vector<bool> fp16;   // per layer
  double ms = 0;            // modeled time of the choice (margins not counted)
  double all_fp16_ms = 0;   // modeled time with every free layer in FP16
};

// Modeled time of an assignment (fp16[i] per layer; pins are not checked).
double modeled_ms(const PrecisionProblem& p, const std::vector<bool>& fp16);

// Local search from two starts (every free layer FP16; every free layer in
// its own faster precision), each improved by flipping single layers and
// whole connected groups of free layers that share a precision (so an FP32
// island whose gain does not pay for its reformats goes back to FP16, and a
// run of layers can switch together where one alone would not pay). The
// cheaper result wins, the all-FP16 start on ties.
PrecisionChoice choose_precision(const PrecisionProblem& p);

}  // namespace kiln::cuda_build
