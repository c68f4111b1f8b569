// kiln::export_qdq_onnx: the written model's structure (Q/DQ pairs where the
// scales say, shared per tensor; int8 per-channel weights), its weight
// values against max|w|/127 computed here, libonnx's checker, and that it
// computes what the float model does up to quantization error.
#include <onnx/checker.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "kiln/calibrator.h"
#include "onnx/export_qdq.h"
#include "onnx/import_test_util.h"
#include "onnx/tensor_proto.h"
#include "quant/weights.h"
#include "support/op_test.h"

namespace kiln::onnx_test {
namespace {

namespace fs = std::filesystem;
using TP = onnx::TensorProto;

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("kiln_export_qdq_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

int64_t prod(const std::vector<int64_t>& d) {
  int64_t n = 1;
  for (auto x : d) n *= x;
  return n;
}

void add_weight(ModelBuilder& mb, const std::string& name, std::vector<int64_t> dims, uint32_t seed) {
  *mb.g->add_initializer() = float_tensor(name, dims, random_floats(size_t(prod(dims)), seed, 0.3f));
}

// x -> Conv c1 -> Relu r1 -> Conv c2 -> Add(c2, r1) -> Relu r2 -> Flatten f
//   -> Gemm (transB=1) g -> MatMul y;   f -> Gemm (transB=0) y2
ModelBuilder test_model(int opset = 17) {
  ModelBuilder mb(opset);
  mb.input("x", TP::FLOAT, {1, 3, 8, 8});
  add_weight(mb, "W1", {4, 3, 3, 3}, 1);
  add_weight(mb, "B1", {4}, 2);
  add_weight(mb, "W2", {4, 4, 3, 3}, 3);
  add_weight(mb, "W3", {5, 256}, 4);
  add_weight(mb, "B3", {5}, 5);
  add_weight(mb, "W4", {5, 6}, 6);
  add_weight(mb, "W5", {256, 3}, 7);
  attr_ints(mb.node("Conv", {"x", "W1", "B1"}, {"c1"}, "conv1"), "pads", {1, 1, 1, 1});
  mb.node("Relu", {"c1"}, {"r1"}, "relu1");
  attr_ints(mb.node("Conv", {"r1", "W2"}, {"c2"}, "conv2"), "pads", {1, 1, 1, 1});
  mb.node("Add", {"c2", "r1"}, {"a"}, "add");
  mb.node("Relu", {"a"}, {"r2"}, "relu2");
  mb.node("Flatten", {"r2"}, {"f"}, "flatten");
  attr_int(mb.node("Gemm", {"f", "W3", "B3"}, {"g"}, "gemm"), "transB", 1);
  mb.node("MatMul", {"g", "W4"}, {"y"}, "matmul");
  attr_int(mb.node("Gemm", {"f", "W5"}, {"y2"}, "gemm_t"), "transB", 0);
  mb.output("y");
  mb.output("y2");
  // libonnx's checker wants output shapes.
  for (auto [k, d] : {std::pair<int, int64_t>{0, 6}, {1, 3}}) {
    auto* sh = mb.g->mutable_output(k)->mutable_type()->mutable_tensor_type()->mutable_shape();
    sh->add_dim()->set_dim_value(1);
    sh->add_dim()->set_dim_value(d);
  }
  EXPECT_NO_THROW(onnx::checker::check_model(mb.m));  // the input is valid, so a failure below is the export's
  return mb;
}

std::string save(const onnx::ModelProto& m, const fs::path& p) {
  std::ofstream f(p, std::ios::binary);
  f << m.SerializeAsString();
  return p.string();
}

onnx::ModelProto load(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes)) << p;
  return m;
}

const onnx::NodeProto* producer(const onnx::GraphProto& g, const std::string& t) {
  for (const auto& n : g.node())
    for (const auto& o : n.output())
      if (o == t) return &n;
  return nullptr;
}

const onnx::NodeProto* node_named(const onnx::GraphProto& g, const std::string& name) {
  for (const auto& n : g.node())
    if (n.name() == name) return &n;
  return nullptr;
}

const TP* initializer(const onnx::GraphProto& g, const std::string& name) {
  for (const auto& t : g.initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

std::vector<float> floats(const TP& t) {
  std::vector<double> d = onnx_import::tensor_from_proto(t, ".", "test tensor").to_double();
  return std::vector<float>(d.begin(), d.end());
}

int count(const onnx::GraphProto& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.node()) n += node.op_type() == op;
  return n;
}

// The scale a Q/DQ pair on input `k` of node `reader` carries; -1 if there is none.
float pair_scale(const onnx::GraphProto& g, const onnx::NodeProto& reader, int k, std::string* source = nullptr) {
  const onnx::NodeProto* dq = producer(g, reader.input(k));
  if (!dq || dq->op_type() != "DequantizeLinear") return -1;
  const onnx::NodeProto* q = producer(g, dq->input(0));
  if (!q || q->op_type() != "QuantizeLinear") return -1;
  EXPECT_EQ(q->input(1), dq->input(1));
  EXPECT_EQ(q->input(2), dq->input(2));
  const TP* zp = initializer(g, q->input(2));
  EXPECT_TRUE(zp && zp->data_type() == TP::INT8 && zp->dims_size() == 0 && zp->raw_data() == std::string(1, '\0'));
  if (source) *source = q->input(0);
  const TP* s = initializer(g, q->input(1));
  EXPECT_TRUE(s && s->data_type() == TP::FLOAT && s->dims_size() == 0);
  return s ? floats(*s)[0] : -1;
}

// Every node reads only graph inputs, initializers and earlier outputs.
void expect_topological(const onnx::GraphProto& g) {
  std::set<std::string> known;
  for (const auto& i : g.input()) known.insert(i.name());
  for (const auto& t : g.initializer()) known.insert(t.name());
  for (const auto& n : g.node()) {
    for (const auto& i : n.input()) EXPECT_TRUE(i.empty() || known.count(i)) << n.name() << " reads " << i << " early";
    for (const auto& o : n.output()) known.insert(o);
  }
}

// Checks the int8 weight that replaced `w` (read by `reader` input 1) against
// the float original: scales max|w_k| / 127 (float division) per output
// channel along `axis`, values in [-127, 127], round trip within half a step.
void expect_weight(const onnx::GraphProto& out, const onnx::GraphProto& orig, const std::string& reader,
                   const std::string& w, int axis) {
  SCOPED_TRACE(w);
  const onnx::NodeProto* n = node_named(out, reader);
  ASSERT_TRUE(n);
  const onnx::NodeProto* dq = producer(out, n->input(1));
  ASSERT_TRUE(dq && dq->op_type() == "DequantizeLinear");
  int64_t dq_axis = -99;
  for (const auto& a : dq->attribute())
    if (a.name() == "axis") dq_axis = a.i();
  EXPECT_EQ(dq_axis, axis);
  EXPECT_EQ(producer(out, dq->input(0)), nullptr);  // the int8 weight is an initializer, no QuantizeLinear
  const TP* q = initializer(out, dq->input(0));
  const TP* s = initializer(out, dq->input(1));
  const TP* zp = initializer(out, dq->input(2));
  ASSERT_TRUE(q && s && zp);
  EXPECT_EQ(initializer(out, w), nullptr);  // the float weight is gone
  const TP* fw = initializer(orig, w);
  ASSERT_TRUE(fw);
  EXPECT_EQ(q->data_type(), TP::INT8);
  ASSERT_EQ(std::vector<int64_t>(q->dims().begin(), q->dims().end()),
            std::vector<int64_t>(fw->dims().begin(), fw->dims().end()));
  const std::vector<float> wv = floats(*fw);
  const int64_t rows = fw->dims(0);
  int64_t cols = 1;
  for (int k = 1; k < fw->dims_size(); ++k) cols *= fw->dims(k);
  const int64_t k_count = fw->dims(axis);
  const std::vector<float> sv = floats(*s);
  ASSERT_EQ(int64_t(sv.size()), k_count);
  EXPECT_EQ(zp->data_type(), TP::INT8);
  EXPECT_EQ(zp->raw_data(), std::string(size_t(k_count), '\0'));
  auto channel = [&](int64_t i) { return axis == 0 ? i / cols : i % cols; };
  std::vector<float> amax(size_t(k_count), 0.f);
  for (int64_t i = 0; i < int64_t(wv.size()); ++i) amax[size_t(channel(i))] = std::max(amax[size_t(channel(i))], std::fabs(wv[size_t(i)]));
  // The same rule as per_channel_weight_scales, on the channel-major copy.
  std::vector<float> cm(wv.size());
  for (int64_t i = 0; i < int64_t(wv.size()); ++i) {
    const int64_t k = channel(i), j = axis == 0 ? i % cols : i / cols;
    cm[size_t(k * (int64_t(wv.size()) / k_count) + j)] = wv[size_t(i)];
  }
  const auto want = quant::per_channel_weight_scales(cm.data(), {k_count, int64_t(wv.size()) / k_count}, w);
  for (int64_t k = 0; k < k_count; ++k) {
    EXPECT_EQ(sv[size_t(k)], amax[size_t(k)] / 127.f) << "channel " << k;
    EXPECT_EQ(sv[size_t(k)], want[size_t(k)]) << "channel " << k;
  }
  const std::string& raw = q->raw_data();
  ASSERT_EQ(int64_t(raw.size()), rows * cols);
  std::vector<bool> hit_max(size_t(k_count), false);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const int v = int(int8_t(raw[size_t(i)]));
    const int64_t k = channel(i);
    EXPECT_GE(v, -127);
    EXPECT_LE(v, 127);
    EXPECT_LE(std::fabs(double(v) * sv[size_t(k)] - wv[size_t(i)]), 0.5 * sv[size_t(k)] * (1 + 1e-5)) << i;
    if (std::abs(v) == 127) hit_max[size_t(k)] = true;
  }
  for (int64_t k = 0; k < k_count; ++k) EXPECT_TRUE(hit_max[size_t(k)]) << "channel " << k << " never reaches 127";
}

TEST(ExportQdq, PairsWeightsAndCheckerOnConvReluAddGemmMatMul) {
  TempDir dir("main");
  ModelBuilder mb = test_model();
  const std::string in = save(mb.m, dir.path / "m.onnx"), out = (dir.path / "m.qdq.onnx").string();
  // c2 has no scale (kiln fuses it into the Add); f has none, its source r2 has.
  const std::map<std::string, float> scales = {{"x", 0.02f}, {"r1", 0.03f}, {"r2", 0.05f}, {"g", 0.1f},
                                               {"unknown_tensor", 1.f}};
  export_qdq_onnx(in, scales, out);
  onnx::ModelProto m = load(out);
  const onnx::GraphProto& g = m.graph();
  EXPECT_NO_THROW(onnx::checker::check_model(m));
  expect_topological(g);

  // One pair per tensor: x, r1 (read by conv2 and add), f (Gemm, Gemm), g.
  EXPECT_EQ(count(g, "QuantizeLinear"), 4);
  EXPECT_EQ(count(g, "DequantizeLinear"), 4 + 5);
  std::string src;
  EXPECT_EQ(pair_scale(g, *node_named(g, "conv1"), 0, &src), 0.02f);
  EXPECT_EQ(src, "x");
  EXPECT_EQ(pair_scale(g, *node_named(g, "conv2"), 0, &src), 0.03f);
  EXPECT_EQ(src, "r1");
  const onnx::NodeProto& add = *node_named(g, "add");
  EXPECT_EQ(add.input(0), "c2");  // no scale: left alone
  EXPECT_EQ(add.input(1), node_named(g, "conv2")->input(0));  // the shared pair
  EXPECT_EQ(pair_scale(g, *node_named(g, "gemm"), 0, &src), 0.05f);  // through the Flatten
  EXPECT_EQ(src, "f");
  EXPECT_EQ(node_named(g, "gemm_t")->input(0), node_named(g, "gemm")->input(0));
  EXPECT_EQ(pair_scale(g, *node_named(g, "matmul"), 0, &src), 0.1f);
  EXPECT_EQ(src, "g");
  EXPECT_EQ(node_named(g, "relu2")->input(0), "a");   // readers outside the list untouched
  EXPECT_EQ(node_named(g, "flatten")->input(0), "r2");
  EXPECT_EQ(node_named(g, "relu1")->input(0), "c1");

  expect_weight(g, mb.m.graph(), "conv1", "W1", 0);
  expect_weight(g, mb.m.graph(), "conv2", "W2", 0);
  expect_weight(g, mb.m.graph(), "gemm", "W3", 0);    // transB=1: [N, K]
  expect_weight(g, mb.m.graph(), "matmul", "W4", 1);  // [K, N]
  expect_weight(g, mb.m.graph(), "gemm_t", "W5", 1);  // transB=0: [K, N]
  ASSERT_TRUE(initializer(g, "B1"));  // biases stay float
  EXPECT_EQ(initializer(g, "B1")->data_type(), TP::FLOAT);
  ASSERT_EQ(g.output_size(), 2);
  EXPECT_EQ(g.output(0).name(), "y");
  EXPECT_EQ(g.output(1).name(), "y2");
  for (const auto& o : m.opset_import())
    if (o.domain().empty()) {
      EXPECT_EQ(o.version(), 17);
    }
}

// The Q/DQ model, run by kiln's CPU kernels with the pairs as real ops, stays
// within quantization error of the float model.
TEST(ExportQdq, QuantizedModelComputesNearTheFloatModel) {
  TempDir dir("numeric");
  ModelBuilder mb = test_model();
  const std::string in = save(mb.m, dir.path / "m.onnx"), out = (dir.path / "m.qdq.onnx").string();
  std::map<std::string, ir::Tensor> inputs = {{"x", test::random_tensor(DataType::kFloat32, {1, 3, 8, 8}, 3, -1, 1)}};
  auto fg = onnx_import::import_file(in, {});
  auto want = run_graph(*fg, inputs);
  // Scales from the float run's activations: max|t| / 127, as min-max calibration gives.
  std::map<std::string, float> scales;
  {
    auto probe = onnx_import::import_file(in, {});
    ir::infer_shapes(*probe, nullptr);
    for (const char* t : {"x", "r1", "r2", "g"}) probe->outputs.push_back(probe->value(t));
    auto acts = run_graph(*probe, inputs);
    for (const char* t : {"x", "r1", "r2", "g"}) {
      double m = 0;
      for (double v : acts.at(t).to_double()) m = std::max(m, std::fabs(v));
      scales[t] = float(m / 127);
    }
  }
  export_qdq_onnx(in, scales, out);
  auto qg = onnx_import::import_file(out, {});
  auto got = run_graph(*qg, inputs);
  for (const char* y : {"y", "y2"}) {
    auto a = got.at(y).to_double(), b = want.at(y).to_double();
    ASSERT_EQ(a.size(), b.size());
    double err = 0, scale = 0;
    for (size_t i = 0; i < b.size(); ++i) {
      err = std::max(err, std::fabs(a[i] - b[i]));
      scale = std::max(scale, std::fabs(b[i]));
    }
    // Four quantized layers with 8-bit steps: a few percent of the output's
    // range. Weights stored without their scales, or a pair clipping an
    // activation with another tensor's smaller scale, are off by far more.
    EXPECT_LT(err, 0.05 * scale) << y;
    EXPECT_GT(err, 0.0) << y << ": the pairs should change the result a little";
  }
}

TEST(ExportQdq, OldOpsetIsRaisedWhenEveryOpKeepsItsMeaning) {
  TempDir dir("opset");
  ModelBuilder mb = test_model(11);
  const std::string in = save(mb.m, dir.path / "m.onnx"), out = (dir.path / "m.qdq.onnx").string();
  export_qdq_onnx(in, {{"x", 0.02f}}, out);
  onnx::ModelProto m = load(out);
  for (const auto& o : m.opset_import())
    if (o.domain().empty()) {
      EXPECT_EQ(o.version(), 13);
    }
  EXPECT_NO_THROW(onnx::checker::check_model(m));

  ModelBuilder sm(11);
  sm.input("x", TP::FLOAT, {2, 4});
  add_weight(sm, "W", {4, 4}, 1);
  sm.node("MatMul", {"x", "W"}, {"h"});
  sm.node("Softmax", {"h"}, {"y"});  // axis semantics changed at opset 13
  sm.output("y");
  for (int64_t d : {2, 4}) sm.g->mutable_output(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(d);
  const std::string sin = save(sm.m, dir.path / "s.onnx");
  Error e = catch_error([&] { export_qdq_onnx(sin, {{"x", 0.1f}}, (dir.path / "s.qdq.onnx").string()); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find("'Softmax'"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("opset 11"), std::string::npos) << e.what();
  EXPECT_FALSE(fs::exists(dir.path / "s.qdq.onnx"));
}

TEST(ExportQdq, ExternalDataIsInlinedWhenWrittenElsewhere) {
  TempDir dir("external");
  fs::create_directories(dir.path / "src");
  fs::create_directories(dir.path / "dst");
  ModelBuilder mb = test_model();
  // Move W1 (quantized) and B1 (kept float) into an external file.
  std::ofstream bin(dir.path / "src" / "weights.bin", std::ios::binary);
  int64_t offset = 0;
  for (auto& t : *mb.g->mutable_initializer()) {
    if (t.name() != "W1" && t.name() != "B1") continue;
    std::vector<float> v(t.float_data().begin(), t.float_data().end());
    bin.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * 4));
    t.clear_float_data();
    t.set_data_location(TP::EXTERNAL);
    auto add_kv = [&](const char* k, const std::string& val) {
      auto* kv = t.add_external_data();
      kv->set_key(k);
      kv->set_value(val);
    };
    add_kv("location", "weights.bin");
    add_kv("offset", std::to_string(offset));
    add_kv("length", std::to_string(v.size() * 4));
    offset += int64_t(v.size() * 4);
  }
  bin.close();
  ModelBuilder plain = test_model();
  const std::string in = save(mb.m, dir.path / "src" / "m.onnx");

  const std::string elsewhere = (dir.path / "dst" / "m.qdq.onnx").string();
  export_qdq_onnx(in, {{"x", 0.02f}}, elsewhere);
  onnx::ModelProto m = load(elsewhere);
  for (const auto& t : m.graph().initializer()) EXPECT_NE(t.data_location(), TP::EXTERNAL) << t.name();
  const TP* b1 = initializer(m.graph(), "B1");
  ASSERT_TRUE(b1);
  EXPECT_EQ(floats(*b1), floats(*initializer(plain.m.graph(), "B1")));
  expect_weight(m.graph(), plain.m.graph(), "conv1", "W1", 0);  // read from the external file

  const std::string beside = (dir.path / "src" / "m.qdq.onnx").string();
  export_qdq_onnx(in, {{"x", 0.02f}}, beside);
  const onnx::ModelProto beside_model = load(beside);
  const TP* kept = initializer(beside_model.graph(), "B1");
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->data_location(), TP::EXTERNAL);  // the reference still resolves from here
}

TEST(ExportQdq, ErrorsNameTheFileOrTensor) {
  TempDir dir("errors");
  ModelBuilder mb = test_model();
  const std::string in = save(mb.m, dir.path / "m.onnx"), out = (dir.path / "o.onnx").string();
  for (float bad : {std::nanf(""), 0.f, -0.5f, INFINITY}) {
    Error e = catch_error([&] { export_qdq_onnx(in, {{"r1", bad}}, out); });
    EXPECT_EQ(e.code(), ErrorCode::kBadInput);
    EXPECT_NE(std::string(e.what()).find("'r1'"), std::string::npos) << e.what();
  }
  Error missing = catch_error([&] { export_qdq_onnx((dir.path / "nope.onnx").string(), {}, out); });
  EXPECT_EQ(missing.code(), ErrorCode::kBadInput);
  EXPECT_NE(std::string(missing.what()).find("nope.onnx"), std::string::npos) << missing.what();

  std::ofstream(dir.path / "junk.onnx") << "this is not a protobuf model";
  Error junk = catch_error([&] { export_qdq_onnx((dir.path / "junk.onnx").string(), {}, out); });
  EXPECT_EQ(junk.code(), ErrorCode::kBadInput);
  EXPECT_NE(std::string(junk.what()).find("junk.onnx"), std::string::npos) << junk.what();

  const std::string unwritable = (dir.path / "no_such_dir" / "o.onnx").string();
  Error w = catch_error([&] { export_qdq_onnx(in, {{"x", 0.1f}}, unwritable); });
  EXPECT_EQ(w.code(), ErrorCode::kBadInput);
  EXPECT_NE(std::string(w.what()).find(unwritable), std::string::npos) << w.what();
  EXPECT_FALSE(fs::exists(out));

  // A scale for a tensor the model declares float16.
  ModelBuilder hm;
  hm.input("a", TP::FLOAT16, {2, 3});
  hm.input("b", TP::FLOAT16, {3, 2});
  hm.node("MatMul", {"a", "b"}, {"y"});
  hm.output("y");
  const std::string hin = save(hm.m, dir.path / "h.onnx");
  Error h = catch_error([&] { export_qdq_onnx(hin, {{"a", 0.1f}}, out); });
  EXPECT_EQ(h.code(), ErrorCode::kBadInput);
  EXPECT_NE(std::string(h.what()).find("'a'"), std::string::npos) << h.what();
}

// The importer takes QuantizeLinear/DequantizeLinear from opset 10 (per
// tensor) through 13-21 (per axis); values against a reference written here.
TEST(ImportQdq, PerTensorAndPerAxisAcrossOpsets) {
  const std::vector<int8_t> wq = {-127, 5, 0, 127, 64, -3};
  const std::vector<float> ws = {0.5f, 0.25f, 2.f};
  for (int opset : {10, 13, 17, 19, 21}) {
    SCOPED_TRACE("opset " + std::to_string(opset));
    ModelBuilder mb(opset);
    mb.input("x", TP::FLOAT, {2, 3, 4});
    const float s = 0.25f;
    *mb.g->add_initializer() = float_tensor("s", {}, {s});
    auto add_int8 = [&](const std::string& name, std::vector<int64_t> dims, const std::vector<int8_t>& v) {
      TP* t = mb.g->add_initializer();
      t->set_name(name);
      t->set_data_type(TP::INT8);
      for (auto d : dims) t->add_dims(d);
      t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size()));
    };
    add_int8("zp", {}, {0});
    mb.node("QuantizeLinear", {"x", "s", "zp"}, {"q"});
    mb.node("DequantizeLinear", {"q", "s", "zp"}, {"y1"});
    mb.output("y1");
    if (opset >= 13) {
      add_int8("wq", {3, 2}, wq);
      add_int8("wzp", {3}, {0, 0, 0});
      *mb.g->add_initializer() = float_tensor("ws", {3}, ws);
      attr_int(mb.node("DequantizeLinear", {"wq", "ws", "wzp"}, {"y2"}), "axis", 0);
      mb.output("y2");
    }
    auto g = mb.import();
    ir::Tensor x = test::random_tensor(DataType::kFloat32, {2, 3, 4}, 8, -40, 40);
    auto out = run_graph(*g, {{"x", x}});
    const ir::Tensor& y1 = out.at("y1");
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double r = double(x.data<float>()[i]) / s;  // s is a power of two: exact
      double q = std::nearbyint(r);
      q = std::min(127.0, std::max(-128.0, q));
      EXPECT_EQ(y1.data<float>()[i], float(q * s)) << "x=" << x.data<float>()[i];
    }
    if (opset >= 13) {
      const ir::Tensor& y2 = out.at("y2");
      for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(y2.data<float>()[i], float(wq[size_t(i)] * ws[size_t(i / 2)])) << i;
    }
  }
}

}  // namespace
}  // namespace kiln::onnx_test
