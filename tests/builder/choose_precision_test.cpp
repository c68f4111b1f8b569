// Per-layer FP16/FP32 choice of CUDA builds, without a GPU: the decision on
// hand-made times (the expected answers are worked out in the comments and
// checked against an exhaustive search over a cost model written here). The
// graph side is in precision_search_test.cpp.
#include <gtest/gtest.h>

#ifdef KILN_WITH_CUDA

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "builder/cuda/choose_precision.h"

namespace kiln {
namespace {

using cuda_build::PrecisionChoice;
using cuda_build::PrecisionLayer;
using cuda_build::PrecisionProblem;
using cuda_build::PrecisionRead;
using cuda_build::PrecisionTensor;

// ---- an independent cost model and exhaustive search ----

// Sum of layer times in their precision, plus per tensor one conversion if
// any reader's precision differs from storage, plus one layout change if an
// FP16 reader marked relayout reads FP16 storage. A producer in FP32 that
// follows its reads stores FP16, for wide_ms, as soon as one reader reads
// FP16; an FP32 reader marked either_in_fp32 reads whatever is stored, for
// wide_ms if that is FP16.
double oracle_cost(const PrecisionProblem& p, const std::vector<bool>& x, bool margins) {
  double total = 0;
  for (size_t i = 0; i < p.layers.size(); ++i) {
    const PrecisionLayer& l = p.layers[i];
    if (x[i]) {
      total += l.fp16_ms;
    } else {
      total += l.fp32_ms;
      if (margins && l.pin == PrecisionLayer::kFree) total += p.fp32_margin_ms + p.fp32_margin_rel * l.fp16_ms;
    }
  }
  for (const PrecisionTensor& t : p.tensors) {
    bool stored = t.producer < 0 ? t.fp16 : bool(x[size_t(t.producer)]);
    int fp16_reads = 0;
    auto reads16 = [&](const PrecisionRead& r) { return r.layer < 0 ? r.fp16 : bool(x[size_t(r.layer)]); };
    for (const PrecisionRead& r : t.reads) fp16_reads += reads16(r);
    if (t.producer >= 0 && !stored && t.follows_reads && fp16_reads > 0) {
      stored = true;
      total += t.wide_ms;
    }
    bool wide_read = false;
    int differing = 0, relayouts = 0;
    for (const PrecisionRead& r : t.reads) {
      const bool read = reads16(r);
      if (r.either_in_fp32 && !read) {  // takes whatever is stored
        wide_read = wide_read || stored;
        continue;
      }
      differing += read != stored;
      relayouts += read && stored && r.relayout;
    }
    if (wide_read) total += t.wide_ms;
    if (differing) total += t.reformat_ms;
    if (relayouts) total += t.relayout_ms;
  }
  return total;
}

bool allowed(const PrecisionProblem& p, const std::vector<bool>& x) {
  for (size_t i = 0; i < x.size(); ++i) {
    if (p.layers[i].pin == PrecisionLayer::kFp16 && !x[i]) return false;
    if (p.layers[i].pin == PrecisionLayer::kFp32 && x[i]) return false;
  }
  return true;
}

double brute_force_best(const PrecisionProblem& p) {
  const size_t n = p.layers.size();
  double best = 1e30;
  for (uint32_t mask = 0; mask < (1u << n); ++mask) {
    std::vector<bool> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = (mask >> i) & 1;
    if (allowed(p, x)) best = std::min(best, oracle_cost(p, x, true));
  }
  return best;
}

// ---- building problems by hand ----

struct Make {
  PrecisionProblem p;
  int layer(const std::string& name, double fp16, double fp32, PrecisionLayer::Pin pin = PrecisionLayer::kFree) {
    PrecisionLayer l;
    l.name = name;
    l.fp16_ms = fp16;
    l.fp32_ms = fp32;
    l.pin = pin;
    p.layers.push_back(l);
    return int(p.layers.size()) - 1;
  }
  // producer -1: a model input stored in `fixed16`'s precision.
  int tensor(const std::string& name, int producer, double reformat, double relayout = 0, bool fixed16 = false) {
    PrecisionTensor t;
    t.name = name;
    t.producer = producer;
    t.fp16 = fixed16;
    t.reformat_ms = reformat;
    t.relayout_ms = relayout;
    p.tensors.push_back(t);
    return int(p.tensors.size()) - 1;
  }
  void read(int tensor, int layer, bool relayout = false) { p.tensors[size_t(tensor)].reads.push_back({layer, false, relayout}); }
  void read_fixed(int tensor, bool fp16 = false) { p.tensors[size_t(tensor)].reads.push_back({-1, fp16, false}); }
};

// x (model input, FP32) -> A -> t1 -> B -> t2 -> C -> y (model output, FP32).
Make chain(double b16, double b32, PrecisionLayer::Pin pin_a = PrecisionLayer::kFree,
           PrecisionLayer::Pin pin_b = PrecisionLayer::kFree) {
  Make m;
  const int a = m.layer("A", 1.0, 3.0, pin_a), b = m.layer("B", b16, b32, pin_b), c = m.layer("C", 1.0, 3.0);
  const int x = m.tensor("x", -1, 0.05), t1 = m.tensor("t1", a, 0.1), t2 = m.tensor("t2", b, 0.1);
  const int y = m.tensor("y", c, 0.05);
  m.read(x, a);
  m.read(t1, b);
  m.read(t2, c);
  m.read_fixed(y);
  return m;
}

std::vector<bool> bools(std::initializer_list<int> v) {
  std::vector<bool> out;
  for (int x : v) out.push_back(x != 0);
  return out;
}

// Checks the answer and that it is also what exhaustive search finds.
void expect_choice(const PrecisionProblem& p, const std::vector<bool>& want, double want_ms) {
  const PrecisionChoice c = cuda_build::choose_precision(p);
  EXPECT_EQ(c.fp16, want);
  EXPECT_NEAR(c.ms, want_ms, 1e-9);
  EXPECT_NEAR(oracle_cost(p, want, false), want_ms, 1e-9) << "hand-computed total disagrees with the model";
  EXPECT_NEAR(oracle_cost(p, want, true), brute_force_best(p), 1e-9) << "the expected answer is not optimal";
  std::vector<bool> all16;
  for (auto& l : p.layers) all16.push_back(l.pin != PrecisionLayer::kFp32);
  EXPECT_NEAR(c.all_fp16_ms, oracle_cost(p, all16, false), 1e-9);
  EXPECT_NEAR(cuda_build::modeled_ms(p, want), want_ms, 1e-9);
}

TEST(ChoosePrecision, LayerFasterInFp32Switches) {
  // B saves 0.5 ms in FP32; the conversions of t1 and t2 cost 0.2.
  // All FP16: 1 + 1 + 1 + x 0.05 + y 0.05 = 3.1. B in FP32: 2.5 + 0.1 + 0.2 = 2.8.
  expect_choice(chain(1.0, 0.5).p, bools({1, 0, 1}), 2.8);
}

TEST(ChoosePrecision, SmallGainDoesNotPayForTwoReformats) {
  // B saves 0.15 ms in FP32 but would add two 0.1 ms conversions.
  expect_choice(chain(1.0, 0.85).p, bools({1, 1, 1}), 3.1);
}

TEST(ChoosePrecision, RunOfLayersSwitchesTogether) {
  // x -> A -> B1 -> B2 -> B3 -> C -> y; each B saves 0.08 in FP32, every
  // inner tensor costs 0.1 to convert. One or two B's alone lose (0.08 or
  // 0.16 < 0.2); all three win 0.24 - 0.2 = 0.04.
  Make m;
  const int a = m.layer("A", 1, 3), b1 = m.layer("B1", 1, 0.92), b2 = m.layer("B2", 1, 0.92);
  const int b3 = m.layer("B3", 1, 0.92), c = m.layer("C", 1, 3);
  const int x = m.tensor("x", -1, 0.05), ta = m.tensor("ta", a, 0.1), t1 = m.tensor("t1", b1, 0.1);
  const int t2 = m.tensor("t2", b2, 0.1), t3 = m.tensor("t3", b3, 0.1), y = m.tensor("y", c, 0.05);
  m.read(x, a), m.read(ta, b1), m.read(t1, b2), m.read(t2, b3), m.read(t3, c), m.read_fixed(y);
  // 1 + 3 * 0.92 + 1 + 0.05 + 0.05 + 0.1 (ta) + 0.1 (t3) = 5.06
  expect_choice(m.p, bools({1, 0, 0, 0, 1}), 5.06);
}

TEST(ChoosePrecision, Fp32IslandThatDoesNotPayGoesBackToFp16) {
  // Two independent chains. The first needs its three B's switched together
  // (RunOfLayersSwitchesTogether: 5.06), which only the start from each
  // layer's faster precision finds. In the second, E1 and E2 are each 0.05
  // faster in FP32, so that start makes them an FP32 island costing two
  // conversions (0.2) for a gain of 0.1; flipping either one back alone
  // does not help (+0.05), only the island as a whole does. Optimal second
  // chain: all FP16, 4 + x2 0.05 + y2 0.05 = 4.1.
  Make m;
  const int a = m.layer("A", 1, 3), b1 = m.layer("B1", 1, 0.92), b2 = m.layer("B2", 1, 0.92);
  const int b3 = m.layer("B3", 1, 0.92), c = m.layer("C", 1, 3);
  const int x = m.tensor("x", -1, 0.05), ta = m.tensor("ta", a, 0.1), t1 = m.tensor("t1", b1, 0.1);
  const int t2 = m.tensor("t2", b2, 0.1), t3 = m.tensor("t3", b3, 0.1), y = m.tensor("y", c, 0.05);
  m.read(x, a), m.read(ta, b1), m.read(t1, b2), m.read(t2, b3), m.read(t3, c), m.read_fixed(y);
  const int d = m.layer("D", 1, 3), e1 = m.layer("E1", 1, 0.95), e2 = m.layer("E2", 1, 0.95), f = m.layer("F", 1, 3);
  const int x2 = m.tensor("x2", -1, 0.05), td = m.tensor("td", d, 0.1), te1 = m.tensor("te1", e1, 0.1);
  const int te2 = m.tensor("te2", e2, 0.1), y2 = m.tensor("y2", f, 0.05);
  m.read(x2, d), m.read(td, e1), m.read(te1, e2), m.read(te2, f), m.read_fixed(y2);
  expect_choice(m.p, bools({1, 0, 0, 0, 1, 1, 1, 1, 1}), 5.06 + 4.1);
}

TEST(ChoosePrecision, PinnedLayersObey) {
  // B would switch (see LayerFasterInFp32Switches) but --fp16-layer pins it;
  // A is slower in FP32 but --fp32-layer pins it. Then: x read FP32 by A
  // (no conversion), t1 converted for B (0.1); C stays FP16 (1 + y 0.05
  // beats 3 + t2 0.1). Total 3 + 1 + 0.1 + 1 + 0.05 = 5.15.
  expect_choice(chain(1.0, 0.5, PrecisionLayer::kFp32, PrecisionLayer::kFp16).p, bools({0, 1, 1}), 5.15);
}

TEST(ChoosePrecision, FreeLayerNextToPinnedFp32FollowsIt) {
  // x (FP32) -> R (a view: no time either way) -> t -> P (--fp32-layer) -> y.
  // R in FP16 needs x and t converted (0.1); in FP32 nothing.
  Make m;
  const int r = m.layer("R", 0, 0), pl = m.layer("P", 0.5, 1.0, PrecisionLayer::kFp32);
  const int x = m.tensor("x", -1, 0.05), t = m.tensor("t", r, 0.05), y = m.tensor("y", pl, 0.05);
  m.read(x, r), m.read(t, pl), m.read_fixed(y);
  expect_choice(m.p, bools({0, 0}), 1.0);
}

TEST(ChoosePrecision, LayoutChangeCountsAgainstFp16Readers) {
  // x -> conv (channels-last in FP16) -> c -> relu -> r -> G (row-major) -> y.
  // G is slower in FP32 alone (0.25 vs 0.2), but reading r in FP16 costs a
  // 0.3 ms layout change and its output a conversion back to FP32:
  //   relu16 G16: 0.1 + 0.2 + 0.3 + 0.05 = 0.65     relu16 G32: 0.1 + 0.25 + 0.1 = 0.45
  //   relu32 G32: 0.2 + 0.25 + 0.1 = 0.55           relu32 G16: 0.2 + 0.2 + 0.1 + 0.1 + 0.05 = 0.65
  // plus conv 1.0 and x 0.05 in every case: 1.5.
  Make m;
  const int conv = m.layer("conv", 1.0, 2.0), relu = m.layer("relu", 0.1, 0.2), g = m.layer("G", 0.2, 0.25);
  const int x = m.tensor("x", -1, 0.05), c = m.tensor("c", conv, 0.1), r = m.tensor("r", relu, 0.1, 0.3);
  const int y = m.tensor("y", g, 0.05);
  m.read(x, conv), m.read(c, relu), m.read(r, g, true), m.read_fixed(y);
  expect_choice(m.p, bools({1, 1, 0}), 1.5);
}

TEST(ChoosePrecision, OneConversionServesEveryReader) {
  // A (--fp16-layer) -> t -> B -> yB, t -> C -> yC. B alone in FP32 saves
  // 0.15 + 0.05 (yB no longer converted) < 0.25 for t's conversion; B and C
  // together save 0.4 and share that one conversion.
  Make m;
  const int a = m.layer("A", 1, 2, PrecisionLayer::kFp16), b = m.layer("B", 1, 0.85), c = m.layer("C", 1, 0.85);
  const int t = m.tensor("t", a, 0.25), yb = m.tensor("yB", b, 0.05), yc = m.tensor("yC", c, 0.05);
  m.read(t, b), m.read(t, c), m.read_fixed(yb), m.read_fixed(yc);
  expect_choice(m.p, bools({1, 0, 0}), 1 + 0.85 + 0.85 + 0.25);
}

TEST(ChoosePrecision, ProducerThatFollowsItsReadsPaysItsWiderStoresNotAConversion) {
  // x (FP16 input) -> A -> t -> B -> y (read FP16). A is 0.5 ms faster in
  // FP32, B 1 ms slower. A alone in FP32 costs x's conversion (0.1) and t's
  // (0.45): 0.5 + 1 + 0.55 + y 0 = 2.05 > 2.0 all FP16. When A can store t
  // in FP16 itself for 0.05 more, A in FP32 wins: 0.5 + 1 + 0.1 + 0.05.
  Make m;
  const int a = m.layer("A", 1.0, 0.5), b = m.layer("B", 1.0, 2.0);
  const int x = m.tensor("x", -1, 0.1, 0, true), t = m.tensor("t", a, 0.45), y = m.tensor("y", b, 0.1);
  m.read(x, a), m.read(t, b), m.read_fixed(y, true);
  expect_choice(m.p, bools({1, 1}), 2.0);
  m.p.tensors[size_t(t)].follows_reads = true;
  m.p.tensors[size_t(t)].wide_ms = 0.05;
  expect_choice(m.p, bools({0, 1}), 1.65);
}

TEST(ChoosePrecision, MarginKeepsNearTiesInFp16) {
  // One layer, no tensors: FP32 is 0.01 ms faster. The margin (0.0002 ms +
  // 2% of 1 ms) keeps FP16; without a margin FP32 wins.
  Make m;
  m.layer("L", 1.0, 0.99);
  m.p.fp32_margin_ms = 0.0002;
  m.p.fp32_margin_rel = 0.02;
  EXPECT_EQ(cuda_build::choose_precision(m.p).fp16, bools({1}));
  m.p.fp32_margin_ms = 0;
  m.p.fp32_margin_rel = 0;
  EXPECT_EQ(cuda_build::choose_precision(m.p).fp16, bools({0}));
}

TEST(ChoosePrecision, EverythingFp32WhenEveryLayerIsFaster) {
  // Every layer a bit faster in FP32, and in FP32 nothing needs converting.
  Make m;
  const int a = m.layer("A", 1, 0.9), b = m.layer("B", 1, 0.9), c = m.layer("C", 1, 0.9);
  const int x = m.tensor("x", -1, 0.5), t1 = m.tensor("t1", a, 0.5), t2 = m.tensor("t2", b, 0.5);
  const int y = m.tensor("y", c, 0.5);
  m.read(x, a), m.read(t1, b), m.read(t2, c), m.read_fixed(y);
  expect_choice(m.p, bools({0, 0, 0}), 2.7);
}

TEST(ChoosePrecision, RandomProblemsNeverWorseThanEitherStartAndObeyPins) {
  std::mt19937 rng(7), follows(11);
  std::uniform_real_distribution<double> ms(0.0, 1.0), small(0.0, 0.3);
  int optimal = 0;
  const int cases = 300;
  for (int k = 0; k < cases; ++k) {
    Make m;
    const int n = 2 + int(rng() % 9);
    for (int i = 0; i < n; ++i) {
      const int pin = int(rng() % 6);  // mostly free
      m.layer("L" + std::to_string(i), ms(rng), ms(rng),
              pin == 0 ? PrecisionLayer::kFp16 : pin == 1 ? PrecisionLayer::kFp32 : PrecisionLayer::kFree);
    }
    const int inputs = 1 + int(rng() % 2);
    for (int i = 0; i < inputs; ++i) {
      const int t = m.tensor("in" + std::to_string(i), -1, small(rng));
      m.read(t, int(rng() % uint32_t(n)));
    }
    for (int i = 0; i < n; ++i) {  // each layer's output read by 1-2 later layers or the model
      const int t = m.tensor("t" + std::to_string(i), i, small(rng), small(rng));
      m.p.tensors[size_t(t)].follows_reads = follows() % 3 == 0;
      m.p.tensors[size_t(t)].wide_ms = small(follows);
      const int readers = 1 + int(rng() % 2);
      for (int r = 0; r < readers; ++r) {
        if (i + 1 < n && rng() % 4) m.read(t, i + 1 + int(rng() % uint32_t(n - i - 1)), rng() % 3 == 0);
        else m.read_fixed(t);
        if (follows() % 4 == 0) m.p.tensors[size_t(t)].reads.back().either_in_fp32 = true;
      }
    }
    m.p.fp32_margin_ms = 0.001;
    m.p.fp32_margin_rel = 0.01;
    const PrecisionProblem& p = m.p;
    const PrecisionChoice c = cuda_build::choose_precision(p);
    ASSERT_EQ(c.fp16.size(), size_t(n));
    EXPECT_TRUE(allowed(p, c.fp16)) << "case " << k;
    EXPECT_NEAR(c.ms, oracle_cost(p, c.fp16, false), 1e-9) << "case " << k;
    std::vector<bool> all16(static_cast<size_t>(n)), own(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      const PrecisionLayer& l = p.layers[size_t(i)];
      all16[size_t(i)] = l.pin != PrecisionLayer::kFp32;
      own[size_t(i)] = l.pin == PrecisionLayer::kFree ? !(l.fp32_ms + 0.001 + 0.01 * l.fp16_ms < l.fp16_ms)
                                                       : all16[size_t(i)];
    }
    const double got = oracle_cost(p, c.fp16, true);
    EXPECT_LE(got, oracle_cost(p, all16, true) + 1e-9) << "case " << k;
    EXPECT_LE(got, oracle_cost(p, own, true) + 1e-9) << "case " << k;
    const double best = brute_force_best(p);
    EXPECT_GE(got, best - 1e-9) << "case " << k;
    optimal += got <= best + 1e-9;
  }
  // A local search: not always the optimum, but nearly always on graphs this small.
  EXPECT_GE(optimal, cases * 9 / 10);
}

}  // namespace
}  // namespace kiln

#endif  // KILN_WITH_CUDA
