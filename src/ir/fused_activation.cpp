#include "ir/fused_activation.h"

#include <vector>

#include "kiln/error.h"

namespace kiln::ir {

FusedActivation FusedActivation::from_node(const Node& n) {
  FusedActivation act;
  if (!n.has("activation")) return act;
  const std::string s = n.s("activation", "");
  const std::vector<float> p = n.floats("activation_params");
  auto need = [&](size_t k) {
    if (p.size() != k)
      throw_bad_input(n.label() + ": fused activation '" + s + "' needs " + std::to_string(k) +
                      " activation_params, got " + std::to_string(p.size()));
  };
  if (s == "Relu") { need(0); act.kind = kRelu; }
  else if (s == "LeakyRelu") { need(1); act.kind = kLeakyRelu; act.a = p[0]; }
  else if (s == "Clip") { need(2); act.kind = kClip; act.a = p[0]; act.b = p[1]; }
  else if (s == "Sigmoid") { need(0); act.kind = kSigmoid; }
  else if (s == "HardSigmoid") { need(2); act.kind = kHardSigmoid; act.a = p[0]; act.b = p[1]; }
  else if (s == "HardSwish") { need(0); act.kind = kHardSwish; }
  else if (s == "Tanh") { need(0); act.kind = kTanh; }
  else if (s == "SiLU") { need(0); act.kind = kSiLU; }
  else throw_unsupported(n.label() + ": fused activation '" + s + "' is not supported");
  return act;
}

std::string FusedActivation::name() const {
  static const char* const names[] = {"", "relu", "leakyrelu", "clip", "sigmoid", "hardsigmoid", "hardswish",
                                      "tanh", "silu"};
  return names[int(kind)];
}

}  // namespace kiln::ir
