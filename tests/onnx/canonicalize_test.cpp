// ONNX importer: older-opset forms rewritten into the opset-18 form.
#include "onnx/import_test_util.h"

#include <algorithm>
#include <cmath>
#include <optional>

using namespace kiln;
using namespace kiln::onnx_test;

TEST(OnnxImporter, OldOpsetAttributesBecomeInputs) {
  ModelBuilder mb(11);
  mb.input("x", onnx::TensorProto::FLOAT16, {4, 6});
  attr_ints(mb.node("ReduceSum", {"x"}, {"r"}, "rs"), "axes", {1});
  attr_ints(mb.node("ReduceMean", {"x"}, {"rm"}, "rm"), "axes", {0, -1});
  attr_ints(mb.node("Split", {"x"}, {"s0", "s1"}, "sp"), "split", {2, 4});
  for (auto o : {"r", "rm", "s0", "s1"}) mb.output(o);
  {
    auto g = mb.import();
    auto ints_in = [&](const char* node, size_t k) {
      for (auto& n : g->nodes())
        if (n->name == node) {
          EXPECT_TRUE(n->in(k) && n->in(k)->is_constant()) << node;
          EXPECT_FALSE(n->has("axes") || n->has("split")) << node;
          EXPECT_EQ(n->opset, 11) << node;
          return n->in(k) && n->in(k)->is_constant() ? n->in(k)->constant->to_int64() : std::vector<int64_t>{};
        }
      ADD_FAILURE() << node << " missing";
      return std::vector<int64_t>{};
    };
    EXPECT_EQ(ints_in("rs", 1), (std::vector<int64_t>{1}));
    EXPECT_EQ(ints_in("rm", 1), (std::vector<int64_t>{0, -1}));
    EXPECT_EQ(ints_in("sp", 1), (std::vector<int64_t>{2, 4}));
  }
  // Clip min/max were attributes before opset 11.
  ModelBuilder cm(6);
  cm.input("x", onnx::TensorProto::FLOAT16, {4});
  auto* c = cm.node("Clip", {"x"}, {"c"}, "cl");
  attr_float(c, "min", -1.5f);
  attr_float(c, "max", 2.f);
  cm.output("c");
  auto g = cm.import();
  ir::Node* n = find_node(*g, "Clip");
  ASSERT_TRUE(n);
  EXPECT_FALSE(n->has("min") || n->has("max"));
  ASSERT_TRUE(n->in(1) && n->in(2));
  // Bounds take the input's element type, as Clip-11 requires.
  EXPECT_EQ(n->in(1)->constant->dtype(), DataType::kFloat16);
  EXPECT_EQ(n->in(1)->constant->to_double(), (std::vector<double>{-1.5}));
  EXPECT_EQ(n->in(2)->constant->to_double(), (std::vector<double>{2.0}));
  EXPECT_TRUE(n->in(1)->dims.empty());

  // Split without `split` before 18: equal parts, one per output.
  ModelBuilder sm(13);
  sm.input("x", onnx::TensorProto::FLOAT, {6});
  sm.node("Split", {"x"}, {"a", "b", "c"}, "sp");
  for (auto o : {"a", "b", "c"}) sm.output(o);
  auto sg = sm.import();  // the graph must outlive the node pointer
  ir::Node* s = find_node(*sg, "Split");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->i("num_outputs", 0), 3);
}

TEST(OnnxImporter, OldSoftmaxIsFlattenedUnlessTheAxisIsLast) {
  ModelBuilder mb(11);
  mb.input("x", onnx::TensorProto::FLOAT, {2, 3, 4});
  mb.input("z", onnx::TensorProto::FLOAT, {2, 3});
  mb.node("Softmax", {"x"}, {"y"}, "sm");  // default axis 1 of rank 3: 2-D coercion differs
  mb.node("Softmax", {"z"}, {"w"}, "sm2");  // axis 1 of rank 2 is the last axis
  mb.output("y");
  mb.output("w");
  auto g = mb.import();
  std::map<std::string, int> count;
  for (auto& n : g->nodes()) count[n->op_type]++;
  EXPECT_EQ(count["Softmax"], 2);
  EXPECT_EQ(count["Flatten"], 1);
  EXPECT_EQ(count["Reshape"], 1);
  ir::Node* fl = find_node(*g, "Flatten");
  ASSERT_TRUE(fl);
  EXPECT_EQ(fl->in(0), g->value("x"));
  EXPECT_EQ(fl->i("axis", -99), 1);
  EXPECT_EQ(g->value("y")->producer->op_type, "Reshape");
  EXPECT_EQ(g->value("w")->producer->op_type, "Softmax");
  EXPECT_EQ(g->value("w")->producer->i("axis", 0), -1);
}

// Old forms run through kiln's kernels agree with float64 references written
// from the old opsets' specs. Skipped per op while its kernel is missing.
namespace {

ir::Tensor ramp(ir::Dims dims) {
  ir::Tensor t(DataType::kFloat32, dims);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(std::sin(0.37 * double(i)) * 2.0);
  return t;
}

// One-node model `op(x) -> y` at `opset` (extra outputs as given).
struct OneNode {
  ModelBuilder mb;
  onnx::NodeProto* n;
  OneNode(const std::string& op, int opset, ir::Dims x, std::vector<std::string> outs = {"y"}) : mb(opset) {
    mb.input("x", onnx::TensorProto::FLOAT, x);
    n = mb.node(op, {"x"}, outs, "n");
    mb.output(outs[0]);
  }
  // Runs it when kiln has every op the imported graph uses; else nullopt.
  std::optional<std::map<std::string, ir::Tensor>> run(const ir::Tensor& x) {
    auto g = mb.import();
    for (auto& node : g->nodes())
      if (!all_kernels({node->op_type.c_str()})) return std::nullopt;
    return run_graph(*g, {{"x", x}});
  }
};

void expect_values(const ir::Tensor& got, const ir::Dims& dims, const std::vector<double>& want, double tol = 1e-5) {
  ASSERT_EQ(got.dims(), dims);
  std::vector<double> g = got.to_double();
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], want[i], tol) << "at " << i;
}

}  // namespace

TEST(OnnxCanonicalize, UpsampleAndResize10UseAsymmetricCoordinates) {
  ir::Tensor x = ramp({1, 1, 2, 2});
  const float* xv = x.data<float>();
  OneNode up("Upsample", 7, {1, 1, 2, 2});
  auto* s = up.n->add_attribute();
  s->set_name("scales");
  s->set_type(onnx::AttributeProto::FLOATS);
  for (float f : {1.f, 1.f, 2.f, 3.f}) s->add_floats(f);
  auto g = up.mb.import();
  ir::Node* r = find_node(*g, "Resize");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->in(1), nullptr);
  ASSERT_TRUE(r->in(2) && r->in(2)->is_constant());
  EXPECT_EQ(r->s("coordinate_transformation_mode", ""), "asymmetric");
  if (auto out = up.run(x)) {
    std::vector<double> want;  // nearest upsampling repeats each pixel
    for (int h = 0; h < 4; ++h)
      for (int w = 0; w < 6; ++w) want.push_back(xv[(h / 2) * 2 + w / 3]);
    expect_values(out->at("y"), {1, 1, 4, 6}, want);
  }

  OneNode rs("Resize", 10, {1, 1, 2, 2});
  rs.n->add_input("scales");
  *rs.mb.g->add_initializer() = float_tensor("scales", {4}, {1.f, 1.f, 2.f, 2.f});
  attr_string(rs.n, "mode", "linear");
  if (auto out = rs.run(x)) {
    std::vector<double> want;  // source coordinate out/2, clamped at the far edge
    auto at = [&](int h, int w) { return double(xv[std::min(h, 1) * 2 + std::min(w, 1)]); };
    for (int h = 0; h < 4; ++h)
      for (int w = 0; w < 4; ++w) {
        int h0 = h / 2, w0 = w / 2;
        double fh = h / 2.0 - h0, fw = w / 2.0 - w0;
        want.push_back((1 - fh) * ((1 - fw) * at(h0, w0) + fw * at(h0, w0 + 1)) +
                       fh * ((1 - fw) * at(h0 + 1, w0) + fw * at(h0 + 1, w0 + 1)));
      }
    expect_values(out->at("y"), {1, 1, 4, 4}, want);
  }
}

TEST(OnnxCanonicalize, OldSlicePadTopKClipMatchReferences) {
  ir::Tensor x = ramp({4, 5});
  const float* xv = x.data<float>();
  OneNode sl("Slice", 9, {4, 5});
  attr_ints(sl.n, "starts", {1, 0});
  attr_ints(sl.n, "ends", {3, -1});
  attr_ints(sl.n, "axes", {0, 1});
  if (auto out = sl.run(x)) {
    std::vector<double> want;
    for (int i = 1; i < 3; ++i)
      for (int j = 0; j < 4; ++j) want.push_back(xv[i * 5 + j]);
    expect_values(out->at("y"), {2, 4}, want);
  }

  OneNode pad("Pad", 9, {4, 5});
  attr_ints(pad.n, "pads", {1, 0, 0, 2});  // rows: 1 before; cols: 2 after
  attr_float(pad.n, "value", 7.5f);
  if (auto out = pad.run(x)) {
    std::vector<double> want;
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 7; ++j) want.push_back(i >= 1 && j < 5 ? xv[(i - 1) * 5 + j] : 7.5);
    expect_values(out->at("y"), {5, 7}, want);
  }

  OneNode topk("TopK", 9, {4, 5}, {"y", "idx"});
  attr_int(topk.n, "k", 2);
  if (auto out = topk.run(x)) {
    std::vector<double> want;
    for (int i = 0; i < 4; ++i) {
      std::vector<double> row(xv + i * 5, xv + i * 5 + 5);
      std::sort(row.rbegin(), row.rend());
      want.push_back(row[0]);
      want.push_back(row[1]);
    }
    expect_values(out->at("y"), {4, 2}, want);
  }

  OneNode clip("Clip", 6, {4, 5});
  attr_float(clip.n, "min", -0.5f);
  attr_float(clip.n, "max", 0.75f);
  if (auto out = clip.run(x)) {
    std::vector<double> want;
    for (int i = 0; i < 20; ++i) want.push_back(std::min(0.75, std::max(-0.5, double(xv[i]))));
    expect_values(out->at("y"), {4, 5}, want);
  }
}

TEST(OnnxCanonicalize, OldSoftmaxAndReduceMatchReferences) {
  ir::Tensor x = ramp({2, 3, 4});
  const float* xv = x.data<float>();
  OneNode sm("Softmax", 11, {2, 3, 4});  // axis 1: softmax over the 12 trailing values
  if (auto out = sm.run(x)) {
    std::vector<double> want;
    for (int b = 0; b < 2; ++b) {
      double mx = -1e30, sum = 0;
      for (int i = 0; i < 12; ++i) mx = std::max(mx, double(xv[b * 12 + i]));
      for (int i = 0; i < 12; ++i) sum += std::exp(xv[b * 12 + i] - mx);
      for (int i = 0; i < 12; ++i) want.push_back(std::exp(xv[b * 12 + i] - mx) / sum);
    }
    expect_values(out->at("y"), {2, 3, 4}, want);
  }

  OneNode rm("ReduceMean", 11, {2, 3, 4});
  attr_ints(rm.n, "axes", {1});
  attr_int(rm.n, "keepdims", 0);
  if (auto out = rm.run(x)) {
    std::vector<double> want;
    for (int b = 0; b < 2; ++b)
      for (int k = 0; k < 4; ++k)
        want.push_back((double(xv[b * 12 + k]) + xv[b * 12 + 4 + k] + xv[b * 12 + 8 + k]) / 3.0);
    expect_values(out->at("y"), {2, 4}, want);
  }

  OneNode un("Unsqueeze", 11, {2, 3, 4});
  attr_ints(un.n, "axes", {0, 3});
  if (auto out = un.run(x)) expect_values(out->at("y"), {1, 2, 3, 1, 4}, x.to_double());
}

TEST(OnnxCanonicalize, OldBatchNormAndDropoutDropTrainingOutputs) {
  ir::Tensor x = ramp({2, 2, 3});
  OneNode bn("BatchNormalization", 7, {2, 2, 3}, {"y", "m", "v", "sm", "sv"});
  for (auto name : {"scale", "bias", "mean", "var"}) bn.n->add_input(name);
  *bn.mb.g->add_initializer() = float_tensor("scale", {2}, {2.f, -1.f});
  *bn.mb.g->add_initializer() = float_tensor("bias", {2}, {0.5f, 0.f});
  *bn.mb.g->add_initializer() = float_tensor("mean", {2}, {0.1f, -0.2f});
  *bn.mb.g->add_initializer() = float_tensor("var", {2}, {4.f, 0.25f});
  attr_int(bn.n, "spatial", 1);
  attr_float(bn.n, "epsilon", 1e-3f);
  auto g = bn.mb.import();
  ir::Node* b = find_node(*g, "BatchNormalization");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->outputs.size(), 1u);
  EXPECT_FALSE(b->has("spatial"));
  if (auto out = bn.run(x)) {
    const float sc[] = {2.f, -1.f}, bi[] = {0.5f, 0.f}, mu[] = {0.1f, -0.2f}, va[] = {4.f, 0.25f};
    std::vector<double> want;
    for (int i = 0; i < 12; ++i) {
      int c = (i / 3) % 2;
      want.push_back((x.data<float>()[i] - mu[c]) / std::sqrt(double(va[c]) + 1e-3) * sc[c] + bi[c]);
    }
    expect_values(out->at("y"), {2, 2, 3}, want, 1e-4);
  }
  // A consumer of a dropped training output gets a clear kUnsupported.
  bn.mb.g->mutable_output(0)->set_name("m");
  Error e = catch_error([&] { bn.mb.import(); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find("training-only"), std::string::npos) << e.what();

  OneNode dr("Dropout", 7, {2, 2, 3});
  attr_float(dr.n, "ratio", 0.3f);
  auto dg = dr.mb.import();
  ir::Node* d = find_node(*dg, "Dropout");
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->has("ratio"));
  ASSERT_TRUE(d->in(1) && d->in(1)->is_constant());
  EXPECT_EQ(floats_of(d->in(1)), (std::vector<float>{0.3f}));
  if (auto out = dr.run(x)) expect_values(out->at("y"), {2, 2, 3}, x.to_double());  // inference: identity
}
