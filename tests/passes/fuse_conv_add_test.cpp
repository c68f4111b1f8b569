#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backends/cpu/kernel.h"
#include "builder/clone.h"
#include "passes/pass_test.h"

namespace kiln::test {
namespace {

std::map<std::string, ir::Attribute> pads1() { return {{"pads", attr_ints({1, 1, 1, 1})}}; }

std::map<std::string, ir::Attribute> with_act(std::map<std::string, ir::Attribute> a, const char* act,
                                              std::vector<float> params = {}) {
  a["activation"] = attr_s(act);
  a["activation_params"] = attr_floats(std::move(params));
  return a;
}

// ResNet basic block: relu(conv2(relu(conv1(x))) + x). The Add moves into
// conv2 (Z = x); fuse_conv_activation then takes the Relu after it.
TEST(FuseConvAdd, ResNetBasicBlockThenRelu) {
  GraphBuilder b;
  ir::Value* x = b.input({2, 8, 6, 6});
  ir::Value* h = b.node("Relu", {b.node("Conv", {x, b.random({8, 8, 3, 3}, 1), b.random({8}, 2)}, pads1())});
  ir::Value* y = b.node("Conv", {h, b.random({8, 8, 3, 3}, 3), b.random({8}, 4)}, pads1());
  b.output(b.node("Relu", {b.node("Add", {y, x})}));
  auto before = b.finish();

  GraphBuilder e;
  ir::Value* ex = e.input({2, 8, 6, 6});
  ir::Value* eh = e.node("Relu", {e.node("Conv", {ex, e.random({8, 8, 3, 3}, 1), e.random({8}, 2)}, pads1())});
  ir::Value* ey = e.node("Conv", {eh, e.random({8, 8, 3, 3}, 3), e.random({8}, 4), ex}, pads1());
  e.output(e.node("Relu", {ey}));
  auto expected = e.finish();

  auto add_pass = passes::make_fuse_conv_add();
  auto after = check_pass(*add_pass, *before, expected.get());
  EXPECT_EQ(after->outputs[0]->name, before->outputs[0]->name);

  GraphBuilder f;
  ir::Value* fx = f.input({2, 8, 6, 6});
  ir::Value* fh = f.node("Conv", {fx, f.random({8, 8, 3, 3}, 1), f.random({8}, 2)}, with_act(pads1(), "Relu"));
  f.output(f.node("Conv", {fh, f.random({8, 8, 3, 3}, 3), f.random({8}, 4), fx}, with_act(pads1(), "Relu")));
  auto fused = f.finish();
  auto act_pass = passes::make_fuse_conv_activation();
  auto final_graph = check_pass(*act_pass, *after, fused.get());
  EXPECT_EQ(final_graph->outputs[0]->name, before->outputs[0]->name);
  EXPECT_EQ(final_graph->nodes()[1]->fused,
            (std::vector<std::string>{before->nodes()[2]->name, before->nodes()[3]->name, before->nodes()[4]->name}));
}

// MobileNetV2 inverted residual: x + project(dw(expand(x))), no activation
// after the Add; z (= x) is the Add's first operand here, and the project
// Conv has no bias (input 2 stays omitted).
TEST(FuseConvAdd, MobileNetV2ResidualWithoutActivation) {
  auto build = [](GraphBuilder& b, bool fused) {
    ir::Value* x = b.input({1, 16, 8, 8});
    ir::Value* e = b.node("Conv", {x, b.random({32, 16, 1, 1}, 1), b.random({32}, 2)});
    e = b.node("Clip", {e, b.scalar(0.f), b.scalar(6.f)});
    ir::Value* d = b.node("Conv", {e, b.random({32, 1, 3, 3}, 3), b.random({32}, 4)},
                          {{"pads", attr_ints({1, 1, 1, 1})}, {"group", attr_i(32)}});
    d = b.node("Clip", {d, b.scalar(0.f), b.scalar(6.f)});
    if (fused) {
      b.output(b.node("Conv", {d, b.random({16, 32, 1, 1}, 5), nullptr, x}));
    } else {
      ir::Value* p = b.node("Conv", {d, b.random({16, 32, 1, 1}, 5)});
      b.output(b.node("Add", {x, p}));
    }
    return b.finish();
  };
  GraphBuilder b, e;
  auto before = build(b, false);
  auto expected = build(e, true);
  auto pass = passes::make_fuse_conv_add();
  auto after = check_pass(*pass, *before, expected.get());
  EXPECT_EQ(after->outputs[0]->name, before->outputs[0]->name);
  EXPECT_FALSE(after->nodes().back()->has("activation"));
}

// ResNet downsample block: both Add operands are Conv outputs. The Conv that
// comes later in topological order (the shortcut, listed last) takes the
// other as Z, whichever operand order the Add has.
TEST(FuseConvAdd, BothOperandsConvsLaterConvTakesTheOther) {
  for (bool swap : {false, true}) {
    SCOPED_TRACE(swap ? "Add(shortcut, main)" : "Add(main, shortcut)");
    GraphBuilder b;
    ir::Value* x = b.input({2, 4, 8, 8});
    ir::Value* h = b.node("Relu", {b.node("Conv", {x, b.random({8, 4, 3, 3}, 1), b.random({8}, 2)},
                                          {{"pads", attr_ints({1, 1, 1, 1})}, {"strides", attr_ints({2, 2})}})});
    ir::Value* main = b.node("Conv", {h, b.random({8, 8, 3, 3}, 3), b.random({8}, 4)}, pads1());
    ir::Value* sc = b.node("Conv", {x, b.random({8, 4, 1, 1}, 5), b.random({8}, 6)}, {{"strides", attr_ints({2, 2})}});
    b.output(b.node("Relu", {swap ? b.node("Add", {sc, main}) : b.node("Add", {main, sc})}));
    auto before = b.finish();

    GraphBuilder e;
    ir::Value* ex = e.input({2, 4, 8, 8});
    ir::Value* eh = e.node("Relu", {e.node("Conv", {ex, e.random({8, 4, 3, 3}, 1), e.random({8}, 2)},
                                           {{"pads", attr_ints({1, 1, 1, 1})}, {"strides", attr_ints({2, 2})}})});
    ir::Value* em = e.node("Conv", {eh, e.random({8, 8, 3, 3}, 3), e.random({8}, 4)}, pads1());
    ir::Value* es = e.node("Conv", {ex, e.random({8, 4, 1, 1}, 5), e.random({8}, 6), em}, {{"strides", attr_ints({2, 2})}});
    e.output(e.node("Relu", {es}));
    auto expected = e.finish();
    auto pass = passes::make_fuse_conv_add();
    check_pass(*pass, *before, expected.get());
  }
}

// The shortcut Conv is listed before the main-branch Conv but already carries
// an activation: the main Conv takes it as Z, and the Conv must then run
// after the shortcut (the pass re-sorts).
TEST(FuseConvAdd, ZComputedLaterIsScheduledFirst) {
  GraphBuilder b;
  ir::Value* x = b.input({1, 4, 6, 6});
  ir::Value* main = b.node("Conv", {x, b.random({4, 4, 3, 3}, 1), b.random({4}, 2)}, pads1());
  ir::Value* sc = b.node("Conv", {x, b.random({4, 4, 1, 1}, 3)}, with_act({}, "Relu"));
  b.output(b.node("Add", {main, sc}));
  auto before = b.finish();

  GraphBuilder e;
  ir::Value* ex = e.input({1, 4, 6, 6});
  ir::Value* es = e.node("Conv", {ex, e.random({4, 4, 1, 1}, 3)}, with_act({}, "Relu"));
  e.output(e.node("Conv", {ex, e.random({4, 4, 3, 3}, 1), e.random({4}, 2), es}, pads1()));
  auto expected = e.finish();
  auto pass = passes::make_fuse_conv_add();
  check_pass(*pass, *before, expected.get());
}

// Cases the pass must leave alone.
TEST(FuseConvAdd, NegativeCases) {
  auto unchanged = [](const std::unique_ptr<ir::Graph>& g) {
    auto pass = passes::make_fuse_conv_add();
    check_pass(*pass, *g, g.get());
  };
  {
    SCOPED_TRACE("broadcasting add");
    GraphBuilder b;
    ir::Value* x = b.input({1, 4, 5, 5});
    ir::Value* z = b.input({1, 4, 1, 1});
    b.output(b.node("Add", {b.node("Conv", {x, b.random({4, 4, 3, 3}, 1)}, pads1()), z}));
    unchanged(b.finish());
  }
  {
    SCOPED_TRACE("z depends on the conv");
    GraphBuilder b;
    ir::Value* x = b.input({1, 4, 5, 5});
    ir::Value* y = b.node("Conv", {x, b.random({4, 4, 3, 3}, 1)}, pads1());
    b.output(b.node("Add", {y, b.node("Relu", {y})}));
    unchanged(b.finish());
  }
  {
    SCOPED_TRACE("conv already has an activation");
    GraphBuilder b;
    ir::Value* x = b.input({1, 4, 5, 5});
    b.output(b.node("Add", {b.node("Conv", {x, b.random({4, 4, 3, 3}, 1)}, with_act(pads1(), "Relu")), x}));
    unchanged(b.finish());
  }
  {
    SCOPED_TRACE("conv output is also a graph output");
    GraphBuilder b;
    ir::Value* x = b.input({1, 4, 5, 5});
    ir::Value* y = b.node("Conv", {x, b.random({4, 4, 3, 3}, 1)}, pads1());
    b.output(y);
    b.output(b.node("Add", {y, x}));
    unchanged(b.finish());
  }
  {
    SCOPED_TRACE("conv output read twice by the add");
    GraphBuilder b;
    ir::Value* x = b.input({1, 4, 5, 5});
    ir::Value* y = b.node("Conv", {x, b.random({4, 4, 3, 3}, 1)}, pads1());
    b.output(b.node("Add", {y, y}));
    unchanged(b.finish());
  }
  {
    SCOPED_TRACE("conv already has a residual");
    GraphBuilder b;
    ir::Value* x = b.input({1, 4, 5, 5});
    ir::Value* y = b.node("Conv", {x, b.random({4, 4, 3, 3}, 1), nullptr, x}, pads1());
    b.output(b.node("Add", {y, x}));
    unchanged(b.finish());
  }
}

// Neighbours that fold_batchnorm / fold_scale_shift / fuse_gemm fold into a
// Conv or Gemm: after the residual (or an activation) is fused, those folds
// would ignore it, so the fusions leave these graphs alone. Checked through
// the whole standard pipeline against the unoptimized graph.
TEST(FuseConvAdd, StandardPipelineKeepsResultsNextToFoldableNeighbours) {
  auto bn = [](GraphBuilder& b, ir::Value* v, int64_t c, uint32_t seed) {
    return b.node("BatchNormalization", {v, b.random({c}, seed, 0.5, 1.5), b.random({c}, seed + 1),
                                         b.random({c}, seed + 2), b.random({c}, seed + 3, 0.5, 1.5)});
  };
  auto conv_add = [](GraphBuilder& b, ir::Value* x) {
    return b.node("Add", {b.node("Conv", {x, b.random({4, 4, 3, 3}, 1), b.random({4}, 2)}, pads1()), x});
  };
  std::vector<std::pair<const char*, std::unique_ptr<ir::Graph>>> graphs;
  {
    GraphBuilder b;
    ir::Value* x = b.input({2, 4, 6, 6});
    b.output(b.node("Add", {conv_add(b, x), b.random({1, 4, 1, 1}, 3)}));
    graphs.emplace_back("conv + z, then add constant", b.finish());
  }
  {
    GraphBuilder b;
    ir::Value* x = b.input({2, 4, 6, 6});
    b.output(b.node("Mul", {conv_add(b, x), b.random({1, 4, 1, 1}, 3)}));
    graphs.emplace_back("conv + z, then scale", b.finish());
  }
  {
    GraphBuilder b;
    ir::Value* x = b.input({2, 4, 6, 6});
    b.output(bn(b, conv_add(b, x), 4, 3));
    graphs.emplace_back("conv + z, then batchnorm", b.finish());
  }
  {
    GraphBuilder b;
    ir::Value* x = b.input({2, 4, 6, 6});
    ir::Value* shifted = b.node("Add", {x, b.random({1, 4, 1, 1}, 3)});
    ir::Value* y = b.node("Conv", {shifted, b.random({4, 4, 1, 1}, 1), b.random({4}, 2)});
    b.output(b.node("Add", {y, x}));
    graphs.emplace_back("shift before conv + z", b.finish());
  }
  {
    GraphBuilder b;
    ir::Value* x = b.input({2, 4, 6, 6});
    ir::Value* y = b.node("Conv", {x, b.random({4, 4, 3, 3}, 1), b.random({4}, 2)}, pads1());
    b.output(bn(b, b.node("Relu", {y}), 4, 3));
    graphs.emplace_back("conv, relu, batchnorm", b.finish());
  }
  {
    GraphBuilder b;
    ir::Value* y = b.node("Gemm", {b.input({3, 6}), b.random({6, 4}, 1), b.random({4}, 2)});
    b.output(bn(b, b.node("Relu", {y}), 4, 3));
    graphs.emplace_back("gemm, relu, batchnorm", b.finish());
  }
  {
    GraphBuilder b;
    ir::Value* y = b.node("Gemm", {b.input({3, 6}), b.random({6, 4}, 1), b.random({4}, 2)});
    b.output(b.node("Add", {b.node("Relu", {y}), b.random({4}, 3)}));
    graphs.emplace_back("gemm, relu, add constant", b.finish());
  }
  cpu::ConstantEvaluator eval;
  for (auto& [what, before] : graphs) {
    SCOPED_TRACE(what);
    auto after = clone_graph(*before);
    passes::PassManager::standard().run(*after, &eval);
    auto inputs = random_inputs(*before, 11);
    auto want = run_graph(*before, inputs), got = run_graph(*after, inputs);
    for (auto& [name, w] : want) {
      auto wv = ir::Tensor::from_host(w).to_double(), gv = ir::Tensor::from_host(got.at(name)).to_double();
      ASSERT_EQ(wv.size(), gv.size());
      double scale = 1e-30, err = 0;
      for (size_t i = 0; i < wv.size(); ++i) {
        scale = std::max(scale, std::fabs(wv[i]));
        err = std::max(err, std::fabs(wv[i] - gv[i]));
      }
      EXPECT_LE(err, 1e-5 * scale) << name;
    }
  }
}

}  // namespace
}  // namespace kiln::test
