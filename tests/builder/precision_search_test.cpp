// Per-layer FP16/FP32 choice of CUDA builds, the graph side: which tensors
// and reads follow which layer, pins, plugin inputs, what is recorded, on a
// small graph whose formats assign_formats gives without timing anything
// (the decision itself: choose_precision_test.cpp), and a whole GPU build.
#include <gtest/gtest.h>

#ifdef KILN_WITH_CUDA

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "backends/cuda/kernel.h"
#include "backends/cuda/parity.h"
#include "builder/network.h"
#include "builder/cuda/choose_precision.h"
#include "builder/cuda/precision_search.h"
#include "engine/plan.h"
#include "ir/op_registry.h"
#include "kiln/kiln.h"
#include "support/op_test.h"
#include "support/small_graphs.h"

namespace kiln {
namespace {

using cuda_build::PrecisionChoice;
using cuda_build::PrecisionLayer;
using cuda_build::PrecisionProblem;
using cuda_build::PrecisionRead;
using cuda_build::PrecisionTensor;

// x [1,3,8,8] -> conv (channels-last in FP16) -> c -> relu (keeps the layout)
// -> r -> mm (MatMul with a constant [8,8]: reads row-major) -> y.
std::unique_ptr<ir::Graph> conv_relu_matmul() { return test::conv_relu_then("MatMul", "mm"); }

const PrecisionTensor* find_tensor(const PrecisionProblem& p, const std::string& name) {
  for (auto& t : p.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

struct Capture : Logger {
  std::vector<std::pair<Severity, std::string>> lines;
  void log(Severity s, const std::string& m) override { lines.emplace_back(s, m); }
};

TEST(PrecisionSearch, ProblemFromTheTwoCopiesAndRecordedChoice) {
  auto g = conv_relu_matmul();
  cuda_build::Options o;
  o.fp16 = true;
  const auto pins = cuda_build::precision_pins(*g, o);
  ASSERT_EQ(pins.size(), 3u);
  for (auto pin : pins) EXPECT_EQ(pin, PrecisionLayer::kFree);
  cuda_build::PrecisionRounds r = cuda_build::make_precision_rounds(*g, o);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r.fp16_node[i]->precision, DataType::kFloat16) << i;
    EXPECT_EQ(r.fp32_node[i]->precision, DataType::kFloat32) << i;
  }
  // The FP16 copy changes only the layout of r for the MatMul: NHWC -> row-major.
  const ir::Node* relayout = r.fp16_node[2]->in(0)->producer;
  ASSERT_NE(relayout, nullptr);
  ASSERT_EQ(relayout->op_type, "Reformat");
  EXPECT_EQ(relayout->in(0)->dtype, DataType::kFloat16);
  EXPECT_EQ(relayout->in(0)->layout, ir::Layout::kNHWC);
  // Times as the GPU rounds would leave them (see LayoutChangeCountsAgainstFp16Readers).
  const double t16[] = {1.0, 0.1, 0.2}, t32[] = {2.0, 0.2, 0.25};
  for (size_t i = 0; i < 3; ++i) {
    r.ms[r.fp16_node[i]] = t16[i];
    r.ms[r.fp32_node[i]] = t32[i];
  }
  r.ms[relayout] = 0.3;

  std::vector<cuda_build::ReformatProbe> probes;
  PrecisionProblem p = cuda_build::precision_problem(*g, r, pins, &probes);
  ASSERT_EQ(p.layers.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(p.layers[i].fp16_ms, t16[i]);
    EXPECT_EQ(p.layers[i].fp32_ms, t32[i]);
  }
  // Every float activation some layer's choice moves, with who decides it.
  ASSERT_EQ(p.tensors.size(), 4u);
  const PrecisionTensor* x = find_tensor(p, "x");
  const PrecisionTensor* c = find_tensor(p, "c");
  const PrecisionTensor* rt = find_tensor(p, "r");
  const PrecisionTensor* y = find_tensor(p, "y");
  ASSERT_TRUE(x && c && rt && y);
  EXPECT_EQ(x->producer, -1);  // the model's input: FP32 whatever is chosen
  EXPECT_FALSE(x->fp16);
  ASSERT_EQ(x->reads.size(), 1u);
  EXPECT_EQ(x->reads[0].layer, 0);
  EXPECT_FALSE(x->reads[0].relayout);  // its conversion changes the dtype too
  EXPECT_EQ(c->producer, 0);
  ASSERT_EQ(c->reads.size(), 1u);
  EXPECT_EQ(c->reads[0].layer, 1);
  EXPECT_FALSE(c->reads[0].relayout);  // relu reads channels-last as it is
  EXPECT_EQ(rt->producer, 1);
  ASSERT_EQ(rt->reads.size(), 1u);
  EXPECT_EQ(rt->reads[0].layer, 2);
  EXPECT_TRUE(rt->reads[0].relayout);
  EXPECT_EQ(rt->relayout_ms, 0.3);
  EXPECT_EQ(y->producer, 2);
  ASSERT_EQ(y->reads.size(), 1u);  // the model's output, FP32
  EXPECT_EQ(y->reads[0].layer, -1);
  EXPECT_FALSE(y->reads[0].fp16);

  // One conversion to time per tensor, from its form in the FP16 copy.
  ASSERT_EQ(probes.size(), 4u);
  auto pg = cuda_build::reformat_probe_graph(probes);
  ASSERT_EQ(pg->nodes().size(), 4u);
  const std::map<std::string, double> reformat = {{"x", 0.05}, {"c", 0.1}, {"r", 0.1}, {"y", 0.05}};
  for (size_t k = 0; k < probes.size(); ++k) {
    const ir::Node& n = *pg->nodes()[k];
    const PrecisionTensor& t = p.tensors[size_t(probes[k].tensor)];
    const DataType from = t.name == "x" ? DataType::kFloat32 : DataType::kFloat16;
    const ir::Layout layout = t.name == "c" || t.name == "r" ? ir::Layout::kNHWC : ir::Layout::kLinear;
    EXPECT_EQ(n.op_type, "Reformat");
    EXPECT_EQ(n.in(0)->dtype, from) << t.name;
    EXPECT_EQ(n.in(0)->layout, layout) << t.name;
    EXPECT_NE(n.outputs[0]->dtype, from) << t.name;
    EXPECT_EQ(n.outputs[0]->layout, ir::Layout::kLinear) << t.name;
    EXPECT_EQ(n.in(0)->dims, (ir::Dims{1, t.name == "x" ? 3 : 4, 8, 8})) << t.name;
    EXPECT_FALSE(cuda::Registry::global().tactics(n).empty()) << t.name;
    p.tensors[size_t(probes[k].tensor)].reformat_ms = reformat.at(t.name);
  }

  // The numbers of LayoutChangeCountsAgainstFp16Readers: the MatMul runs FP32.
  const PrecisionChoice choice = cuda_build::choose_precision(p);
  EXPECT_EQ(choice.fp16, (std::vector<bool>{true, true, false}));
  EXPECT_NEAR(choice.ms, 1.5, 1e-9);
  Capture log;
  set_logger(&log);
  const std::set<std::string> fp32 = cuda_build::record_precision(*g, p, choice, o);
  set_logger(nullptr);
  EXPECT_EQ(fp32, (std::set<std::string>{"mm"}));
  EXPECT_EQ(g->metadata["precision/conv"], "fp16 (faster): fp16 1.0000 ms vs fp32 2.0000 ms");
  EXPECT_EQ(g->metadata["precision/relu"], "fp16 (faster): fp16 0.1000 ms vs fp32 0.2000 ms");
  EXPECT_EQ(g->metadata["precision/mm"], "fp32 (saves reformats): fp16 0.2000 ms vs fp32 0.2500 ms");
  EXPECT_NE(g->metadata["precision"].find("2 layers FP16, 1 FP32"), std::string::npos) << g->metadata["precision"];
  int verbose = 0, info = 0;
  for (auto& [sev, line] : log.lines) {
    if (sev == Severity::kVerbose) {
      ++verbose;
      EXPECT_NE(line.find("'mm'"), std::string::npos) << line;
    }
    info += sev == Severity::kInfo;
  }
  EXPECT_EQ(verbose, 1);
  EXPECT_EQ(info, 1);

  // The final assignment: conversions only where the input enters FP16 and
  // where r leaves it for the MatMul; the output needs none.
  cuda_build::Options fin = o;
  fin.fp32_layers = fp32;
  EXPECT_EQ(cuda_build::assign_formats(*g, fin), 2);
  for (auto& n : g->nodes()) {
    if (n->name == "mm") {
      EXPECT_EQ(n->precision, DataType::kFloat32);
      EXPECT_EQ(n->in(0)->dtype, DataType::kFloat32);
      EXPECT_EQ(n->outputs[0], g->outputs[0]);
    }
    if (n->name == "conv" || n->name == "relu") {
      EXPECT_EQ(n->precision, DataType::kFloat16) << n->name;
    }
  }
}

TEST(PrecisionSearch, StarForcesTodaysAllFp16AssignmentWithoutTiming) {
  // fp16_layers "*" and fp32_layers "relu": nothing is timed (no GPU is
  // touched) and the formats equal a plain FP16 build with that FP32 layer.
  auto g = conv_relu_matmul();
  auto plain = conv_relu_matmul();
  cuda_build::Options o;
  o.fp16 = true;
  o.fp16_layers = {"*"};
  o.fp32_layers = {"relu"};
  const auto pins = cuda_build::precision_pins(*g, o);
  EXPECT_EQ(pins, (std::vector<PrecisionLayer::Pin>{PrecisionLayer::kFp16, PrecisionLayer::kFp32, PrecisionLayer::kFp16}));
  o.fp32_layers = cuda_build::choose_fp32_layers(*g, o);
  EXPECT_EQ(o.fp32_layers, (std::set<std::string>{"relu"}));
  cuda_build::Options today;
  today.fp16 = true;
  today.fp32_layers = {"relu"};
  EXPECT_EQ(cuda_build::assign_formats(*g, o), cuda_build::assign_formats(*plain, today));
  ASSERT_EQ(g->nodes().size(), plain->nodes().size());
  for (size_t i = 0; i < g->nodes().size(); ++i) {
    EXPECT_EQ(g->nodes()[i]->name, plain->nodes()[i]->name);
    EXPECT_EQ(g->nodes()[i]->precision, plain->nodes()[i]->precision) << g->nodes()[i]->name;
  }
}

TEST(PrecisionSearch, LayersFeedingAPluginAreFound) {
  // A plugin reads relu's output through a Reshape: relu is the layer whose
  // precision reaches the plugin; conv and mm feed none.
  auto g = conv_relu_matmul();
  ir::Value* r = g->value("r");
  ir::Value* flat = g->add_value("flat");
  ir::Value* shape = g->add_constant("shape", ir::Tensor::from_int64({1, -1}, {2}));
  g->add_node("Reshape", "reshape", {r, shape}, {flat});
  ir::Value* det = g->add_value("det");
  ir::Node* nms = g->add_node("FakeNms", "nms", {flat}, {det});
  nms->path = "plugin";
  EXPECT_EQ(cuda_build::plugin_input_layers(*g), (std::set<std::string>{"relu"}));
  nms->path = "kernel";
  EXPECT_TRUE(cuda_build::plugin_input_layers(*g).empty());
}

TEST(PrecisionSearch, EveryLayerPinnedTimesNothing) {
  auto g = conv_relu_matmul();
  cuda_build::Options o;
  o.fp16 = true;
  o.fp16_layers = {"conv", "mm"};
  o.fp32_layers = {"relu"};
  EXPECT_EQ(cuda_build::choose_fp32_layers(*g, o), (std::set<std::string>{"relu"}));
  cuda_build::assign_formats(*g, o);
  for (auto& n : g->nodes()) {
    if (n->op_type == "Reformat") continue;
    EXPECT_EQ(n->precision, n->name == "relu" ? DataType::kFloat32 : DataType::kFloat16) << n->name;
  }
}

TEST(PrecisionSearch, LayerInBothListsIsAUsageError) {
  auto g = conv_relu_matmul();
  cuda_build::Options o;
  o.fp16 = true;
  o.fp16_layers = {"relu"};
  o.fp32_layers = {"relu"};
  try {
    cuda_build::precision_pins(*g, o);
    ADD_FAILURE() << "expected kUsage";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUsage);
    EXPECT_NE(std::string(e.what()).find("'relu'"), std::string::npos) << e.what();
  }
}

TEST(PrecisionSearch, ForcingFp16OnALayerWithoutFp16KernelIsAUsageError) {
  // Cast has CUDA kernels but no FP16 traits: it cannot be forced to FP16.
  auto g = std::make_unique<ir::Graph>();
  ir::Value* x = g->add_value("x");
  x->dtype = DataType::kFloat32;
  x->dims = {2, 3};
  x->has_shape = true;
  g->inputs.push_back(x);
  ir::Value* y = g->add_value("y");
  ir::Node* cast = g->add_node("Cast", "to_float", {x}, {y});
  cast->attrs["to"].kind = ir::Attribute::Kind::kInt;
  cast->attrs["to"].i = 1;  // FLOAT
  g->outputs.push_back(y);
  ir::infer_shapes(*g, nullptr);
  ASSERT_FALSE(cuda_build::runs_fp16(*cast));
  cuda_build::Options o;
  o.fp16 = true;
  o.fp16_layers = {"to_float"};
  try {
    cuda_build::choose_fp32_layers(*g, o);
    ADD_FAILURE() << "expected kUsage";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUsage);
    EXPECT_NE(std::string(e.what()).find("to_float"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("FP16"), std::string::npos) << e.what();
  }
  // Allowed but not forced, it simply stays FP32.
  o.fp16_layers.clear();
  EXPECT_EQ(cuda_build::precision_pins(*g, o), (std::vector<PrecisionLayer::Pin>{PrecisionLayer::kFp32}));
}

// On the GPU: a whole FP16 build times both precisions, records a reason
// per layer that agrees with the precision the plan runs it in, and "*"
// still gives the all-FP16 plan without precision records.
TEST(PrecisionSearch, GpuBuildRecordsAChoicePerLayer) {
  KILN_REQUIRE_GPU();
  auto built = [](const BuilderConfig& cfg) {
    Network net;
    net.graph = conv_relu_matmul();
    net.source = "<memory>";
    const std::vector<uint8_t> bytes = Builder(cfg).build(net);
    plan::Header h = plan::read_header(bytes.data(), bytes.size(), "p");
    return plan::decode_graph(bytes.data() + h.payload_offset, h.payload_size, "p");
  };
  BuilderConfig cfg;
  cfg.device = Device::kCuda;
  cfg.fp16 = true;
  auto g = built(cfg);
  ASSERT_TRUE(g->metadata.count("precision"));
  EXPECT_EQ(g->metadata["precision"].rfind("precision by timing:", 0), 0u) << g->metadata["precision"];
  int records = 0;
  for (auto& n : g->nodes()) {
    auto it = g->metadata.find("precision/" + n->name);
    if (it == g->metadata.end()) continue;
    ++records;
    EXPECT_EQ(it->second.substr(0, 4), dtype_name(n->precision)) << n->name << ": " << it->second;
    EXPECT_NE(it->second.find(" ms"), std::string::npos) << it->second;
  }
  EXPECT_GE(records, 2);  // the convolution (with its fused ReLU, if fused) and the MatMul

  cfg.fp16_layers = {"*"};
  auto all = built(cfg);
  for (auto& [k, v] : all->metadata) EXPECT_NE(k.rfind("precision/", 0), 0u) << k;
  for (auto& n : all->nodes()) {
    if (n->op_type != "Conv" && n->op_type != "MatMul") continue;
    EXPECT_EQ(n->precision, DataType::kFloat16) << n->name;
  }

  cfg.fp16 = false;  // forcing FP16 needs FP16 allowed
  try {
    built(cfg);
    ADD_FAILURE() << "expected kUsage";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUsage) << e.what();
  }
}

}  // namespace
}  // namespace kiln

#endif  // KILN_WITH_CUDA
