// The INT8 choice of CUDA builds apart from the timing: the problem built on
// a graph's structure (which tensors cost a reformat, which reads are free)
// and the answer for hand-made times. A ResNet-like run x -> a (1x1) -> b
// (3x3) -> c (1x1, residual x) -> y, where b alone is slower in INT8.
#include <gtest/gtest.h>

#ifdef KILN_WITH_CUDA

#include <map>
#include <set>
#include <string>

#include "builder/cuda/cuda_build.h"

namespace kiln {
namespace {

using cuda_build::Int8ReformatCost;
using cuda_build::int8_choice;
using cuda_build::int8_problem;

// The structure only: Conv nodes on activations of `count` elements; c's
// residual is x, or ta with `residual_ta`.
struct Chain {
  ir::Graph g;
  explicit Chain(int64_t count, bool residual_ta = false) {
    auto act = [&](const char* name) {
      ir::Value* v = g.add_value(name);
      v->dims = {count};
      return v;
    };
    ir::Value *x = act("x"), *ta = act("ta"), *tb = act("tb"), *y = act("y");
    g.inputs = {x};
    g.add_node("Conv", "a", {x}, {ta});
    g.add_node("Conv", "b", {ta}, {tb});
    g.add_node("Conv", "c", {tb, nullptr, nullptr, residual_ta ? ta : x}, {y});
    g.outputs = {y};
  }
};

const std::map<std::string, double> kInt8 = {{"a", 0.05}, {"b", 0.20}, {"c", 0.16}};
const std::map<std::string, double> kFloat = {{"a", 0.20}, {"b", 0.145}, {"c", 0.40}};

TEST(ChooseInt8, ReformatsOnlyWhereProducerAndQuantizedReaderMayDisagree) {
  Chain ch(1000000);
  Int8ReformatCost cost;
  const auto p = int8_problem(ch.g, kInt8, kFloat, {}, cost, 2);
  ASSERT_EQ(p.layers.size(), 3u);
  // x (read quantized by a, and as c's residual), ta, tb, y; every
  // one priced at 3 bytes per element plus a launch.
  ASSERT_EQ(p.tensors.size(), 4u);
  // An INT8 producer with a float reader writes float itself: one byte more
  // per element stored.
  for (const auto& t : p.tensors) {
    EXPECT_DOUBLE_EQ(t.reformat_ms, cost(1000000, 2)) << t.name;
    EXPECT_TRUE(t.follows_reads) << t.name;
    EXPECT_DOUBLE_EQ(t.wide_ms, 1000000 * cost.ms_per_byte) << t.name;
  }
  EXPECT_EQ(p.tensors[0].name, "x");
  ASSERT_EQ(p.tensors[0].reads.size(), 2u);  // a's quantized input, c's residual
  EXPECT_EQ(p.tensors[0].reads[0].layer, 0);
  EXPECT_FALSE(p.tensors[0].reads[0].either_in_fp32);
  EXPECT_EQ(p.tensors[0].reads[1].layer, 2);
  EXPECT_TRUE(p.tensors[0].reads[1].either_in_fp32);  // INT8 c reads int8 or float alike
  EXPECT_EQ(p.tensors[3].name, "y");
  ASSERT_EQ(p.tensors[3].reads.size(), 1u);  // the graph output reads float
  EXPECT_EQ(p.tensors[3].reads[0].layer, -1);
}

// b loses 0.055 ms in INT8 alone, but returning it to float makes a store
// its output wider (0.015 ms at 30M elements) and adds a quantize for c
// (0.048 ms): the whole run stays INT8.
TEST(ChooseInt8, ALayerSlowerAloneStaysInt8WhenItsReformatsCostMore) {
  Chain ch(30000000);
  std::map<std::string, std::string> why;
  const std::set<std::string> f = int8_choice(int8_problem(ch.g, kInt8, kFloat, {}, {}, 2), true, &why);
  EXPECT_TRUE(f.empty()) << *f.begin();
  EXPECT_EQ(why.at("b"), "int8 0.2000 ms vs fp16 0.1450 ms: int8");
}

// With tensors large enough that the reformats at the run's ends cost more
// than INT8 saves, everything stays float.
TEST(ChooseInt8, EverythingFloatWhenTheRunDoesNotPayForItsEnds) {
  Chain ch(200000000);
  const std::set<std::string> f = int8_choice(int8_problem(ch.g, kInt8, kFloat, {}, {}, 2), true, nullptr);
  EXPECT_EQ(f, (std::set<std::string>{"a", "b", "c"}));
}

// a and b win 0.25 ms in INT8, c loses. At 100M elements the quantize in
// front costs 0.153 ms; b writing its output in float for c costs 0.05 ms
// more than in int8, where a separate reformat would cost 0.153 ms: a and b
// run INT8 only because the model knows b writes float itself.
TEST(ChooseInt8, Int8RunIntoAFloatLayerPaysTheWiderStoresNotAReformat) {
  Chain ch(100000000);
  const std::map<std::string, double> int8 = {{"a", 0.05}, {"b", 0.10}, {"c", 0.50}};
  const std::map<std::string, double> fl = {{"a", 0.20}, {"b", 0.20}, {"c", 0.40}};
  const std::set<std::string> f = int8_choice(int8_problem(ch.g, int8, fl, {}, {}, 2), true, nullptr);
  EXPECT_EQ(f, (std::set<std::string>{"c"}));
}

// x -> a -> ta -> b -> tb -> c (residual ta) -> y. With c INT8, its
// residual read of int8 ta is free; with c float, a must store ta in float
// for it, and b then needs ta quantized: the model charges a's wider stores
// and a reformat, plus b's wider stores for c. With a float, INT8 c reads a
// float residual: its wider reads.
TEST(ChooseInt8, ResidualReadsFollowTheReadersPrecision) {
  const int64_t count = 1000000;
  Chain ch(count, true);
  Int8ReformatCost cost;
  const auto p = int8_problem(ch.g, kInt8, kFloat, {}, cost, 2);
  const double r = cost(count, 2), f = cost.wider(count, 2);
  // x quantized for a; y stored float by INT8 c.
  EXPECT_NEAR(cuda_build::modeled_ms(p, {false, false, false}), 0.05 + 0.20 + 0.16 + r + f, 1e-12);
  EXPECT_NEAR(cuda_build::modeled_ms(p, {false, false, true}), 0.05 + 0.20 + 0.40 + r + (f + r) + f, 1e-12);
  // With a float, ta is float: b needs it quantized, INT8 c reads it wide.
  EXPECT_NEAR(cuda_build::modeled_ms(p, {true, false, false}), 0.20 + 0.20 + 0.16 + (r + f) + f, 1e-12);
}

// A pinned layer stays INT8 and records what timing alone says.
TEST(ChooseInt8, PinnedLayerStaysInt8) {
  Chain ch(200000000);
  std::map<std::string, std::string> why;
  const std::set<std::string> f = int8_choice(int8_problem(ch.g, kInt8, kFloat, {"b"}, {}, 2), true, &why);
  EXPECT_FALSE(f.count("b"));
  EXPECT_EQ(why.at("b"), "int8 0.2000 ms vs fp16 0.1450 ms: float");
}

}  // namespace
}  // namespace kiln

#endif  // KILN_WITH_CUDA
