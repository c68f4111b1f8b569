// Memory planner: lifetimes and reuse, views, concat elision, and engines
// whose outputs must not change when activations share one arena. Oracles:
// lifetimes recomputed here from the graph, a byte-level simulation of random
// graphs against per-value buffers, and hand-computed transpose/concat results.
#include "engine/memory_plan.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "builder/network.h"
#include "ir/op_registry.h"
#include "kiln/kiln.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using ir::Dims;
using ir::Value;

struct TestGraph {
  ir::Graph g;
  Value* val(const std::string& name, Dims dims) {
    Value* v = g.add_value(name);
    v->dims = std::move(dims);
    v->has_shape = true;
    return v;
  }
  Value* input(const std::string& name, Dims dims) {
    Value* v = val(name, std::move(dims));
    g.inputs.push_back(v);
    return v;
  }
  Value* constant(const std::string& name, Dims dims) { return g.add_constant(name, ir::Tensor(DataType::kFloat32, dims)); }
  ir::Node* op(const std::string& type, std::vector<Value*> ins, std::vector<Value*> outs, int64_t axis = 0) {
    ir::Node* n = g.add_node(type, type + std::to_string(g.nodes().size()), std::move(ins), std::move(outs));
    if (type == "Concat") n->attrs["axis"] = test::attr_i(axis);
    return n;
  }
};

// Recomputed here: written at the producer's step (inputs at 0), read until
// the last reader's step, graph outputs until after the last node.
std::map<const Value*, std::pair<int, int>> lifetimes(const ir::Graph& g) {
  std::map<const Value*, std::pair<int, int>> life;
  for (const Value* v : g.inputs) life[v] = {0, 0};
  for (size_t k = 0; k < g.nodes().size(); ++k) {
    const int step = int(k) + 1;
    for (const Value* v : g.nodes()[k]->inputs)
      if (v && !v->is_constant()) life.at(v).second = step;
    for (const Value* v : g.nodes()[k]->outputs) life[v] = {step, step};
  }
  for (const Value* v : g.outputs)
    if (!v->is_constant()) life.at(v).second = int(g.nodes().size()) + 1;
  return life;
}

// Values of different regions that are alive at the same step never share a
// byte, every value lies inside the arena, and no kernel overwrites its inputs.
void expect_sound(const ir::Graph& g, const MemoryPlan& p) {
  auto life = lifetimes(g);
  std::vector<std::pair<const Value*, ValuePlace>> all;
  for (auto& [v, l] : life) all.emplace_back(v, p.at(v));
  auto overlap = [](const ValuePlace& a, const ValuePlace& b) {
    return a.bytes > 0 && b.bytes > 0 && a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
  };
  for (size_t i = 0; i < all.size(); ++i) {
    const ValuePlace& a = all[i].second;
    EXPECT_GE(a.offset, 0);
    EXPECT_LE(a.offset + a.bytes, p.peak_bytes) << all[i].first->name;
    for (size_t j = i + 1; j < all.size(); ++j) {
      const ValuePlace& b = all[j].second;
      auto la = life[all[i].first], lb = life[all[j].first];
      if (a.region != b.region && la.first <= lb.second && lb.first <= la.second) {
        EXPECT_FALSE(overlap(a, b)) << all[i].first->name << " and " << all[j].first->name;
      }
    }
  }
  for (size_t k = 0; k < g.nodes().size(); ++k) {
    if (!p.runs(k)) continue;
    for (const Value* o : g.nodes()[k]->outputs)
      for (const Value* x : g.nodes()[k]->inputs)
        if (o && x && !x->is_constant()) {
          EXPECT_FALSE(overlap(p.at(o), p.at(x))) << g.nodes()[k]->label();
        }
  }
}

int64_t aligned(int64_t n) { return (n + 63) / 64 * 64; }

TEST(MemoryPlan, ChainReusesBuffers) {
  TestGraph t;
  Value* cur = t.input("x", {1, 8, 10, 10});  // 3200 bytes
  for (int k = 0; k < 6; ++k) {
    Value* next = t.val("v" + std::to_string(k), {1, 8, 10, 10});
    t.op("Relu", {cur}, {next});
    cur = next;
  }
  t.g.outputs = {cur};
  MemoryPlan p = plan_memory(t.g);
  expect_sound(t.g, p);
  // The input stays intact throughout; besides it, only a node's input and
  // output are alive at any step: three buffers.
  EXPECT_EQ(p.peak_bytes, 2 * aligned(3200) + 3200);
  EXPECT_EQ(p.launches(), 6);
  MemoryPlan naive = plan_memory(t.g, {false, false});
  expect_sound(t.g, naive);
  EXPECT_EQ(naive.peak_bytes, 6 * aligned(3200) + 3200);
  for (auto& r : p.regions) EXPECT_EQ(r.offset % 64, 0);
}

TEST(MemoryPlan, BranchKeepsLongLivedValueApart) {
  TestGraph t;
  Value* x = t.input("x", {256});
  Value* a = t.val("a", {256}), *b = t.val("b", {256}), *c = t.val("c", {256}), *d = t.val("d", {256});
  t.op("Relu", {x}, {a});
  t.op("Relu", {a}, {b});
  t.op("Relu", {b}, {c});
  t.op("Add", {c, a}, {d});  // a is read again at the last step
  t.g.outputs = {d};
  MemoryPlan p = plan_memory(t.g);
  expect_sound(t.g, p);
  EXPECT_EQ(p.peak_bytes, 4 * 1024);  // x (kept intact), a, plus two of the chain
  EXPECT_NE(p.at(a).offset, p.at(c).offset);
  EXPECT_NE(p.at(a).offset, p.at(d).offset);
}

TEST(MemoryPlan, ViewChainsAreElidedAndExtendTheirBase) {
  TestGraph t;
  Value* x = t.input("x", {2, 3, 4, 4});
  Value* a = t.val("a", {2, 3, 4, 4});
  Value* r1 = t.val("r1", {2, 48}), *r2 = t.val("r2", {96}), *r3 = t.val("r3", {1, 96});
  Value* r4 = t.val("r4", {96}), *r5 = t.val("r5", {96}), *b = t.val("b", {96}), *c = t.val("c", {96});
  t.op("Relu", {x}, {a});
  t.op("Flatten", {a}, {r1});
  t.op("Reshape", {r1, t.constant("shape", {1})}, {r2});
  t.op("Unsqueeze", {r2}, {r3});
  t.op("Squeeze", {r3}, {r4});
  t.op("Identity", {r4}, {r5});
  t.op("Relu", {x}, {b});  // written while a is still needed through r5
  t.op("Add", {r5, b}, {c});
  t.g.outputs = {c, r3};
  MemoryPlan p = plan_memory(t.g);
  expect_sound(t.g, p);
  for (size_t k = 1; k <= 5; ++k) EXPECT_EQ(p.nodes[k], NodeExec::kAlias) << k;
  EXPECT_EQ(p.launches(), 3);
  for (Value* v : {r1, r2, r3, r4, r5}) {
    EXPECT_EQ(p.at(v).offset, p.at(a).offset) << v->name;
    EXPECT_TRUE(p.at(v).view);
  }
  EXPECT_FALSE(p.at(a).view);
  // r3 is a graph output: a's bytes stay untouched to the end.
  const auto& region = p.regions[size_t(p.at(a).region)];
  EXPECT_EQ(region.last, int(t.g.nodes().size()) + 1);
  EXPECT_EQ(region.first, 1);
}

TEST(MemoryPlan, ViewsThatMustCopy) {
  TestGraph t;
  Value* x = t.input("x", {4, 4});
  Value* k = t.constant("k", {4, 4});
  Value* ck = t.val("ck", {16}), *vx = t.val("vx", {16}), *d = t.val("d", {4, 4}), *mask = t.val("mask", {4, 4});
  mask->dtype = DataType::kBool;
  t.op("Reshape", {k, t.constant("s1", {1})}, {ck});  // constant input: copied
  t.op("Reshape", {x, t.constant("s2", {1})}, {vx});  // graph input: the arena holds a copy, so a view
  t.op("Dropout", {x}, {d, mask});                    // writes a mask: runs
  auto scalar = [&](const char* name, DataType dt, double v) {
    ir::Tensor k(dt, {});
    if (dt == DataType::kBool) k.data<uint8_t>()[0] = uint8_t(v);
    else k.data<float>()[0] = float(v);
    return t.g.add_constant(name, k);
  };
  Value* on = scalar("on", DataType::kBool, 1), *off = scalar("off", DataType::kBool, 0);
  Value* half = scalar("half", DataType::kFloat32, 0.5), *zero = scalar("zero", DataType::kFloat32, 0);
  Value* mode = t.input("mode", {});
  mode->dtype = DataType::kBool;
  std::vector<Value*> d2;
  for (int i = 0; i < 5; ++i) d2.push_back(t.val("d2_" + std::to_string(i), {4, 4}));
  t.op("Dropout", {x}, {d2[0]});               // 3: inference: a view
  t.op("Dropout", {x, half, off}, {d2[1]});    // 4: a view
  t.op("Dropout", {x, zero, on}, {d2[2]});     // 5: training with ratio 0 drops nothing: a view
  t.op("Dropout", {x, half, on}, {d2[3]});     // 6: training: the kernel rejects it at run time
  t.op("Dropout", {x, half, mode}, {d2[4]});   // 7: decided at run time
  t.g.outputs = {ck, vx, d, mask, d2[0], d2[1], d2[2], d2[3], d2[4]};
  MemoryPlan p = plan_memory(t.g);
  expect_sound(t.g, p);
  EXPECT_EQ(p.nodes[0], NodeExec::kKernel);
  EXPECT_EQ(p.nodes[1], NodeExec::kAlias);
  EXPECT_EQ(p.nodes[2], NodeExec::kKernel);
  EXPECT_EQ(p.at(vx).offset, p.at(x).offset);
  for (size_t k : {3, 4, 5}) EXPECT_EQ(p.nodes[k], NodeExec::kAlias) << k;
  for (size_t k : {6, 7}) EXPECT_EQ(p.nodes[k], NodeExec::kKernel) << k;
}

// The SSD head: per-level Transpose -> Reshape feeding a Concat along the
// anchor axis with batch 1. Also used below by the engine test.
struct SsdHead {
  TestGraph t;
  Value *x0, *x1, *h0, *h1, *t0, *t1, *r0, *r1, *out, *side;
  SsdHead() {
    x0 = t.input("x0", {1, 4, 3, 3});
    x1 = t.input("x1", {1, 4, 2, 2});
    h0 = t.val("h0", {1, 4, 3, 3});
    h1 = t.val("h1", {1, 4, 2, 2});
    t0 = t.val("t0", {1, 3, 3, 4});
    t1 = t.val("t1", {1, 2, 2, 4});
    r0 = t.val("r0", {1, 18, 2});
    r1 = t.val("r1", {1, 8, 2});
    out = t.val("out", {1, 26, 2});
    side = t.val("side", {1, 8, 2});
    t.op("Relu", {x0}, {h0});
    t.op("Relu", {x1}, {h1});
    t.op("Transpose", {h0}, {t0})->attrs["perm"] = test::attr_ints({0, 2, 3, 1});
    t.op("Transpose", {h1}, {t1})->attrs["perm"] = test::attr_ints({0, 2, 3, 1});
    Value* shape = t.g.add_constant("shape", ir::Tensor::from_int64({1, -1, 2}, {3}));
    t.op("Reshape", {t0, shape}, {r0});
    t.op("Reshape", {t1, shape}, {r1});
    t.op("Concat", {r0, r1}, {out}, 1);
    t.op("Relu", {r1}, {side});  // a concat input with another reader
    t.g.outputs = {out, side};
  }
};

TEST(MemoryPlan, SsdHeadConcatIsWrittenInPlace) {
  SsdHead s;
  MemoryPlan p = plan_memory(s.t.g);
  expect_sound(s.t.g, p);
  EXPECT_EQ(p.nodes[4], NodeExec::kAlias);
  EXPECT_EQ(p.nodes[5], NodeExec::kAlias);
  EXPECT_EQ(p.nodes[6], NodeExec::kInConcat);
  EXPECT_EQ(p.launches(), 5);
  // The transposes write straight into their slices of the concat output.
  EXPECT_EQ(p.at(s.t0).offset, p.at(s.out).offset);
  EXPECT_EQ(p.at(s.t1).offset, p.at(s.out).offset + 18 * 2 * 4);
  EXPECT_EQ(p.at(s.r1).offset, p.at(s.t1).offset);
  EXPECT_TRUE(p.at(s.t0).view && p.at(s.t1).view && !p.at(s.out).view);
  // The concat's region is busy from the first transpose to the end.
  const auto& reg = p.regions[size_t(p.at(s.out).region)];
  EXPECT_EQ(reg.first, 3);
  EXPECT_EQ(reg.last, int(s.t.g.nodes().size()) + 1);
}

TEST(MemoryPlan, ConcatsThatMustCopy) {
  TestGraph t;
  Value* x = t.input("x", {2, 3, 4});
  Value* a = t.val("a", {2, 3, 4}), *b = t.val("b", {2, 5, 4}), *c2 = t.val("c2", {2, 8, 4});
  t.op("Relu", {x}, {a});
  t.op("Relu", {x}, {b});  // shapes are not checked by the planner
  t.op("Concat", {a, b}, {c2}, 1);  // batch 2: slices are not contiguous
  Value* y = t.input("y", {1, 4}), *u = t.val("u", {1, 4}), *w = t.val("w", {1, 4});
  Value* ck = t.constant("ck", {1, 4});
  Value* c3 = t.val("c3", {1, 8}), *c4 = t.val("c4", {1, 8}), *c5 = t.val("c5", {1, 8}), *c6 = t.val("c6", {1, 12});
  t.op("Relu", {y}, {u});
  t.op("Relu", {y}, {w});
  t.op("Concat", {u, ck}, {c3}, 1);  // a constant input
  t.op("Concat", {y, w}, {c4}, 1);   // a graph input
  t.op("Concat", {w, w}, {c5}, 1);   // the same value twice
  Value* e = t.val("e", {1, 4}), *f = t.val("f", {1, 4}), *c7 = t.val("c7", {1, 8});
  t.op("Relu", {y}, {e});
  t.op("Relu", {y}, {f});
  t.op("Concat", {e, f}, {c7}, 1);      // elided
  t.op("Concat", {c7, e}, {c6}, -1);    // another concat's output; e claimed twice
  t.g.outputs = {c2, c3, c4, c5, c6};
  MemoryPlan p = plan_memory(t.g);
  expect_sound(t.g, p);
  EXPECT_EQ(p.nodes[2], NodeExec::kKernel);
  EXPECT_EQ(p.nodes[5], NodeExec::kKernel);
  EXPECT_EQ(p.nodes[6], NodeExec::kKernel);
  EXPECT_EQ(p.nodes[7], NodeExec::kKernel);
  EXPECT_EQ(p.nodes[10], NodeExec::kKernel);  // e also fills a slot of c6
  EXPECT_EQ(p.nodes[11], NodeExec::kKernel);
}

TEST(MemoryPlan, NestedConcatInnerElided) {
  TestGraph t;
  Value* y = t.input("y", {1, 4});
  Value* e = t.val("e", {1, 4}), *f = t.val("f", {1, 4}), *g = t.val("g", {1, 4});
  Value* c1 = t.val("c1", {1, 8}), *c2 = t.val("c2", {1, 12});
  t.op("Relu", {y}, {e});
  t.op("Relu", {y}, {f});
  t.op("Relu", {y}, {g});
  t.op("Concat", {e, f}, {c1}, 1);
  t.op("Concat", {c1, g}, {c2}, 1);
  t.g.outputs = {c2};
  MemoryPlan p = plan_memory(t.g);
  expect_sound(t.g, p);
  EXPECT_EQ(p.nodes[3], NodeExec::kInConcat);
  EXPECT_EQ(p.nodes[4], NodeExec::kKernel);  // c1 is itself a view: copied
  EXPECT_EQ(p.at(f).offset, p.at(c1).offset + 16);
}

// Random graphs of elementwise ops, views and concats, executed byte by byte
// in the planned arena and with one buffer per value: results must agree.
struct RandomGraph {
  TestGraph t;
  std::vector<Value*> vals;
  explicit RandomGraph(uint32_t seed) {
    std::mt19937 rng(seed);
    auto pick = [&](size_t n) { return size_t(rng() % n); };
    auto recent = [&] { return vals[vals.size() - 1 - pick(std::min<size_t>(vals.size(), 6))]; };
    for (int i = 0; i < 2; ++i) vals.push_back(t.input("in" + std::to_string(i), {int64_t(1 + i), int64_t(3 + pick(20))}));
    for (int k = 0; k < 60; ++k) {
      Value* a = recent();
      const std::string name = "v" + std::to_string(k);
      const int kind = int(pick(10));
      if (kind < 3) {
        vals.push_back(t.val(name, a->dims));
        t.op("Relu", {a}, {vals.back()});
      } else if (kind < 5) {
        Value* b = a;
        for (Value* v : vals)
          if (v->dims == a->dims && pick(2)) b = v;
        vals.push_back(t.val(name, a->dims));
        t.op("Add", {a, b}, {vals.back()});
      } else if (kind < 7) {
        vals.push_back(t.val(name, a->dims));
        t.op(kind == 5 ? "Reshape" : "Identity", {a}, {vals.back()});
      } else {
        std::vector<Value*> ins{a};
        for (int j = 0; j < 3; ++j) {
          Value* b = recent();
          if (b->dims[0] == a->dims[0]) ins.push_back(b);
        }
        if (pick(4) == 0) ins.push_back(t.g.add_constant("k" + std::to_string(k), test::random_tensor(DataType::kFloat32, {a->dims[0], 2}, k)));
        int64_t cols = 0;
        for (Value* v : ins) cols += v->dims[1];
        if (cols > 512) ins.resize(1), cols = a->dims[1];  // keep sizes small
        vals.push_back(t.val(name, {a->dims[0], cols}));
        t.op("Concat", ins, {vals.back()}, 1);
      }
    }
    t.g.outputs = {vals.back(), vals[vals.size() / 2], vals[2 + pick(10)]};
  }

  // Runs the graph with float semantics; `at` gives each runtime value's data.
  template <typename At> void execute(const MemoryPlan* p, At at) {
    for (size_t k = 0; k < t.g.nodes().size(); ++k) {
      if (p && !p->runs(k)) continue;
      const ir::Node& n = *t.g.nodes()[k];
      auto src = [&](const Value* v) { return v->is_constant() ? v->constant->data<float>() : at(v); };
      float* o = at(n.outputs[0]);
      const int64_t numel = ir::numel_of(n.outputs[0]->dims);
      if (n.op_type == "Relu") {
        for (int64_t i = 0; i < numel; ++i) o[i] = src(n.inputs[0])[i] * 0.5f + 1.f;
      } else if (n.op_type == "Add") {
        for (int64_t i = 0; i < numel; ++i) o[i] = src(n.inputs[0])[i] + src(n.inputs[1])[i];
      } else if (n.op_type == "Concat") {
        const int64_t rows = n.outputs[0]->dims[0], cols = n.outputs[0]->dims[1];
        int64_t c0 = 0;
        for (const Value* v : n.inputs) {
          for (int64_t r = 0; r < rows; ++r)
            std::memcpy(o + r * cols + c0, src(v) + r * v->dims[1], size_t(v->dims[1]) * 4);
          c0 += v->dims[1];
        }
      } else {
        std::memcpy(o, src(n.inputs[0]), size_t(numel) * 4);
      }
    }
  }
};

TEST(MemoryPlan, RandomGraphsRunInTheArenaAsWithOwnBuffers) {
  int elided = 0;
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    RandomGraph rg(seed);
    MemoryPlan p = plan_memory(rg.t.g);
    expect_sound(rg.t.g, p);
    std::map<const Value*, std::vector<float>> own;
    for (const Value* v : rg.vals) own[v].assign(size_t(ir::numel_of(v->dims)), 0.f);
    std::vector<float> arena(size_t(p.peak_bytes / 4 + 16), -7.f);
    for (size_t i = 0; i < rg.t.g.inputs.size(); ++i) {
      const Value* v = rg.t.g.inputs[i];
      ir::Tensor x = test::random_tensor(DataType::kFloat32, v->dims, seed * 10 + uint32_t(i));
      std::memcpy(own[v].data(), x.raw(), x.nbytes());
      std::memcpy(arena.data() + p.at(v).offset / 4, x.raw(), x.nbytes());
    }
    rg.execute(nullptr, [&](const Value* v) { return own.at(v).data(); });
    rg.execute(&p, [&](const Value* v) { return arena.data() + p.at(v).offset / 4; });
    for (const Value* v : rg.t.g.outputs) {
      const float* got = arena.data() + p.at(v).offset / 4;
      ASSERT_EQ(std::memcmp(got, own[v].data(), own[v].size() * 4), 0) << "seed " << seed << " output " << v->name;
    }
    elided += int(rg.t.g.nodes().size()) - int(p.launches());
    // Same graph, same plan: the planner is deterministic.
    MemoryPlan again = plan_memory(rg.t.g);
    for (const Value* v : rg.vals) EXPECT_EQ(again.at(v).offset, p.at(v).offset);
  }
  EXPECT_GT(elided, 100);  // the graphs do exercise views and concats
}

// ---- engines: planned arena vs one buffer per value -------------------------

struct NoPlanScope {
  NoPlanScope() { setenv("KILN_NO_MEMORY_PLAN", "1", 1); }
  ~NoPlanScope() { unsetenv("KILN_NO_MEMORY_PLAN"); }
};

std::unique_ptr<Engine> engine_for(const std::vector<uint8_t>& plan, bool planned) {
  if (planned) return Runtime().deserialize(plan, "planned.plan");
  NoPlanScope scope;
  return Runtime().deserialize(plan, "naive.plan");
}

std::map<std::string, HostTensor> random_inputs(const Engine& e, uint32_t seed) {
  std::map<std::string, HostTensor> in;
  for (const TensorInfo& t : e.inputs()) in[t.name] = test::random_tensor(t.dtype, t.shape, seed++).to_host();
  return in;
}

TEST(MemoryPlanEngine, SsdHeadMatchesHandComputedConcat) {
  SsdHead s;
  ir::infer_shapes(s.t.g);
  Network net;
  net.graph = std::make_unique<ir::Graph>(std::move(s.t.g));
  BuilderConfig cfg;
  cfg.optimize = false;
  auto plan = Builder(cfg).build(net);
  auto planned = engine_for(plan, true), naive = engine_for(plan, false);
  NetworkSummary sum = planned->summary();
  EXPECT_EQ(sum.launches, 5);
  EXPECT_EQ(naive->summary().launches, 8);
  int elided = 0;
  for (auto& l : sum.layers) elided += l.elided;
  EXPECT_EQ(elided, 3);
  auto in = random_inputs(*planned, 3);
  auto ctx = planned->create_context();
  auto got = ctx->run(in);
  // out[0, a, c] = relu(x)[c, h, w] with a running over (level, h, w, c / 2).
  std::vector<float> want;
  for (const char* name : {"x0", "x1"}) {
    const HostTensor& x = in.at(name);
    const int64_t h = x.shape[2], w = x.shape[3];
    for (int64_t i = 0; i < h * w; ++i)
      for (int64_t c = 0; c < 4; ++c) want.push_back(std::max(0.f, x.as<float>()[c * h * w + i]));
  }
  ASSERT_EQ(got.at("out").shape, (std::vector<int64_t>{1, 26, 2}));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got.at("out").as<float>()[i], want[i]) << i;
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(got.at("side").as<float>()[i], want[18 * 2 + i]) << i;  // relu(relu(r1))
  auto ref = naive->create_context()->run(in);
  for (auto& [name, t] : ref) EXPECT_EQ(t.data, got.at(name).data) << name;
}

std::filesystem::path seed_model() { return test::seed_model_path(); }

void expect_same_as_naive(int batch, bool concat_elided) {
  auto path = seed_model();
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " missing (set KILN_SOURCE_DIR to the source tree)";
  auto net = parse_onnx(path.string(), {batch});
  auto plan = Builder().build(*net);
  auto planned = engine_for(plan, true), naive = engine_for(plan, false);
  NetworkSummary s = planned->summary(), ns = naive->summary();
  int elided = 0;
  for (auto& l : s.layers) {
    elided += l.elided;
    if (l.op_type == "Concat") {
      EXPECT_EQ(l.elided, concat_elided) << l.name;
    }
    if (l.op_type == "Reshape") {
      EXPECT_TRUE(l.elided) << l.name;
    }
  }
  EXPECT_EQ(s.launches + elided, int64_t(s.layers.size()));
  EXPECT_EQ(ns.launches, int64_t(ns.layers.size()));
  EXPECT_LT(s.activation_bytes, ns.activation_bytes);
  auto a = planned->create_context(), b = naive->create_context();
  for (uint32_t seed : {1u, 2u, 3u}) {  // reruns reuse the arena's stale bytes
    auto in = random_inputs(*planned, seed);
    auto got = a->run(in), want = b->run(in);
    ASSERT_EQ(got.size(), 2u);
    for (auto& [name, t] : want) {
      EXPECT_EQ(t.shape, got.at(name).shape);
      EXPECT_TRUE(t.data == got.at(name).data) << name << " differs at batch " << batch;
    }
  }
  auto g = parse_onnx(path.string(), {batch});
  Network& n = *g;
  expect_sound(*n.graph, plan_memory(*n.graph));
}

TEST(MemoryPlanEngine, SeedModelBatch1BitIdentical) { expect_same_as_naive(1, true); }
TEST(MemoryPlanEngine, SeedModelBatch2BitIdentical) { expect_same_as_naive(2, false); }

}  // namespace
}  // namespace kiln
