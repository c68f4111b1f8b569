// kiln FusedElementwise on the GPU: the node's op chain becomes an
// interpreter Program (elementwise_ops.cuh) evaluated per output element in
// registers, so a chain costs one read of each input and one write. Unlike
// the CPU kernel, ops before a broadcast are simply recomputed per output
// element: on the GPU that is cheaper than a second pass over memory.
#include "backends/cuda/elementwise_ops.cuh"
#include "kiln/error.h"

namespace kiln::cuda::ew {

namespace {

const ir::Attribute* list_attr(const ir::Node& n, const char* name, ir::Attribute::Kind kind) {
  auto it = n.attrs.find(name);
  return it == n.attrs.end() || it->second.kind != kind ? nullptr : &it->second;
}

std::vector<Tactic> fused_tactics(const ir::Node& n, std::string* why) {
  auto fail = [&](const std::string& m) {
    if (why) *why = m;
    return std::vector<Tactic>{};
  };
  using K = ir::Attribute::Kind;
  const ir::Attribute* ops = list_attr(n, "ops", K::kStrings);
  const ir::Attribute* operand = list_attr(n, "operand", K::kInts);
  const ir::Attribute* swap = list_attr(n, "swap", K::kInts);
  const ir::Attribute* alpha = list_attr(n, "alpha", K::kFloats);
  const ir::Attribute* beta = list_attr(n, "beta", K::kFloats);
  // Shape inference validated these; a plan file could still carry anything.
  if (!ops || !operand || !swap || !alpha || !beta)
    throw_bad_input(n.label() + ": attributes ops/operand/swap/alpha/beta are missing or have the wrong type");
  const size_t m = ops->strings.size();
  if (m == 0 || operand->ints.size() != m || swap->ints.size() != m || alpha->floats.size() != m ||
      beta->floats.size() != m)
    throw_bad_input(n.label() + ": attributes ops/operand/swap/alpha/beta must have one entry per op");
  if (m > size_t(kMaxSteps))
    return fail(std::to_string(m) + " fused ops; the CUDA kernel interprets at most " + std::to_string(kMaxSteps) +
                " (split the chain)");
  if (n.inputs.size() > size_t(kMaxInputs))
    return fail(std::to_string(n.inputs.size()) + " inputs; the CUDA kernel takes at most " +
                std::to_string(kMaxInputs));
  Program prog;
  prog.n = int(m);
  for (size_t j = 0; j < m; ++j) {
    Step& s = prog.s[j];
    const std::string at = n.label() + ": op " + std::to_string(j) + " '" + ops->strings[j] + "'";
    if (!op_of(ops->strings[j], &s.op)) throw_bad_input(at + " cannot be fused");
    const bool bin = is_binary(s.op);
    const int64_t k = operand->ints[j];
    if (bin ? (k < 0 || k >= int64_t(n.inputs.size())) : k != -1)
      throw_bad_input(at + " has a bad operand " + std::to_string(k));
    if (swap->ints[j] != 0 && (swap->ints[j] != 1 || !bin)) throw_bad_input(at + " has a bad swap flag");
    s.operand = int8_t(k);
    s.swap = uint8_t(swap->ints[j]);
    s.a = alpha->floats[j];
    s.b = beta->floats[j];
  }
  return program_tactics(n, prog, why);
}

}  // namespace

void register_fused_eltwise(Registry& r) {
  OpTraits t;
  for (int k = 0; k < kMaxInputs; ++k) t.fp16_inputs.push_back(k);
  t.any_layout = true;
  t.out_layout = OpTraits::kLikeInput0;
  r.add("FusedElementwise", fused_tactics, t, "kiln");
}

}  // namespace kiln::cuda::ew
