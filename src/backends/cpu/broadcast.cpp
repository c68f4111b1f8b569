#include "backends/cpu/broadcast.h"

namespace kiln::cpu::bc {

unsigned Plan::pattern() const {
  unsigned m = 0;
  for (int k = 0; k < num_inputs; ++k)
    if (inner_stride[k]) m |= 1u << k;
  return m;
}

std::string Plan::kind() const {
  const unsigned all = (1u << num_inputs) - 1;
  if (out.size() == 1) return pattern() == all ? "same_shape" : "scalar";
  // "channel": one input is constant along the inner run (a per-channel or
  // per-row value) and every other input is the output's own layout.
  std::vector<int64_t> dense(out.size());
  int64_t s = 1;
  for (size_t d = out.size(); d-- > 0;) dense[d] = s, s *= out[d];
  int runs = 0;
  for (int k = 0; k < num_inputs; ++k) {
    if (!inner_stride[k]) ++runs;
    else if (strides[k] != dense) return "broadcast";
  }
  return runs == 1 ? "channel" : "broadcast";
}

Plan make_plan(const ir::Dims& out, const std::vector<const ir::Dims*>& ins) {
  Plan p;
  p.num_inputs = int(ins.size());
  if (p.num_inputs > kMaxInputs) throw_internal("broadcast plan: too many inputs");
  const size_t r = out.size();
  p.total = ir::numel_of(out);

  // Full-rank strides per input: 0 where the input has extent 1.
  std::vector<std::vector<int64_t>> st(ins.size(), std::vector<int64_t>(r, 0));
  for (size_t k = 0; k < ins.size(); ++k) {
    const ir::Dims& d = *ins[k];
    if (d.size() > r) throw_bad_input("broadcast: input of shape " + shape_str(d) + " has higher rank than output " + shape_str(out));
    int64_t s = 1;
    for (size_t j = 0; j < d.size(); ++j) {
      size_t ax = r - 1 - j;
      int64_t dim = d[d.size() - 1 - j];
      if (dim != 1 && dim != out[ax])
        throw_bad_input("broadcast: input of shape " + shape_str(d) + " does not broadcast to " + shape_str(out));
      st[k][ax] = dim == 1 ? 0 : s;
      s *= dim;
    }
  }

  // Drop extent-1 axes, then merge neighbours that step together in every input.
  std::vector<int64_t> dims;
  std::vector<std::vector<int64_t>> cs(ins.size());
  for (size_t ax = 0; ax < r; ++ax) {
    if (out[ax] == 1) continue;
    bool merge = !dims.empty();
    for (size_t k = 0; merge && k < ins.size(); ++k) merge = cs[k].back() == st[k][ax] * out[ax];
    if (merge) {
      dims.back() *= out[ax];
      for (size_t k = 0; k < ins.size(); ++k) cs[k].back() = st[k][ax];
    } else {
      dims.push_back(out[ax]);
      for (size_t k = 0; k < ins.size(); ++k) cs[k].push_back(st[k][ax]);
    }
  }
  if (dims.empty()) {
    dims.push_back(1);
    for (auto& c : cs) c.push_back(0);
  }
  p.out = dims;
  p.inner = dims.back();
  for (size_t k = 0; k < ins.size(); ++k) {
    p.strides[k] = cs[k];
    p.inner_stride[k] = cs[k].back() ? 1 : 0;
  }
  return p;
}

void PlanCache::init(const ir::Dims& out, const std::vector<const ir::Dims*>& ins) {
  plan_ = make_plan(out, ins);
  key_.assign(1, out);
  for (auto* d : ins) key_.push_back(*d);
  valid_ = true;
}

const Plan& PlanCache::get(const ir::Dims& out, const std::vector<const ir::Dims*>& ins, Plan& scratch) const {
  bool same = valid_ && key_.size() == ins.size() + 1 && key_[0] == out;
  for (size_t k = 0; same && k < ins.size(); ++k) same = key_[k + 1] == *ins[k];
  if (same) return plan_;
  scratch = make_plan(out, ins);
  return scratch;
}

}  // namespace kiln::cpu::bc
