// Plan file: round trip of structure and outputs, and refusal of truncated,
// corrupt, hostile, other-version and other-device plans.
#include "engine/plan.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "backends/cpu/kernel.h"
#include "builder/network.h"
#include "engine/test_ops.h"
#include "ir/op_registry.h"
#include "kiln/kiln.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using test::attr_f;
using test::attr_i;
using test::attr_ints;
using test::attr_s;

// Runs `f`, requires a kiln::Error with `code` whose message contains `part`.
template <typename F> void expect_error(F f, ErrorCode code, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << part << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

std::vector<uint8_t> build_plan(std::unique_ptr<ir::Graph> g) {
  Network net;
  net.graph = std::move(g);
  net.source = "test";
  return Builder().build(net);
}

std::vector<float> floats(const HostTensor& t) { return std::vector<float>(t.as<float>(), t.as<float>() + t.numel()); }

double rel_err(const HostTensor& got, const std::vector<double>& ref) {
  if (got.dtype != DataType::kFloat32 || size_t(got.numel()) != ref.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    worst = std::max(worst, std::fabs(double(got.as<float>()[i]) - ref[i]) / std::max(1.0, std::fabs(ref[i])));
  return worst;
}

// One inference on random inputs, checked against the float64 reference.
void run_and_check(ExecutionContext& ctx, const ir::Graph& g, uint32_t seed) {
  HostTensor x = test::random_tensor(DataType::kFloat32, {2, 2, 5, 5}, seed).to_host();
  HostTensor y = test::random_tensor(DataType::kFloat32, {2, 3, 5, 5}, seed + 1000).to_host();
  auto out = ctx.run({{"X", x}, {"Y", y}});
  test::Reference ref = test::reference(g, floats(x), floats(y));
  ASSERT_EQ(out.size(), 5u);
  EXPECT_LT(rel_err(out.at("Z"), ref.z), 1e-5);
  EXPECT_LT(rel_err(out.at("Q"), ref.q), 1e-5);
  EXPECT_LT(rel_err(out.at("R"), ref.r), 1e-5);
  // The constant output and the pass-through input come back unchanged.
  const HostTensor& k = out.at("K");
  ASSERT_EQ(k.dtype, DataType::kInt64);
  ASSERT_EQ(k.shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(k.as<int64_t>()[0], 7);
  EXPECT_EQ(k.as<int64_t>()[1], -1);
  EXPECT_EQ(k.as<int64_t>()[2], int64_t(1) << 40);
  EXPECT_EQ(out.at("Y").data, y.data);
  EXPECT_EQ(out.at("Y").shape, y.shape);
}

void expect_same_tensor(const ir::Tensor& a, const ir::Tensor& b, const std::string& what) {
  EXPECT_EQ(a.dtype(), b.dtype()) << what;
  EXPECT_EQ(a.dims(), b.dims()) << what;
  ASSERT_EQ(a.nbytes(), b.nbytes()) << what;
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << what;
}

void expect_same_graph(const ir::Graph& a, const ir::Graph& b) {
  EXPECT_EQ(a.name, b.name);
  ASSERT_EQ(a.values().size(), b.values().size());
  for (auto& [name, va] : a.values()) {
    const ir::Value* vb = b.value(name);
    ASSERT_NE(vb, nullptr) << name;
    EXPECT_EQ(va->dtype, vb->dtype) << name;
    EXPECT_EQ(va->dims, vb->dims) << name;
    EXPECT_EQ(va->batch_axis, vb->batch_axis) << name;
    ASSERT_EQ(va->is_constant(), vb->is_constant()) << name;
    if (va->is_constant()) expect_same_tensor(*va->constant, *vb->constant, name);
  }
  auto names = [](const std::vector<ir::Value*>& vs) {
    std::vector<std::string> out;
    for (auto* v : vs) out.push_back(v ? v->name : "<none>");
    return out;
  };
  EXPECT_EQ(names(a.inputs), names(b.inputs));
  EXPECT_EQ(names(a.outputs), names(b.outputs));
  ASSERT_EQ(a.nodes().size(), b.nodes().size());
  for (size_t k = 0; k < a.nodes().size(); ++k) {
    const ir::Node &na = *a.nodes()[k], &nb = *b.nodes()[k];
    EXPECT_EQ(na.name, nb.name);
    EXPECT_EQ(na.op_type, nb.op_type);
    EXPECT_EQ(na.domain, nb.domain);
    EXPECT_EQ(na.opset, nb.opset);
    EXPECT_EQ(names(na.inputs), names(nb.inputs));
    EXPECT_EQ(names(na.outputs), names(nb.outputs));
    EXPECT_EQ(na.path, nb.path);
    EXPECT_EQ(na.fused, nb.fused);
    EXPECT_EQ(na.tactic, nb.tactic);
    EXPECT_EQ(na.precision, nb.precision);
    ASSERT_EQ(na.attrs.size(), nb.attrs.size()) << na.name;
    for (auto& [key, x] : na.attrs) {
      ASSERT_TRUE(nb.attrs.count(key)) << key;
      const ir::Attribute& y = nb.attrs.at(key);
      ASSERT_EQ(x.kind, y.kind) << key;
      EXPECT_EQ(x.i, y.i) << key;
      EXPECT_EQ(std::memcmp(&x.f, &y.f, 4), 0) << key;
      EXPECT_EQ(x.s, y.s) << key;
      EXPECT_EQ(x.ints, y.ints) << key;
      ASSERT_EQ(x.floats.size(), y.floats.size()) << key;  // bitwise: NaN and -0 must survive
      if (!x.floats.empty()) {
        EXPECT_EQ(std::memcmp(x.floats.data(), y.floats.data(), 4 * x.floats.size()), 0) << key;
      }
      EXPECT_EQ(x.strings, y.strings) << key;
      if (x.kind == ir::Attribute::Kind::kTensor) expect_same_tensor(x.t, y.t, key);
    }
  }
}

// The test graph decorated with every attribute kind and non-default metadata.
std::unique_ptr<ir::Graph> decorated_graph() {
  auto g = test::make_test_graph();
  ir::Node& conv = *g->nodes()[0];
  conv.attrs["alpha"] = attr_f(-0.375f);
  conv.attrs["count"] = attr_i(-(int64_t(1) << 50));
  conv.attrs["mode"] = attr_s(std::string("nearest\0x", 9));
  conv.attrs["scales"] = test::attr_floats({1.5f, NAN, -0.f});
  ir::Attribute strings;
  strings.kind = ir::Attribute::Kind::kStrings;
  strings.strings = {"a", "", "long string with spaces"};
  conv.attrs["tags"] = strings;
  ir::Attribute tensor;
  tensor.kind = ir::Attribute::Kind::kTensor;
  tensor.t = ir::Tensor(DataType::kInt32, {2, 2});
  for (int k = 0; k < 4; ++k) tensor.t.data<int32_t>()[k] = k * 1000 - 7;
  conv.attrs["table"] = tensor;
  conv.fused = {"conv_src", "bn_src"};
  conv.tactic = "test_conv_direct";
  g->nodes()[1]->path = "expanded:Gelu";
  g->nodes()[1]->precision = DataType::kFloat16;
  g->nodes()[1]->tactic = "test_relu";
  g->nodes()[2]->path = "plugin";
  return g;
}

TEST(Plan, RoundTripKeepsEveryField) {
  auto g = decorated_graph();
  std::vector<uint8_t> bytes = plan::write_plan(*g, "cpu");
  plan::Header h = plan::read_header(bytes.data(), bytes.size(), "mem");
  EXPECT_EQ(h.format_version, plan::kFormatVersion);
  EXPECT_EQ(h.kiln_version, version());
  EXPECT_EQ(h.device, "cpu");
  EXPECT_EQ(h.payload_offset + h.payload_size, bytes.size());
  auto back = plan::decode_graph(bytes.data() + h.payload_offset, h.payload_size, "mem");
  expect_same_graph(*g, *back);
  // Omitted optional inputs survive as null.
  EXPECT_EQ(back->nodes()[3]->inputs.size(), 3u);
  EXPECT_EQ(back->nodes()[3]->inputs[2], nullptr);
  // Producers are rebuilt.
  EXPECT_EQ(back->value("R")->producer, back->nodes()[1].get());
  EXPECT_EQ(plan::write_plan(*back, "cpu"), bytes);
}

TEST(Plan, HeaderLayoutIsAsDocumented) {
  auto g = test::make_test_graph();
  std::vector<uint8_t> b = plan::write_plan(*g, "cpu");
  ASSERT_GT(b.size(), 40u);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 8), "KILNPLAN");
  EXPECT_EQ(uint32_t(b[8] | b[9] << 8 | b[10] << 16 | b[11] << 24), plan::kFormatVersion);
  size_t vlen = b[12] | b[13] << 8;
  EXPECT_EQ(std::string(b.begin() + 16, b.begin() + 16 + long(vlen)), version());
  size_t p = 16 + vlen;
  EXPECT_EQ(b[p], 3);
  EXPECT_EQ(std::string(b.begin() + long(p) + 4, b.begin() + long(p) + 7), "cpu");
  p += 7;
  uint64_t payload = 0, sum = 0;
  for (int k = 0; k < 8; ++k) payload |= uint64_t(b[p + size_t(k)]) << (8 * k);
  for (int k = 0; k < 8; ++k) sum |= uint64_t(b[p + 8 + size_t(k)]) << (8 * k);
  EXPECT_EQ(payload, b.size() - p - 16);
  // FNV-1a 64 written out here: header before the checksum, then the payload.
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t k = 0; k < b.size(); ++k) {
    if (k >= p + 8 && k < p + 16) continue;
    h = (h ^ b[k]) * 0x100000001b3ull;
  }
  EXPECT_EQ(sum, h);
}

TEST(Plan, BuiltPlanRunsAndMatchesFloat64Reference) {
  auto g = test::make_test_graph();
  auto plan = build_plan(test::make_test_graph());
  auto engine = Runtime().deserialize(plan, "test.plan");
  EXPECT_EQ(engine->device(), "cpu");
  ASSERT_EQ(engine->inputs().size(), 2u);
  EXPECT_EQ(engine->inputs()[0].name, "X");
  EXPECT_EQ(engine->inputs()[0].shape, (std::vector<int64_t>{2, 2, 5, 5}));
  EXPECT_EQ(engine->inputs()[0].batch_axis, 0);
  ASSERT_EQ(engine->outputs().size(), 5u);
  EXPECT_EQ(engine->outputs()[1].name, "Q");
  EXPECT_EQ(engine->outputs()[1].shape, (std::vector<int64_t>{2, 3, 5, 5}));

  NetworkSummary s = engine->summary();
  ASSERT_EQ(s.layers.size(), 4u);
  EXPECT_EQ(s.layers[0].tactic, "test_conv_direct");
  EXPECT_EQ(s.layers[1].tactic, "test_relu");
  EXPECT_EQ(s.layers[2].tactic, "test_add");
  EXPECT_EQ(s.layers[0].op_type, "kiln.test::Conv");
  EXPECT_EQ(s.layers[0].inputs.size(), 3u);  // weights included
  EXPECT_EQ(s.layers[3].inputs.size(), 2u);  // omitted bias left out
  EXPECT_EQ(s.launches, 4);
  EXPECT_EQ(s.weight_bytes, (54 + 3 + 9) * 4 + 4 * 8);

  auto ctx = engine->create_context();
  for (uint32_t seed = 1; seed <= 3; ++seed) run_and_check(*ctx, *g, seed);  // buffers reused across runs
}

TEST(Plan, BuiltinOpsRoundTripWhenAvailable) {
  auto& kr = cpu::KernelRegistry::global();
  for (const char* op : {"Conv", "Relu", "Add"})
    if (!kr.has("", op) || !ir::OpRegistry::global().find("", op)) GTEST_SKIP() << "no built-in " << op << " yet";
  auto g = test::make_test_graph("");
  auto engine = Runtime().deserialize(build_plan(test::make_test_graph("")));
  auto ctx = engine->create_context();
  run_and_check(*ctx, *g, 5);
}

TEST(Plan, LoadFromFile) {
  auto g = test::make_test_graph();
  std::string path = ::testing::TempDir() + "/kiln_plan_test.plan";
  write_file_atomic(path, build_plan(test::make_test_graph()));
  auto engine = Runtime().load(path);
  run_and_check(*engine->create_context(), *g, 9);
  expect_error([&] { Runtime().load(path + ".missing"); }, ErrorCode::kBadInput, path + ".missing");
}

TEST(Plan, EveryTruncationIsBadInput) {
  auto plan = build_plan(test::make_test_graph());
  for (size_t n = 0; n < plan.size(); ++n) {
    std::vector<uint8_t> cut(plan.begin(), plan.begin() + long(n));
    try {
      Runtime().deserialize(cut, "cut.plan");
      ADD_FAILURE() << "a plan cut to " << n << " bytes loaded";
    } catch (const Error& e) {
      ASSERT_EQ(e.code(), ErrorCode::kBadInput) << n << ": " << e.what();
    }
  }
}

// Payloads that pass the checksum but are cut short: the decoder alone must
// catch them.
TEST(Plan, EveryTruncatedPayloadIsBadInput) {
  auto plan = build_plan(test::make_test_graph());
  plan::Header h = plan::read_header(plan.data(), plan.size(), "p");
  std::vector<uint8_t> payload(plan.begin() + long(h.payload_offset), plan.end());
  for (size_t n = 0; n < payload.size(); ++n) {
    std::vector<uint8_t> cut(payload.begin(), payload.begin() + long(n));
    try {
      Runtime().deserialize(plan::wrap_payload(cut, "cpu"), "cut.plan");
      ADD_FAILURE() << "a payload cut to " << n << " bytes loaded";
    } catch (const Error& e) {
      ASSERT_EQ(e.code(), ErrorCode::kBadInput) << n << ": " << e.what();
    }
  }
}

// Random byte edits with a valid checksum: loading either fails with a typed
// error or gives an engine that runs (or refuses inputs) without crashing.
TEST(Plan, HostilePayloadsNeverCrash) {
  auto plan = build_plan(test::make_test_graph());
  plan::Header h = plan::read_header(plan.data(), plan.size(), "p");
  const std::vector<uint8_t> payload(plan.begin() + long(h.payload_offset), plan.end());
  std::mt19937 rng(1234);
  int loaded = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<uint8_t> p = payload;
    int edits = 1 + int(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % p.size();
      switch (rng() % 3) {
        case 0: p[at] ^= uint8_t(1u << (rng() % 8)); break;
        case 1: p[at] = uint8_t(rng()); break;
        default: p[at] = 0xff; break;
      }
    }
    try {
      auto engine = Runtime().deserialize(plan::wrap_payload(p, "cpu"), "fuzz.plan");
      ++loaded;
      std::map<std::string, HostTensor> ins;
      for (auto& t : engine->inputs()) ins[t.name] = HostTensor::zeros(t.dtype, t.shape);
      engine->create_context()->run(ins);
    } catch (const Error& e) {
      ASSERT_TRUE(e.code() == ErrorCode::kBadInput || e.code() == ErrorCode::kUnsupported) << e.what();
    }
  }
  EXPECT_GT(loaded, 0);  // some edits hit harmless bytes (weights)
  std::printf("hostile payloads: %d of 3000 loaded\n", loaded);
}

TEST(Plan, EveryFlippedByteIsRefused) {
  auto plan = build_plan(test::make_test_graph());
  plan::Header h = plan::read_header(plan.data(), plan.size(), "p");
  for (size_t at = 0; at < plan.size(); ++at) {
    std::vector<uint8_t> bad = plan;
    bad[at] ^= 0x20;
    try {
      Runtime().deserialize(bad, "flip.plan");
      ADD_FAILURE() << "flipping byte " << at << " went unnoticed";
    } catch (const Error& e) {
      ASSERT_EQ(e.code(), ErrorCode::kBadInput) << at;
      if (at >= h.payload_offset) {
        ASSERT_NE(std::string(e.what()).find("plan flip.plan is corrupt (checksum mismatch): rebuild it"),
                  std::string::npos) << e.what();
      }
    }
  }
}

TEST(Plan, RefusesOtherMagicVersionAndDevice) {
  auto g = test::make_test_graph();
  std::vector<uint8_t> onnx_like = {0x08, 0x07, 0x12, 0x04, 'k', 'i', 'l', 'n', 0, 0, 0, 0};
  expect_error([&] { Runtime().deserialize(onnx_like, "model.onnx"); }, ErrorCode::kBadInput,
               "model.onnx is not a kiln plan");

  auto plan = plan::write_plan(*g, "cpu");
  plan[8] = uint8_t(plan::kFormatVersion - 1);
  expect_error([&] { Runtime().deserialize(plan, "old.plan"); }, ErrorCode::kBadInput,
               "plan old.plan was written by format version " + std::to_string(plan::kFormatVersion - 1) +
                   ", this kiln reads version " + std::to_string(plan::kFormatVersion) +
                   ": rebuild it with `kiln build`");

  auto gpu = plan::write_plan(*g, "cuda:sm_90:NVIDIA H100");
  expect_error([&] { Runtime().deserialize(gpu, "gpu.plan"); }, ErrorCode::kBadInput,
               "plan gpu.plan targets GPU 'cuda:sm_90:NVIDIA H100' but ");
}

TEST(Plan, RefusesUnknownTacticAndInconsistentShapes) {
  auto g = test::make_test_graph();
  for (auto& n : g->nodes()) n->tactic = cpu::KernelRegistry::global().create(*n)->tactic();
  g->nodes()[1]->tactic = "relu_avx512_v9";
  expect_error([&] { Runtime().deserialize(plan::write_plan(*g, "cpu"), "t.plan"); }, ErrorCode::kBadInput,
               "plan t.plan was built with tactic 'relu_avx512_v9' for Relu 'relu', which this kiln lacks");

  g->nodes()[1]->tactic = "test_relu";
  g->value("R")->dims = {2, 3, 5, 6};
  expect_error([&] { Runtime().deserialize(plan::write_plan(*g, "cpu"), "s.plan"); }, ErrorCode::kBadInput,
               "plan s.plan is inconsistent: Relu 'relu' output 'R' is stored as fp32[2,3,5,6]");

  g->value("R")->dims = {2, 3, 5, 5};
  g->nodes()[2]->op_type = "Sub";
  expect_error([&] { Runtime().deserialize(plan::write_plan(*g, "cpu"), "o.plan"); }, ErrorCode::kUnsupported,
               "which this kiln does not know");
}

// A Shape node left in a plan (the builder removes them, since their output
// is known at build time) is refused instead of computing into a constant.
TEST(Plan, RefusesRuntimeNodeWithConstantOutput) {
  if (!ir::OpRegistry::global().find("", "Shape") || !cpu::KernelRegistry::global().has("", "Shape"))
    GTEST_SKIP() << "no built-in Shape yet";
  ir::Graph g;
  ir::Value* x = g.add_value("X");
  x->dims = {2, 3};
  x->has_shape = true;
  g.inputs = {x};
  ir::Value* s = g.add_value("S");
  ir::Node* n = g.add_node("Shape", "shape", {x}, {s});
  n->opset = 18;
  g.outputs = {s};
  ir::infer_shapes(g);
  ASSERT_TRUE(s->is_constant());
  n->tactic = cpu::KernelRegistry::global().create(*n)->tactic();
  s->constant.reset();
  expect_error([&] { Runtime().deserialize(plan::write_plan(g, "cpu"), "shape.plan"); }, ErrorCode::kBadInput,
               "plan shape.plan is inconsistent: Shape 'shape' computes constant 'S'");
}

}  // namespace
}  // namespace kiln
