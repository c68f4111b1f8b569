// Numpy-style broadcasting for the element-wise kernels. A Plan collapses
// the output shape and the inputs' strides (0 along broadcast axes) so that
// adjacent axes that move together merge; the innermost collapsed axis is
// then walked as contiguous segments in which every input either advances
// with the output (stride 1) or stays put (stride 0). Kernels pick a loop for
// that stride pattern once per run and get long, vectorizable inner loops in
// the common cases (same shape, scalar operand, per-channel [1,C,1,1]).
#pragma once

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "backends/cpu/eltwise_util.h"

namespace kiln::cpu::bc {

constexpr int kMaxInputs = 3;

struct Plan {
  int num_inputs = 0;
  ir::Dims out;  // collapsed output dims, rank >= 1
  std::array<std::vector<int64_t>, kMaxInputs> strides;  // per collapsed axis, elements
  std::array<int64_t, kMaxInputs> inner_stride{};        // 0 or 1
  int64_t total = 0;
  int64_t inner = 1;
  // Bit k set when input k advances along the innermost axis.
  unsigned pattern() const;
  // "same_shape", "scalar", "channel" or "broadcast" (for tactic names).
  std::string kind() const;
};

// `ins` are broadcastable to `out` (checked by shape inference; rechecked
// here with kBadInput since run-time tensors reach this too).
Plan make_plan(const ir::Dims& out, const std::vector<const ir::Dims*>& ins);

// A plan made once when the kernel is created (from the node's inferred
// dims). get() returns it when the run-time dims match, else builds one into
// `scratch`; the kernel is never mutated at run time, so runs may overlap.
class PlanCache {
 public:
  void init(const ir::Dims& out, const std::vector<const ir::Dims*>& ins);
  const Plan& get(const ir::Dims& out, const std::vector<const ir::Dims*>& ins, Plan& scratch) const;
  const Plan& plan() const { return plan_; }

 private:
  std::vector<ir::Dims> key_;
  Plan plan_;
  bool valid_ = false;
};

// Calls seg(out_offset, in_offsets, n) for the contiguous output segments
// covering [begin, end): output elements out_offset .. out_offset+n-1 read
// input k from in_offsets[k] advancing by inner_stride[k].
template <class Seg> void for_segments(const Plan& p, int64_t begin, int64_t end, Seg&& seg) {
  if (begin >= end) return;
  const int r = int(p.out.size());
  const int64_t inner = p.inner;
  int64_t row = begin / inner, col = begin % inner;
  std::array<int64_t, 16> idx{};  // collapsed ranks are small; heap only beyond 16
  std::vector<int64_t> idx_big;
  int64_t* ix = r <= 16 ? idx.data() : (idx_big.assign(r, 0), idx_big.data());
  std::array<int64_t, kMaxInputs> base{};
  {
    int64_t rem = row;
    for (int d = r - 2; d >= 0; --d) {
      ix[d] = rem % p.out[d];
      rem /= p.out[d];
      for (int k = 0; k < p.num_inputs; ++k) base[k] += ix[d] * p.strides[k][d];
    }
  }
  std::array<int64_t, kMaxInputs> off{};
  int64_t pos = begin;
  while (pos < end) {
    int64_t n = std::min(inner - col, end - pos);
    for (int k = 0; k < p.num_inputs; ++k) off[k] = base[k] + col * p.inner_stride[k];
    seg(pos, off.data(), n);
    pos += n;
    col = 0;
    // Odometer step over the outer axes.
    for (int d = r - 2; d >= 0; --d) {
      for (int k = 0; k < p.num_inputs; ++k) base[k] += p.strides[k][d];
      if (++ix[d] < p.out[d]) break;
      for (int k = 0; k < p.num_inputs; ++k) base[k] -= ix[d] * p.strides[k][d];
      ix[d] = 0;
    }
  }
}

// out[i] = op(a[.], b[.]) over a plan of two inputs; the stride pattern is
// resolved once so each loop body is branch-free.
template <class A, class B, class R, class Op>
void binary_loop(const Plan& p, const A* a, const B* b, R* o, Op op) {
  auto drive = [&](auto sa, auto sb) {
    constexpr bool kA = decltype(sa)::value, kB = decltype(sb)::value;
    ew::parallel_range(p.total, [&](int64_t s, int64_t e) {
      for_segments(p, s, e, [&](int64_t off, const int64_t* io, int64_t n) {
        const A* pa = a + io[0];
        const B* pb = b + io[1];
        R* po = o + off;
        if constexpr (kA && kB) {
          for (int64_t i = 0; i < n; ++i) po[i] = op(pa[i], pb[i]);
        } else if constexpr (kA) {
          const B y = *pb;
          for (int64_t i = 0; i < n; ++i) po[i] = op(pa[i], y);
        } else if constexpr (kB) {
          const A x = *pa;
          for (int64_t i = 0; i < n; ++i) po[i] = op(x, pb[i]);
        } else {
          const R v = op(*pa, *pb);
          for (int64_t i = 0; i < n; ++i) po[i] = v;
        }
      });
    });
  };
  using T = std::true_type;
  using F = std::false_type;
  switch (p.pattern() & 3u) {
    case 3: drive(T{}, T{}); break;
    case 1: drive(T{}, F{}); break;
    case 2: drive(F{}, T{}); break;
    default: drive(F{}, F{}); break;
  }
}

}  // namespace kiln::cpu::bc
