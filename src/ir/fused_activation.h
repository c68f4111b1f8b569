// The activation a Conv or Gemm node carries after fusion (attributes
// `activation` and `activation_params`; see src/ir/ops/conv.cpp), decoded in
// one place for shape inference and every backend's epilogue. A plain struct,
// so GPU kernels take it by value.
#pragma once

#include <string>

#include "ir/graph.h"

namespace kiln::ir {

struct FusedActivation {
  enum Kind : int { kNone, kRelu, kLeakyRelu, kClip, kSigmoid, kHardSigmoid, kHardSwish, kTanh, kSiLU };
  Kind kind = kNone;
  float a = 0.f, b = 0.f;  // LeakyRelu alpha; Clip min, max; HardSigmoid alpha, beta

  // kNone without the attribute; throws kUnsupported naming the node for an
  // unknown name and kBadInput for the wrong number of parameters.
  static FusedActivation from_node(const Node& n);
  std::string name() const;  // "relu", ...; "" for none
};

}  // namespace kiln::ir
