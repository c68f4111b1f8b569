// Precision assignment for INT8 builds: given an optimized FP32 graph and a
// scale per tensor (calibrated, or read from the model's Q/DQ pairs), every
// eligible Conv becomes a kiln::QConv (int8 activations, per-output-channel
// int8 weights, int32 accumulation, fused epilogue) and Reformat layers
// quantize or dequantize where int8 and float tensors meet.
//
// A Conv is eligible when it is a 2-D kernel-path Conv with constant FP32
// weights, its input has a scale and its name is not in keep_float. Its
// output stays int8 (requantized with the output's scale) when every reader
// takes int8 (another QConv's input or residual, or an int8 MaxPool) and it is
// not a graph output; otherwise the QConv writes float. A MaxPool whose input
// is int8 runs in int8 with its input's scale (max commutes with rounding).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::quant {

struct Int8Options {
  std::set<std::string> keep_float;  // layer names that stay FP32/FP16
  // Why a layer of keep_float stays float, for Int8Assignment::kept_float
  // (default "kept float by request").
  std::map<std::string, std::string> keep_reason;
};

struct Int8Assignment {
  int quantized = 0;   // Conv layers now QConv
  int int8_pools = 0;  // MaxPool layers running on int8
  int reformats = 0;   // quantize / dequantize layers inserted
  // Layers that stayed float, with why ("conv3: no scale for input 'x'").
  std::vector<std::string> kept_float;
};

// Rewrites `g` in place (shapes re-inferred for what changed). Scales must be
// finite and > 0 (kBadInput naming the tensor otherwise).
Int8Assignment assign_int8(ir::Graph& g, const std::map<std::string, float>& scales, const Int8Options& opts);

// The scales a model's folded Q/DQ pairs recorded (metadata "int8_scale/<tensor>").
std::map<std::string, float> recorded_qdq_scales(const ir::Graph& g);

}  // namespace kiln::quant
