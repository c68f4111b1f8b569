// ONNX importer: reading models and tensors, graph inputs, constants, naming
// and error reporting. Models are built with protobuf in the tests.
#include "onnx/import_test_util.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "onnx/tensor_proto.h"

using namespace kiln;
using namespace kiln::onnx_test;
namespace oi = kiln::onnx_import;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("kiln_importer_test_" + std::to_string(::getpid()));
    fs::create_directories(path / "model");
  }
  ~TempDir() { std::error_code ec; fs::remove_all(path, ec); }
};

// Builds Pass(w) -> y around one initializer and imports it from `dir`.
std::unique_ptr<ir::Graph> import_with_initializer(const onnx::TensorProto& w, const std::string& dir) {
  register_test_ops();
  ModelBuilder mb;
  *mb.g->add_initializer() = w;
  mb.node("Pass", {w.name()}, {"y"}, "p", kTestDomain);
  mb.output("y");
  return mb.import(dir);
}

}  // namespace

TEST(OnnxImporter, ExternalDataIsReadRelativeToTheModel) {
  TempDir td;
  std::vector<float> all = {9.f, 9.f, 1.5f, -2.f, 3.25f, 4.f};  // the tensor starts 8 bytes in
  std::ofstream(td.path / "model" / "w.bin", std::ios::binary).write(reinterpret_cast<const char*>(all.data()), 24);
  onnx::TensorProto w;
  w.set_name("w");
  w.set_data_type(onnx::TensorProto::FLOAT);
  w.add_dims(2);
  w.add_dims(2);
  w.set_data_location(onnx::TensorProto::EXTERNAL);
  auto kv = [&](const char* k, const char* v) {
    auto* e = w.add_external_data();
    e->set_key(k);
    e->set_value(v);
  };
  kv("location", "w.bin");
  kv("offset", "8");
  kv("length", "16");
  auto g = import_with_initializer(w, (td.path / "model").string());
  ir::Value* v = g->value("w");
  ASSERT_TRUE(v && v->is_constant());
  EXPECT_EQ(v->dims, (ir::Dims{2, 2}));
  EXPECT_EQ(floats_of(v), (std::vector<float>{1.5f, -2.f, 3.25f, 4.f}));

  // import_file resolves locations against the model file's own directory.
  ModelBuilder onfile;
  *onfile.g->add_initializer() = w;
  onfile.node("Pass", {"w"}, {"y"}, "p", kTestDomain);
  onfile.output("y");
  std::string path = (td.path / "model" / "m.onnx").string();
  std::ofstream(path, std::ios::binary) << onfile.m.SerializeAsString();
  EXPECT_EQ(floats_of(oi::import_file(path, {})->value("w")), (std::vector<float>{1.5f, -2.f, 3.25f, 4.f}));

  // Locations escaping the model directory are refused, even if the file exists.
  std::ofstream(td.path / "outside.bin", std::ios::binary).write(reinterpret_cast<const char*>(all.data()), 24);
  for (const char* bad : {"../outside.bin", "sub/../../outside.bin", "/etc/passwd"}) {
    onnx::TensorProto b = w;
    b.mutable_external_data(0)->set_value(bad);
    Error e = catch_error([&] { import_with_initializer(b, (td.path / "model").string()); });
    EXPECT_EQ(e.code(), ErrorCode::kBadInput) << bad;
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
  }
  // A file too short for offset + length.
  onnx::TensorProto s = w;
  s.mutable_external_data(1)->set_value("16");
  Error e = catch_error([&] { import_with_initializer(s, (td.path / "model").string()); });
  EXPECT_EQ(e.code(), ErrorCode::kBadInput);
  EXPECT_NE(std::string(e.what()).find("too short"), std::string::npos) << e.what();
}

TEST(OnnxImporter, CorruptOrMissingFilesAreBadInput) {
  Error e = catch_error([] { oi::import_bytes(std::string("\x0a\xff\xff\xff\x0f garbage", 14), ".", {}); });
  EXPECT_EQ(e.code(), ErrorCode::kBadInput);
  EXPECT_NE(std::string(e.what()).find("is not a valid ONNX model"), std::string::npos) << e.what();

  Error m = catch_error([] { oi::import_file("/nonexistent/dir/model.onnx", {}); });
  EXPECT_EQ(m.code(), ErrorCode::kBadInput);
  EXPECT_NE(std::string(m.what()).find("/nonexistent/dir/model.onnx"), std::string::npos) << m.what();
}

TEST(OnnxImporter, TensorSizesAreCheckedBeforeAllocating) {
  // 2^40 floats declared, 4 bytes present: must be refused, not allocated.
  onnx::TensorProto huge;
  huge.set_name("w");
  huge.set_data_type(onnx::TensorProto::FLOAT);
  huge.add_dims(int64_t(1) << 20);
  huge.add_dims(int64_t(1) << 20);
  huge.set_raw_data(std::string(4, '\0'));
  EXPECT_EQ(catch_error([&] { import_with_initializer(huge, "."); }).code(), ErrorCode::kBadInput);

  onnx::TensorProto few = float_tensor("w", {3}, {1.f, 2.f});  // 2 values for 3 elements
  EXPECT_EQ(catch_error([&] { import_with_initializer(few, "."); }).code(), ErrorCode::kBadInput);

  onnx::TensorProto dbl;
  dbl.set_name("wd");
  dbl.set_data_type(onnx::TensorProto::DOUBLE);
  dbl.add_dims(1);
  dbl.add_double_data(1.0);
  Error e = catch_error([&] { import_with_initializer(dbl, "."); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find("'wd'"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("DOUBLE"), std::string::npos) << e.what();
}

TEST(OnnxImporter, Float16InInt32DataAndRawData) {
  onnx::TensorProto h;
  h.set_data_type(onnx::TensorProto::FLOAT16);
  h.add_dims(3);
  for (float f : {1.f, -0.5f, 65504.f}) h.add_int32_data(float_to_half(f));
  ir::Tensor t = oi::tensor_from_proto(h, ".", "h");
  ASSERT_EQ(t.dtype(), DataType::kFloat16);
  EXPECT_EQ(t.to_double(), (std::vector<double>{1.0, -0.5, 65504.0}));

  onnx::TensorProto r;
  r.set_data_type(onnx::TensorProto::INT64);
  r.add_dims(2);
  int64_t vals[2] = {-7, int64_t(1) << 40};
  r.set_raw_data(std::string(reinterpret_cast<const char*>(vals), 16));
  EXPECT_EQ(oi::tensor_from_proto(r, ".", "r").to_int64(), (std::vector<int64_t>{-7, int64_t(1) << 40}));
}

TEST(OnnxImporter, UnsupportedOpMessageNamesNodeOpDomainAndOpset) {
  ModelBuilder mb;
  mb.opset_import("com.acme", 1);
  mb.input("x", onnx::TensorProto::FLOAT, {2});
  mb.node("Foo", {"x"}, {"y"}, "mynode", "com.acme");
  mb.output("y");
  Error e = catch_error([&] { mb.import(); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_EQ(std::string(e.what()),
            "node 'mynode' (op 'Foo', domain 'com.acme', opset 1) is not supported: kiln has no kernel for it, ONNX "
            "defines no function body, and no plugin is registered for (com.acme, Foo). Register a plugin for "
            "this op type (see docs/plugins.md) or replace the op.");
}

TEST(OnnxImporter, SymbolicLeadingDimBecomesTheBatch) {
  register_test_ops();
  ModelBuilder mb;
  mb.input("x", onnx::TensorProto::FLOAT, {-1, 3, 4}, {"N"});
  mb.node("Pass", {"x"}, {"y"}, "p", kTestDomain);
  mb.output("y");
  auto g = mb.import(".", 5);
  ASSERT_EQ(g->inputs.size(), 1u);
  EXPECT_EQ(g->inputs[0]->dims, (ir::Dims{5, 3, 4}));
  EXPECT_EQ(g->inputs[0]->batch_axis, 0);
  EXPECT_TRUE(g->inputs[0]->has_shape);
  EXPECT_EQ(mb.import(".", 0)->inputs[0]->dims, (ir::Dims{1, 3, 4}));

  ModelBuilder bad;
  bad.input("x", onnx::TensorProto::FLOAT, {1, -1, 4}, {"", "seq"});
  bad.node("Pass", {"x"}, {"y"}, "p", kTestDomain);
  bad.output("y");
  Error e = catch_error([&] { bad.import(); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  std::string msg = e.what();
  EXPECT_NE(msg.find("'x'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("axis 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'seq'"), std::string::npos) << msg;
}

TEST(OnnxImporter, InputShapesFillSymbolicDims) {
  register_test_ops();
  ModelBuilder mb;
  mb.input("img", onnx::TensorProto::FLOAT, {-1, 3, -1, -1}, {"N", "", "H", "W"});
  mb.input("aux", onnx::TensorProto::FLOAT, {2, 4});
  mb.node("Pass", {"img"}, {"y"}, "p", kTestDomain);
  mb.node("Pass", {"aux"}, {"z"}, "q", kTestDomain);
  mb.output("y");
  mb.output("z");
  const auto import = [&](std::map<std::string, std::vector<int64_t>> shapes, int batch = 0) {
    oi::ImportOptions o;
    o.batch = batch;
    o.input_shapes = std::move(shapes);
    return oi::import_bytes(mb.m.SerializeAsString(), ".", o);
  };
  auto g = import({{"img", {2, 3, 48, 64}}});
  EXPECT_EQ(g->inputs[0]->dims, (ir::Dims{2, 3, 48, 64}));
  EXPECT_EQ(g->inputs[0]->batch_axis, 0);  // axis 0 still scales with the batch
  EXPECT_EQ(g->inputs[1]->dims, (ir::Dims{2, 4}));
  // The batch option wins on axis 0; a static input may be given as it is.
  g = import({{"img", {2, 3, 48, 64}}, {"aux", {2, 4}}}, 5);
  EXPECT_EQ(g->inputs[0]->dims, (ir::Dims{5, 3, 48, 64}));

  // Without a shape the symbolic H is refused, and the message says how to give it.
  Error e = catch_error([&] { import({}); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find("--input-shape img="), std::string::npos) << e.what();
  struct Bad { std::map<std::string, std::vector<int64_t>> shapes; const char* needle; };
  for (const Bad& b : {Bad{{{"img", {1, 3, 48}}}, "has rank 3, but the model's input 'img' has rank 4"},
                       Bad{{{"img", {1, 4, 48, 64}}}, "gives axis 1 size 4, but the model fixes it at 3"},
                       Bad{{{"img", {1, 3, 0, 64}}}, "every size must be at least 1"},
                       Bad{{{"img", {1, 3, 8, 8}}, {"images", {1, 3, 8, 8}}},
                           "'images', which is not a graph input; the inputs are 'img', 'aux'"}}) {
    Error err = catch_error([&] { import(b.shapes); });
    EXPECT_EQ(err.code(), ErrorCode::kBadInput) << b.needle;
    EXPECT_NE(std::string(err.what()).find(b.needle), std::string::npos) << err.what();
  }
}

TEST(OnnxImporter, ConstantNodesBecomeConstants) {
  register_test_ops();
  ModelBuilder mb;
  auto* c1 = mb.node("Constant", {}, {"c1"});
  auto* a = c1->add_attribute();
  a->set_name("value_floats");
  a->set_type(onnx::AttributeProto::FLOATS);
  a->add_floats(0.25f);
  a->add_floats(-3.f);
  auto* c2 = mb.node("Constant", {}, {"c2"});
  attr_int(c2, "value_int", 42);
  auto* c3 = mb.node("Constant", {}, {"c3"});
  auto* t = c3->add_attribute();
  t->set_name("value");
  t->set_type(onnx::AttributeProto::TENSOR);
  *t->mutable_t() = float_tensor("", {2, 1}, {7.f, 8.f});
  mb.node("Pass", {"c1"}, {"y1"}, "p1", kTestDomain);
  mb.node("Pass", {"c2"}, {"y2"}, "p2", kTestDomain);
  mb.node("Pass", {"c3"}, {"y3"}, "p3", kTestDomain);
  for (auto o : {"y1", "y2", "y3"}) mb.output(o);
  auto g = mb.import();
  EXPECT_EQ(find_node(*g, "Constant"), nullptr);
  EXPECT_EQ(floats_of(g->value("c1")), (std::vector<float>{0.25f, -3.f}));
  ASSERT_TRUE(g->value("c2")->is_constant());
  EXPECT_EQ(g->value("c2")->constant->dtype(), DataType::kInt64);
  EXPECT_TRUE(g->value("c2")->dims.empty());
  EXPECT_EQ(g->value("c2")->constant->to_int64(), (std::vector<int64_t>{42}));
  EXPECT_EQ(g->value("c3")->dims, (ir::Dims{2, 1}));
  EXPECT_EQ(floats_of(g->value("c3")), (std::vector<float>{7.f, 8.f}));
}

TEST(OnnxImporter, NamesAreMadeUniqueAndEmptyOutputsAreNull) {
  register_test_ops();
  ModelBuilder mb;
  mb.input("x", onnx::TensorProto::FLOAT, {2});
  mb.node("Pass", {"x"}, {"a"}, "dup", kTestDomain);
  mb.node("Pass", {"a"}, {"b"}, "dup", kTestDomain);
  mb.node("Pass", {"b"}, {"c"}, "", kTestDomain);
  mb.node("Dropout", {"c", "", ""}, {"d", ""}, "");
  mb.output("d");
  auto g = mb.import();
  std::set<std::string> names;
  for (auto& n : g->nodes()) {
    EXPECT_FALSE(n->name.empty());
    EXPECT_TRUE(names.insert(n->name).second) << n->name;
  }
  ir::Node* d = find_node(*g, "Dropout");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->inputs.size(), 1u);  // trailing omitted inputs and outputs dropped
  EXPECT_EQ(d->outputs.size(), 1u);

  // An omitted output in the middle keeps its position with an unused value.
  ModelBuilder sm(18);
  sm.input("x", onnx::TensorProto::FLOAT, {6});
  attr_int(sm.node("Split", {"x"}, {"a", "", "c"}, "sp"), "num_outputs", 3);
  sm.output("a");
  sm.output("c");
  auto sg = sm.import();
  ir::Node* sp = find_node(*sg, "Split");
  ASSERT_TRUE(sp);
  ASSERT_EQ(sp->outputs.size(), 3u);
  ASSERT_NE(sp->outputs[1], nullptr);
  EXPECT_TRUE(sg->consumers(sp->outputs[1]).empty());
  EXPECT_EQ(sp->outputs[2], sg->value("c"));
}

TEST(OnnxImporter, ControlFlowAndOpsetLimitsAreUnsupported) {
  ModelBuilder mb;
  mb.input("c", onnx::TensorProto::BOOL, {});
  auto* n = mb.node("If", {"c"}, {"y"}, "branch");
  auto* a = n->add_attribute();
  a->set_name("then_branch");
  a->set_type(onnx::AttributeProto::GRAPH);
  a->mutable_g()->set_name("then");
  mb.output("y");
  EXPECT_EQ(catch_error([&] { mb.import(); }).code(), ErrorCode::kUnsupported);

  ModelBuilder future(99);
  future.input("x", onnx::TensorProto::FLOAT, {1});
  future.output("x");
  EXPECT_EQ(catch_error([&] { future.import(); }).code(), ErrorCode::kUnsupported);
}

TEST(OnnxImporter, OpsetsBelow7OnlyForOpsUnchangedSince) {
  ModelBuilder ok(1);  // Not is the same op from opset 1 to 18
  ok.input("b", onnx::TensorProto::BOOL, {3});
  ok.node("Not", {"b"}, {"y"}, "not");
  ok.output("y");
  auto g = ok.import();
  ASSERT_EQ(g->nodes().size(), 1u);
  EXPECT_EQ(g->nodes()[0]->opset, 1);

  ModelBuilder old(4);  // Reshape-1 took its shape as an attribute
  old.input("x", onnx::TensorProto::FLOAT, {6});
  attr_ints(old.node("Reshape", {"x"}, {"y"}, "r"), "shape", {2, 3});
  old.output("y");
  Error e = catch_error([&] { old.import(); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find("opset 4"), std::string::npos) << e.what();
}
