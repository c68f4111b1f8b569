// The plugin API end to end inside one process: fields and their byte form,
// the registry, ONNX import of plugin nodes (versions, namespaces, field
// checks), build and run through the CPU engine, plans that need a plugin,
// and loading the example plugin library.
#include <gtest/gtest.h>

#include "support/op_test.h"

#include <cmath>

#include "engine/plan.h"
#include "kiln/kiln.h"
#include "kiln/plugin.h"
#include "onnx/import_test_util.h"

namespace kiln {
namespace {

using onnx_test::attr_float;
using onnx_test::attr_int;
using onnx_test::attr_ints;
using onnx_test::attr_string;
using onnx_test::ModelBuilder;

template <typename F> void expect_error(F f, ErrorCode code, std::vector<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << parts.at(0) << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << p << " | " << e.what();
  }
}

// TestScale: y = sign * factor * x (fp32). Version "1" has sign +1, version
// "2" (namespace "acme") sign -1, so a test sees which one it got. A factor
// of 13 fails in execute. Two tactics, to check the first is recorded.
class ScalePlugin : public Plugin {
 public:
  ScalePlugin(float factor, float sign, std::string version) : factor_(factor), sign_(sign), version_(std::move(version)) {}
  std::string type() const override { return "TestScale"; }
  std::string version() const override { return version_; }
  int num_outputs() const override { return 1; }
  std::vector<DataType> output_dtypes(const std::vector<DataType>& in) const override { return {in.at(0)}; }
  std::vector<std::vector<int64_t>> output_shapes(const std::vector<std::vector<int64_t>>& in) const override {
    return {in.at(0)};
  }
  bool supports_format(int, int, DataType dtype, TensorFormat format) const override {
    return dtype == DataType::kFloat32 && format == TensorFormat::kLinear;
  }
  std::vector<std::string> tactics() const override { return {"scale_fast", "scale_slow"}; }
  void set_tactic(const std::string& t) override { tactic_ = t; }
  void configure(const std::vector<PluginTensorDesc>& in, const std::vector<PluginTensorDesc>&) override {
    count_ = 1;
    for (int64_t d : in[0].dims) count_ *= d;
  }
  size_t workspace_size(const std::vector<PluginTensorDesc>&, const std::vector<PluginTensorDesc>&) const override {
    return 100;
  }
  void execute(const std::vector<PluginTensorDesc>&, const std::vector<PluginTensorDesc>&, const void* const* in,
               void* const* out, void* workspace) const override {
    if (factor_ == 13.f) throw Error(ErrorCode::kUnsupported, "factor 13 is unlucky");
    if (!workspace || reinterpret_cast<uintptr_t>(workspace) % 64 != 0) throw std::runtime_error("bad workspace");
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out[0]);
    for (int64_t i = 0; i < count_; ++i) y[i] = sign_ * factor_ * x[i];
  }
  FieldCollection serialize_fields() const override {
    FieldCollection f;
    f.set_float("factor", factor_);
    return f;
  }
  std::unique_ptr<Plugin> clone() const override { return std::make_unique<ScalePlugin>(*this); }

 private:
  float factor_, sign_;
  std::string version_, tactic_;
  int64_t count_ = 0;
};

class ScaleCreator : public PluginCreator {
 public:
  ScaleCreator(std::string version, std::string ns, float sign) : version_(std::move(version)), ns_(std::move(ns)), sign_(sign) {}
  std::string type() const override { return "TestScale"; }
  std::string version() const override { return version_; }
  std::string plugin_namespace() const override { return ns_; }
  std::vector<FieldDecl> field_decls() const override {
    return {{"factor", FieldType::kFloat, 1, true}, {"pair", FieldType::kInts, 2, false}};
  }
  std::unique_ptr<Plugin> create(const std::string&, const FieldCollection& f) const override {
    return std::make_unique<ScalePlugin>(f.get_float("factor", 1.f), sign_, version_);
  }

 private:
  std::string version_, ns_;
  float sign_;
};

void register_scale() {
  static bool done = [] {
    PluginRegistry::global().add(std::make_unique<ScaleCreator>("1", "", 1.f));
    PluginRegistry::global().add(std::make_unique<ScaleCreator>("2", "acme", -1.f));
    return true;
  }();
  (void)done;
}

// x fp32[2,3] -> op (domain com.acme) -> y
ModelBuilder one_op_model(const std::string& op, std::vector<int64_t> dims = {2, 3},
                          int elem = onnx::TensorProto::FLOAT) {
  ModelBuilder mb;
  mb.opset_import("com.acme", 1);
  mb.input("x", elem, dims);
  mb.node(op, {"x"}, {"y"}, "layer1", "com.acme");
  mb.output("y");
  return mb;
}
onnx::NodeProto* the_node(ModelBuilder& mb) { return mb.g->mutable_node(0); }

std::map<std::string, HostTensor> build_and_run(const ModelBuilder& mb, const std::map<std::string, HostTensor>& in,
                                                NetworkSummary* summary = nullptr) {
  auto net = parse_onnx_bytes(mb.m.SerializeAsString(), ".");
  auto plan = Builder().build(*net);
  auto engine = Runtime().deserialize(plan, "test.plan");
  if (summary) *summary = engine->summary();
  return engine->create_context()->run(in);
}

HostTensor floats(std::vector<int64_t> shape, std::vector<float> v) {
  HostTensor t = HostTensor::zeros(DataType::kFloat32, std::move(shape));
  std::copy(v.begin(), v.end(), t.as<float>());
  return t;
}

TEST(PluginFields, RoundTripThroughBytes) {
  FieldCollection f;
  f.set_int("i", -5).set_float("f", 0.25f).set_string("s", "hello").set_ints("is", {1, -2, 3});
  f.set_floats("fs", {1.5f, -0.5f}).set_bytes("b", {0, 255, 7}).set_string("empty", "");
  const std::vector<uint8_t> bytes = encode_fields(f);
  FieldCollection g = decode_fields(bytes.data(), bytes.size(), "test fields");
  ASSERT_EQ(g.size(), 7u);
  EXPECT_EQ(g.get_int("i", 0), -5);
  EXPECT_EQ(g.get_float("f", 0), 0.25f);
  EXPECT_EQ(g.get_string("s", ""), "hello");
  EXPECT_EQ(g.get_ints("is"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(g.get_floats("fs"), (std::vector<float>{1.5f, -0.5f}));
  EXPECT_EQ(g.get_bytes("b"), (std::vector<uint8_t>{0, 255, 7}));
  EXPECT_EQ(g.get_string("empty", "x"), "");
  EXPECT_EQ(g.get_int("absent", 42), 42);
  expect_error([&] { g.get_int("f", 0); }, ErrorCode::kBadInput, {"field 'f' is float, expected int"});

  for (size_t cut : {size_t(0), size_t(3), size_t(9), bytes.size() - 1})
    expect_error([&] { decode_fields(bytes.data(), cut, "test fields"); }, ErrorCode::kBadInput, {"test fields is corrupt"});
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  expect_error([&] { decode_fields(longer.data(), longer.size(), "test fields"); }, ErrorCode::kBadInput, {"trailing"});
  std::vector<uint8_t> bad = bytes;
  bad[0] = 'X';
  expect_error([&] { decode_fields(bad.data(), bad.size(), "test fields"); }, ErrorCode::kBadInput, {"magic"});
}

TEST(PluginRegistry, HoldsBuiltinsAndRefusesDuplicates) {
  register_scale();
  auto& reg = PluginRegistry::global();
  ASSERT_NE(reg.find("EfficientNMS_TRT", "1", ""), nullptr);
  EXPECT_EQ(reg.find("EfficientNMS_TRT", "2", ""), nullptr);
  EXPECT_EQ(reg.find("EfficientNMS_TRT", "1", "acme"), nullptr);  // find is exact; fallback is the importer's
  EXPECT_NE(reg.find("TestScale", "2", "acme"), nullptr);
  expect_error([&] { reg.add(std::make_unique<ScaleCreator>("1", "", 1.f)); }, ErrorCode::kBadInput,
               {"TestScale (version 1, namespace '')", "already registered"});
}

TEST(PluginImport, BindsNodeRecordsFirstTacticAndRuns) {
  register_scale();
  ModelBuilder mb = one_op_model("TestScale");
  attr_float(the_node(mb), "factor", 2.5f);
  attr_ints(the_node(mb), "pair", {4, 5});
  auto g = mb.import();
  ir::Node* n = onnx_test::find_node(*g, "TestScale");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->path, "plugin");
  EXPECT_EQ(n->domain, "kiln.plugin");
  EXPECT_EQ(n->s("plugin_version", ""), "1");

  const std::vector<float> x = {1, -2, 3, 0.5f, -0.25f, 8};
  NetworkSummary s;
  auto out = build_and_run(mb, {{"x", floats({2, 3}, x)}}, &s);
  ASSERT_EQ(s.layers.size(), 1u);
  EXPECT_EQ(s.layers[0].path, "plugin");
  EXPECT_EQ(s.layers[0].tactic, "scale_fast");
  const HostTensor& y = out.at("y");
  ASSERT_EQ(y.shape, (std::vector<int64_t>{2, 3}));
  for (size_t i = 0; i < x.size(); ++i) EXPECT_FLOAT_EQ(y.as<float>()[i], 2.5f * x[i]);
}

TEST(PluginImport, PicksVersionAndNamespaceWithFallback) {
  register_scale();
  const HostTensor x = floats({2, 3}, {1, 2, 3, 4, 5, 6});
  ModelBuilder v2 = one_op_model("TestScale");
  attr_float(the_node(v2), "factor", 2.f);
  attr_string(the_node(v2), "plugin_version", "2");
  attr_string(the_node(v2), "plugin_namespace", "acme");
  EXPECT_FLOAT_EQ(build_and_run(v2, {{"x", x}}).at("y").as<float>()[5], -12.f);

  // Namespace "elsewhere" has no version 1: TensorRT falls back to "".
  ModelBuilder fb = one_op_model("TestScale");
  attr_float(the_node(fb), "factor", 2.f);
  attr_string(the_node(fb), "plugin_namespace", "elsewhere");
  auto g = fb.import();
  EXPECT_EQ(onnx_test::find_node(*g, "TestScale")->s("plugin_namespace", "?"), "");
  EXPECT_FLOAT_EQ(build_and_run(fb, {{"x", x}}).at("y").as<float>()[5], 12.f);

  ModelBuilder none = one_op_model("TestScale");
  attr_float(the_node(none), "factor", 2.f);
  attr_string(the_node(none), "plugin_version", "3");
  expect_error([&] { none.import(); }, ErrorCode::kUnsupported,
               {"TestScale 'layer1'", "version '3'", "namespace ''", "TestScale (version 1, namespace '')",
                "TestScale (version 2, namespace 'acme')", "EfficientNMS_TRT (version 1, namespace '')"});
}

TEST(PluginImport, ChecksFieldsAgainstDeclarations) {
  register_scale();
  ModelBuilder missing = one_op_model("TestScale");
  expect_error([&] { missing.import(); }, ErrorCode::kBadInput, {"TestScale 'layer1'", "needs field 'factor' (float)"});

  ModelBuilder typed = one_op_model("TestScale");
  attr_int(the_node(typed), "factor", 2);
  expect_error([&] { typed.import(); }, ErrorCode::kBadInput,
               {"TestScale 'layer1'", "attribute 'factor' is int", "declares field 'factor' as float"});

  ModelBuilder unknown = one_op_model("TestScale");
  attr_float(the_node(unknown), "factor", 2.f);
  attr_float(the_node(unknown), "facter", 2.f);
  expect_error([&] { unknown.import(); }, ErrorCode::kBadInput, {"attribute 'facter' is not a field", "factor (float, required)"});

  ModelBuilder length = one_op_model("TestScale");
  attr_float(the_node(length), "factor", 2.f);
  attr_ints(the_node(length), "pair", {1, 2, 3});
  expect_error([&] { length.import(); }, ErrorCode::kBadInput, {"'pair' has 3 elements", "with 2"});
}

TEST(PluginImport, UnsupportedFormatAndExecuteErrorsNameTheLayer) {
  register_scale();
  ModelBuilder ints = one_op_model("TestScale", {2, 3}, onnx::TensorProto::INT64);
  attr_float(the_node(ints), "factor", 2.f);
  auto net = parse_onnx_bytes(ints.m.SerializeAsString(), ".");
  expect_error([&] { Builder().build(*net); }, ErrorCode::kUnsupported,
               {"TestScale 'layer1'", "does not support input 0 as int64 linear"});

  ModelBuilder unlucky = one_op_model("TestScale");
  attr_float(the_node(unlucky), "factor", 13.f);
  expect_error([&] { build_and_run(unlucky, {{"x", floats({2, 3}, {1, 2, 3, 4, 5, 6})}}); }, ErrorCode::kUnsupported,
               {"TestScale 'layer1': factor 13 is unlucky"});
}

// Three boxes, one class: box 1 overlaps box 0 with IoU 0.9/1.1 and goes.
ModelBuilder nms_model(int outputs) {
  ModelBuilder mb;
  mb.opset_import("TRT", 1);
  mb.input("boxes", onnx::TensorProto::FLOAT, {1, 3, 4});
  mb.input("scores", onnx::TensorProto::FLOAT, {1, 3, 1});
  std::vector<std::string> outs = {"num", "det_boxes", "det_scores", "det_classes"};
  outs.resize(size_t(outputs));
  auto* n = mb.node("EfficientNMS_TRT", {"boxes", "scores"}, outs, "nms", "TRT");
  attr_float(n, "score_threshold", 0.1f);
  attr_float(n, "iou_threshold", 0.5f);
  attr_int(n, "max_output_boxes", 4);
  attr_int(n, "background_class", -1);
  attr_int(n, "score_activation", 0);
  attr_int(n, "box_coding", 0);
  attr_string(n, "plugin_version", "1");
  for (auto& o : outs) mb.output(o);
  return mb;
}

std::map<std::string, HostTensor> nms_inputs() {
  return {{"boxes", floats({1, 3, 4}, {0, 0, 1, 1, 0.1f, 0, 1.1f, 1, 2, 2, 3, 3})},
          {"scores", floats({1, 3, 1}, {0.9f, 0.8f, 0.7f})}};
}

TEST(PluginImport, EfficientNmsFromATensorRtExport) {
  auto out = build_and_run(nms_model(4), nms_inputs());
  ASSERT_EQ(out.at("num").dtype, DataType::kInt32);
  EXPECT_EQ(out.at("num").as<int32_t>()[0], 2);
  const HostTensor& b = out.at("det_boxes");
  ASSERT_EQ(b.shape, (std::vector<int64_t>{1, 4, 4}));
  EXPECT_EQ(std::vector<float>(b.as<float>(), b.as<float>() + 16),
            (std::vector<float>{0, 0, 1, 1, 2, 2, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0}));
  const HostTensor& s = out.at("det_scores");
  EXPECT_EQ(std::vector<float>(s.as<float>(), s.as<float>() + 4), (std::vector<float>{0.9f, 0.7f, 0, 0}));
  EXPECT_EQ(out.at("det_classes").shape, (std::vector<int64_t>{1, 4}));

  // Outputs the model does not ask for are still computed, and not returned.
  auto only_num = build_and_run(nms_model(1), nms_inputs());
  EXPECT_EQ(only_num.size(), 1u);
  EXPECT_EQ(only_num.at("num").as<int32_t>()[0], 2);
}

TEST(PluginPlan, LoadingNeedsTheRegisteredPlugin) {
  auto net = parse_onnx_bytes(nms_model(4).m.SerializeAsString(), ".");
  std::vector<uint8_t> plan = Builder().build(*net);
  const plan::Header h = plan::read_header(plan.data(), plan.size(), "x");
  auto g = plan::decode_graph(plan.data() + h.payload_offset, h.payload_size, "x", h.payload_offset);
  ir::Node* n = onnx_test::find_node(*g, "EfficientNMS_TRT");
  ASSERT_NE(n, nullptr);
  n->attrs["plugin_version"].s = "9";
  const std::vector<uint8_t> other = plan::write_plan(*g, "cpu");
  expect_error([&] { Runtime().deserialize(other, "nms.plan"); }, ErrorCode::kBadInput,
               {"plan nms.plan needs plugin EfficientNMS_TRT (version 9, namespace '')", "load it with --plugins"});
}

// ONNX NonMaxSuppression imports onto the EfficientNMS kernels (selection
// checked against onnxruntime in tests/e2e/test_nms_vs_onnxruntime.py).
// Without max_output_boxes_per_class it selects nothing: an empty [0,3].
TEST(PluginImport, NonMaxSuppressionWithoutLimitSelectsNothing) {
  ModelBuilder mb;
  mb.input("boxes", onnx::TensorProto::FLOAT, {1, 3, 4});
  mb.input("scores", onnx::TensorProto::FLOAT, {1, 1, 3});
  mb.node("NonMaxSuppression", {"boxes", "scores"}, {"sel"}, "nms");
  mb.output("sel");
  HostTensor boxes = HostTensor::zeros(DataType::kFloat32, {1, 3, 4});
  HostTensor scores = HostTensor::zeros(DataType::kFloat32, {1, 1, 3});
  for (int i = 0; i < 3; ++i) boxes.as<float>()[i * 4 + 2] = boxes.as<float>()[i * 4 + 3] = 1.f, scores.as<float>()[i] = 0.9f;
  const HostTensor sel = build_and_run(mb, {{"boxes", boxes}, {"scores", scores}}).at("sel");
  EXPECT_EQ(sel.dtype, DataType::kInt64);
  EXPECT_EQ(sel.shape, (std::vector<int64_t>{0, 3}));
}

// Its row count is known only at run time, so nothing inside the graph may read it.
TEST(PluginImport, NonMaxSuppressionOutputReadByANodeIsRefused) {
  ModelBuilder mb;
  mb.input("boxes", onnx::TensorProto::FLOAT, {1, 3, 4});
  mb.input("scores", onnx::TensorProto::FLOAT, {1, 1, 3});
  onnx::TensorProto* m = mb.g->add_initializer();
  m->set_name("m");
  m->set_data_type(onnx::TensorProto::INT64);
  m->add_dims(1);
  m->add_int64_data(2);
  mb.node("NonMaxSuppression", {"boxes", "scores", "m"}, {"sel"}, "nms");
  mb.node("Neg", {"sel"}, {"y"}, "neg");
  mb.output("y");
  expect_error([&] { mb.import(); }, ErrorCode::kUnsupported, {"Neg 'neg'", "'sel'", "graph output"});
}

TEST(PluginLibrary, LoadsTheExamplePluginOnce) {
  const int first = load_plugin_library(test::example_plugin_path());
  EXPECT_EQ(first, 1);
  EXPECT_EQ(load_plugin_library(test::example_plugin_path()), 1);  // again: nothing registered twice
  int found = 0;
  for (const PluginCreator* c : PluginRegistry::global().list()) found += c->type() == "ExampleIdentity";
  EXPECT_EQ(found, 1);

  ModelBuilder mb = one_op_model("ExampleIdentity", {3, 2}, onnx::TensorProto::INT32);
  attr_string(the_node(mb), "note", "from a test");
  HostTensor x = HostTensor::zeros(DataType::kInt32, {3, 2});
  for (int i = 0; i < 6; ++i) x.as<int32_t>()[i] = i * 7 - 20;
  const HostTensor y = build_and_run(mb, {{"x", x}}).at("y");
  EXPECT_EQ(y.dtype, DataType::kInt32);
  EXPECT_EQ(y.data, x.data);

  // The library's own errors cross into kiln as kiln errors.
  ModelBuilder scalar = one_op_model("ExampleIdentity", {});
  expect_error([&] { parse_onnx_bytes(scalar.m.SerializeAsString(), "."); }, ErrorCode::kBadInput,
               {"ExampleIdentity 'layer1': ExampleIdentity needs an input with a batch dimension"});
}

TEST(PluginLibrary, RefusesMissingAndForeignLibraries) {
  expect_error([] { load_plugin_library("/no/such/dir/libplug.so"); }, ErrorCode::kBadInput,
               {"'/no/such/dir/libplug.so' not found"});
  expect_error([] { load_plugin_library("libkiln_no_such_plugin.so"); }, ErrorCode::kBadInput,
               {"'libkiln_no_such_plugin.so' not found"});
  expect_error([] { load_plugin_library("libm.so.6"); }, ErrorCode::kUnsupported,
               {"'libm.so.6' registers no kiln plugins"});
}

}  // namespace
}  // namespace kiln
