// Per-layer FP16/FP32 choice (see choose_precision.h). The exact minimum is a
// binary problem with terms spanning several layers (one conversion shared by
// all readers of a tensor); plans have a few hundred layers, so a local search
// over single layers and connected same-precision groups, from two starts,
// finds the few switches that matter in microseconds.
#include "builder/cuda/choose_precision.h"

#include <algorithm>

#include "kiln/error.h"

namespace kiln::cuda_build {

namespace {

constexpr double kEps = 1e-9;  // below any measurable gain: stops float jitter from looping

class Search {
 public:
  explicit Search(const PrecisionProblem& p) : p_(p), touching_(p.layers.size()), mark_(p.tensors.size(), 0) {
    const int n = int(p.layers.size());
    auto check = [&](int i, const std::string& what) {
      if (i < -1 || i >= n) throw_internal("choose_precision: " + what + " names layer " + std::to_string(i));
    };
    for (size_t t = 0; t < p.tensors.size(); ++t) {
      const PrecisionTensor& x = p.tensors[t];
      check(x.producer, "tensor '" + x.name + "' producer");
      std::vector<int> ends;
      if (x.producer >= 0) ends.push_back(x.producer);
      for (const PrecisionRead& r : x.reads) {
        check(r.layer, "a read of '" + x.name + "'");
        if (r.layer >= 0) ends.push_back(r.layer);
      }
      std::sort(ends.begin(), ends.end());
      ends.erase(std::unique(ends.begin(), ends.end()), ends.end());
      for (int l : ends) touching_[size_t(l)].push_back(int(t));
      ends_.push_back(std::move(ends));
    }
  }

  bool free(size_t i) const { return p_.layers[i].pin == PrecisionLayer::kFree; }

  double margin(size_t i) const { return p_.fp32_margin_ms + p_.fp32_margin_rel * p_.layers[i].fp16_ms; }

  double layer_cost(size_t i, const std::vector<bool>& x, bool margins) const {
    const PrecisionLayer& l = p_.layers[i];
    if (x[i]) return l.fp16_ms;
    return l.fp32_ms + (margins && free(i) ? margin(i) : 0.0);
  }

  double tensor_cost(size_t t, const std::vector<bool>& x) const {
    const PrecisionTensor& v = p_.tensors[t];
    bool stored16 = v.producer >= 0 ? bool(x[size_t(v.producer)]) : v.fp16;
    double wide = 0;
    if (v.producer >= 0 && v.follows_reads && !stored16)
      for (const PrecisionRead& r : v.reads)
        if (r.layer >= 0 ? bool(x[size_t(r.layer)]) : r.fp16) {
          stored16 = true;
          wide = v.wide_ms;
          break;
        }
    bool convert = false, relayout = false, wide_read = false;
    for (const PrecisionRead& r : v.reads) {
      const bool read16 = r.layer >= 0 ? bool(x[size_t(r.layer)]) : r.fp16;
      if (!read16 && r.either_in_fp32) {
        wide_read = wide_read || stored16;
        continue;
      }
      if (read16 != stored16) convert = true;
      else if (read16 && r.relayout) relayout = true;
    }
    return wide + (wide_read ? v.wide_ms : 0.0) + (convert ? v.reformat_ms : 0.0) + (relayout ? v.relayout_ms : 0.0);
  }

  double total(const std::vector<bool>& x, bool margins) const {
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += layer_cost(i, x, margins);
    for (size_t t = 0; t < p_.tensors.size(); ++t) s += tensor_cost(t, x);
    return s;
  }

  // What flipping every layer in `set` saves (negative: it costs), margins
  // counted. Only the layers flipped and the tensors they touch change.
  double flip_gain(std::vector<bool>& x, const std::vector<int>& set) {
    ++stamp_;
    std::vector<int> tensors;
    for (int l : set)
      for (int t : touching_[size_t(l)])
        if (mark_[size_t(t)] != stamp_) mark_[size_t(t)] = stamp_, tensors.push_back(t);
    auto local = [&] {
      double s = 0;
      for (int l : set) s += layer_cost(size_t(l), x, true);
      for (int t : tensors) s += tensor_cost(size_t(t), x);
      return s;
    };
    const double before = local();
    for (int l : set) x[size_t(l)] = !x[size_t(l)];
    const double after = local();
    for (int l : set) x[size_t(l)] = !x[size_t(l)];
    return before - after;
  }

  // Maximal groups of free layers of one precision linked by tensors.
  std::vector<std::vector<int>> groups(const std::vector<bool>& x) const {
    std::vector<std::vector<int>> out;
    std::vector<bool> seen(x.size(), false);
    for (size_t s = 0; s < x.size(); ++s) {
      if (seen[s] || !free(s)) continue;
      std::vector<int> group{int(s)};
      seen[s] = true;
      for (size_t k = 0; k < group.size(); ++k)
        for (int t : touching_[size_t(group[k])])
          for (int l : ends_[size_t(t)])
            if (!seen[size_t(l)] && free(size_t(l)) && x[size_t(l)] == x[s]) {
              seen[size_t(l)] = true;
              group.push_back(l);
            }
      if (group.size() > 1) out.push_back(std::move(group));
    }
    return out;
  }

  void improve(std::vector<bool>& x) {
    // Every accepted move lowers the total, so this ends; the cap only
    // bounds pathological inputs.
    for (int round = 0; round < 100; ++round) {
      bool changed = false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!free(i) || flip_gain(x, {int(i)}) <= kEps) continue;
        x[i] = !x[i];
        changed = true;
      }
      for (const std::vector<int>& g : groups(x))
        if (flip_gain(x, g) > kEps) {
          for (int l : g) x[size_t(l)] = !x[size_t(l)];
          changed = true;
        }
      if (!changed) break;
    }
  }

 private:
  const PrecisionProblem& p_;
  std::vector<std::vector<int>> touching_;  // per layer: tensors it produces or reads
  std::vector<std::vector<int>> ends_;      // per tensor: layers whose precision it follows
  std::vector<int> mark_;
  int stamp_ = 0;
};

}  // namespace

double modeled_ms(const PrecisionProblem& p, const std::vector<bool>& fp16) {
  if (fp16.size() != p.layers.size()) throw_internal("modeled_ms: one precision per layer expected");
  return Search(p).total(fp16, false);
}

PrecisionChoice choose_precision(const PrecisionProblem& p) {
  Search s(p);
  const size_t n = p.layers.size();
  std::vector<bool> all16(n), own(n);
  for (size_t i = 0; i < n; ++i) {
    const PrecisionLayer& l = p.layers[i];
    all16[i] = l.pin != PrecisionLayer::kFp32;
    own[i] = l.pin == PrecisionLayer::kFree ? !(l.fp32_ms + s.margin(i) < l.fp16_ms) : all16[i];
  }
  PrecisionChoice c;
  c.all_fp16_ms = s.total(all16, false);
  std::vector<bool> a = all16, b = own;
  s.improve(a);
  s.improve(b);
  c.fp16 = s.total(b, true) < s.total(a, true) - kEps ? b : a;
  c.ms = s.total(c.fp16, false);
  return c;
}

}  // namespace kiln::cuda_build
