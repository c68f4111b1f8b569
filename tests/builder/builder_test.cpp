// Builder: lowering, device checks, and that the user's network is left as it was.
#include <gtest/gtest.h>

#include "builder/clone.h"
#include "builder/network.h"
#include "engine/plan.h"
#include "engine/test_ops.h"
#include "ir/op_registry.h"
#include "kiln/kiln.h"
#include "support/op_test.h"

namespace kiln {
namespace {

NetworkPtr test_network() {
  NetworkPtr net(new Network);
  net->graph = test::make_test_graph();
  net->source = "test.onnx";
  return net;
}

TEST(Builder, RecordsTacticsAndLeavesNetworkUntouched) {
  auto net = test_network();
  std::vector<uint8_t> bytes = Builder().build(*net);
  plan::Header h = plan::read_header(bytes.data(), bytes.size(), "p");
  auto g = plan::decode_graph(bytes.data() + h.payload_offset, h.payload_size, "p");
  ASSERT_EQ(g->nodes().size(), 4u);
  EXPECT_EQ(g->nodes()[0]->tactic, "test_conv_direct");
  EXPECT_EQ(g->nodes()[1]->tactic, "test_relu");
  EXPECT_EQ(g->nodes()[2]->tactic, "test_add");
  EXPECT_EQ(g->nodes()[3]->tactic, "test_conv_direct");
  for (auto& n : net->graph->nodes()) EXPECT_EQ(n->tactic, "") << n->name;
  // Builds are deterministic, with and without graph passes.
  EXPECT_EQ(Builder().build(*net), bytes);
  BuilderConfig no_opt;
  no_opt.optimize = false;
  EXPECT_EQ(Builder(no_opt).build(*net), Builder(no_opt).build(*net));
}

TEST(Builder, SummaryBeforeBuild) {
  auto net = test_network();
  NetworkSummary s = summarize(*net);
  ASSERT_EQ(s.inputs.size(), 2u);
  EXPECT_EQ(s.inputs[1].name, "Y");
  EXPECT_EQ(s.outputs.size(), 5u);
  ASSERT_EQ(s.layers.size(), 4u);
  EXPECT_EQ(s.layers[2].name, "add");
  EXPECT_EQ(s.layers[2].tactic, "");
  EXPECT_EQ(s.layers[2].path, "kernel");
  EXPECT_EQ(s.layers[2].precision, "fp32");
  ASSERT_EQ(s.layers[2].outputs.size(), 1u);
  EXPECT_EQ(s.layers[2].outputs[0].shape, (std::vector<int64_t>{2, 3, 5, 5}));
  EXPECT_EQ(s.weight_bytes, (54 + 3 + 9) * 4 + 4 * 8);
}

TEST(Builder, CudaIsRefusedWithoutBackendOrGpu) {
  auto net = test_network();
  BuilderConfig cfg;
  cfg.device = Device::kCuda;
  try {
    Builder(cfg).build(*net);
    // Only a CUDA-enabled kiln on a machine with a GPU gets here.
#ifndef KILN_WITH_CUDA
    ADD_FAILURE();
#endif
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("--device cpu"), std::string::npos) << e.what();
  }
}

TEST(Builder, NodeWithoutKernelFailsAtBuildNamingIt) {
  auto net = test_network();
  ir::Graph& g = *net->graph;
  ir::Value* out = g.add_value("NK");
  ir::Node* n = g.add_node("NoKernel", "nk", {g.value("Z")}, {out});
  n->domain = test::kTestDomain;
  ir::infer_shapes(g);
  g.outputs.push_back(out);
  try {
    Builder().build(*net);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("NoKernel 'nk'"), std::string::npos) << e.what();
  }
}

TEST(CloneGraph, SharesConstantsCopiesStructure) {
  auto g = test::make_test_graph();
  auto c = clone_graph(*g);
  ASSERT_EQ(c->values().size(), g->values().size());
  EXPECT_EQ(c->value("W")->constant.get(), g->value("W")->constant.get());  // shared, not copied
  EXPECT_NE(c->value("W"), g->value("W"));
  ASSERT_EQ(c->nodes().size(), g->nodes().size());
  for (size_t k = 0; k < g->nodes().size(); ++k) {
    const ir::Node &a = *g->nodes()[k], &b = *c->nodes()[k];
    EXPECT_EQ(a.name, b.name);
    ASSERT_EQ(a.inputs.size(), b.inputs.size());
    for (size_t j = 0; j < a.inputs.size(); ++j) {
      if (!a.inputs[j]) { EXPECT_EQ(b.inputs[j], nullptr); continue; }
      EXPECT_EQ(b.inputs[j], c->value(a.inputs[j]->name));  // points into the clone
    }
    for (ir::Value* o : b.outputs) EXPECT_EQ(o->producer, &b);
  }
  ASSERT_EQ(c->outputs.size(), g->outputs.size());
  for (size_t k = 0; k < g->outputs.size(); ++k) EXPECT_EQ(c->outputs[k], c->value(g->outputs[k]->name));
  // Editing the clone leaves the original alone.
  c->nodes()[1]->tactic = "x";
  c->value("R")->dims = {1};
  c->remove_node(c->nodes()[3].get());
  EXPECT_EQ(g->nodes()[1]->tactic, "");
  EXPECT_EQ(g->value("R")->dims, (ir::Dims{2, 3, 5, 5}));
  EXPECT_EQ(g->nodes().size(), 4u);
  EXPECT_EQ(g->value("Q")->producer, g->nodes()[3].get());
}

}  // namespace
}  // namespace kiln
