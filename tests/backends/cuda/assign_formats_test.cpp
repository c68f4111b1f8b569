// Precision/layout assignment for CUDA plans (needs no GPU: it only reads the
// kernels' traits). A small Conv -> Relu -> Flatten graph, built in FP32 and
// in FP16: where Reformat layers go, what each value becomes, and that the
// graph output keeps its name, dtype and row-major layout.
#include <gtest/gtest.h>

#include "builder/cuda/cuda_build.h"
#include "ir/op_registry.h"
#include "support/op_test.h"
#include "support/small_graphs.h"

namespace kiln {
namespace {

std::unique_ptr<ir::Graph> conv_relu_flatten() { return test::conv_relu_then("Flatten", "flat"); }

const ir::Node* producer(const ir::Graph& g, const std::string& value) { return g.value(value)->producer; }

TEST(AssignFormats, Fp32KeepsEverythingRowMajorWithoutReformats) {
  auto g = conv_relu_flatten();
  cuda_build::Options o;
  EXPECT_EQ(cuda_build::assign_formats(*g, o), 0);
  for (auto& [name, v] : g->values()) EXPECT_EQ(v->layout, ir::Layout::kLinear) << name;
  for (auto& n : g->nodes()) EXPECT_EQ(n->precision, DataType::kFloat32) << n->label();
  EXPECT_EQ(g->nodes().size(), 3u);
}

TEST(AssignFormats, Fp16ConvertsAtTheEdgesAndRunsChannelsLastInside) {
  auto g = conv_relu_flatten();
  cuda_build::Options o;
  o.fp16 = true;
  const int reformats = cuda_build::assign_formats(*g, o);
  // In: fp32 row-major -> fp16 NHWC for the convolution. Out: back to fp32.
  EXPECT_EQ(reformats, 2);
  const ir::Node* conv = nullptr;
  for (auto& n : g->nodes())
    if (n->op_type == "Conv") conv = n.get();
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(conv->precision, DataType::kFloat16);
  EXPECT_EQ(conv->in(0)->dtype, DataType::kFloat16);
  EXPECT_EQ(conv->in(0)->layout, ir::Layout::kNHWC);
  EXPECT_EQ(conv->in(1)->dtype, DataType::kFloat16);  // weights converted in the plan
  EXPECT_EQ(conv->in(1)->constant->dtype(), DataType::kFloat16);
  EXPECT_EQ(conv->outputs[0]->layout, ir::Layout::kNHWC);
  const ir::Node* in_reformat = conv->in(0)->producer;
  ASSERT_NE(in_reformat, nullptr);
  EXPECT_EQ(in_reformat->op_type, "Reformat");
  EXPECT_EQ(in_reformat->in(0)->name, "x");
  // The output keeps its name and the model's dtype, row-major.
  ASSERT_EQ(g->outputs.size(), 1u);
  const ir::Value* y = g->outputs[0];
  EXPECT_EQ(y->name, "y");
  EXPECT_EQ(y->dtype, DataType::kFloat32);
  EXPECT_EQ(y->layout, ir::Layout::kLinear);
  EXPECT_EQ(producer(*g, "y")->op_type, "Reformat");
  // Every node still passes its shape inference and the order is topological.
  std::set<const ir::Value*> ready(g->inputs.begin(), g->inputs.end());
  for (auto& n : g->nodes()) {
    for (const ir::Value* v : n->inputs) EXPECT_TRUE(!v || v->is_constant() || ready.count(v)) << n->label();
    for (const ir::Value* v : n->outputs) ready.insert(v);
    ir::OpRegistry::global().find(n->domain, n->op_type)->infer(*n);
  }
}

TEST(AssignFormats, Fp32LayerStaysFp32InAnFp16Build) {
  auto g = conv_relu_flatten();
  cuda_build::Options o;
  o.fp16 = true;
  o.fp32_layers = {"conv"};
  cuda_build::assign_formats(*g, o);
  for (auto& n : g->nodes())
    if (n->op_type == "Conv") {
      EXPECT_EQ(n->precision, DataType::kFloat32);
      EXPECT_EQ(n->in(0)->dtype, DataType::kFloat32);
      EXPECT_EQ(n->in(0)->name, "x");  // no conversion needed at all
    }
}

}  // namespace
}  // namespace kiln
