// Batch-profile plans: the container round trip, constants stored once,
// corrupt containers refused, and the engine running every batch of the
// profile against a float64 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "engine/plan.h"
#include "engine/profile_plan.h"
#include "engine/profile_models.h"
#include "kiln/kiln.h"

namespace kiln {
namespace {

using profile_test::conv_gemm_model;
using profile_test::conv_gemm_reference;
using profile_test::conv_gemm_weights;
using profile_test::ConvGemmWeights;
using profile_test::host_floats;
using profile_test::temp_path;

std::string msg_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// One model with a 512 KiB Gemm weight, built once for the whole suite.
struct Built {
  ConvGemmWeights wt = conv_gemm_weights(16384);
  std::string model = temp_path("conv_gemm.onnx");
  std::vector<uint8_t> plan;
  Built() {
    profile_test::save(conv_gemm_model(wt), model);
    plan = Builder().build_profile(model, {}, {1, 4, 8});
  }
};
const Built& built() {
  static Built b;
  return b;
}

TEST(ProfileBatches, Rule) {
  EXPECT_EQ(profile_batches({1, 4, 8}), (std::vector<int>{1, 2, 4, 8}));
  EXPECT_EQ(profile_batches({3, 6, 20}), (std::vector<int>{3, 4, 6, 8, 16, 20}));
  EXPECT_EQ(profile_batches({1, 8, 32}), (std::vector<int>{1, 2, 4, 8, 16, 32}));
  EXPECT_EQ(profile_batches({5, 5, 5}), (std::vector<int>{5}));
  EXPECT_EQ(profile_batches({2, 3, 4}), (std::vector<int>{2, 3, 4}));
  EXPECT_EQ(profile_batches({1, 1, 2}), (std::vector<int>{1, 2}));
  for (BatchProfile bad : {BatchProfile{0, 1, 2}, BatchProfile{2, 1, 4}, BatchProfile{1, 5, 4}, BatchProfile{}})
    EXPECT_EQ(test::code_of([&] { profile_batches(bad); }), ErrorCode::kUsage);
}

TEST(ProfilePlan, RoundTripSharesConstants) {
  const Built& b = built();
  ASSERT_TRUE(plan::has_profile_magic(b.plan.data(), b.plan.size()));
  plan::ProfilePlan p = plan::read_profile_plan(b.plan.data(), b.plan.size(), "p.plan");
  EXPECT_EQ(p.device, "cpu");
  EXPECT_EQ(p.profile.min, 1);
  EXPECT_EQ(p.profile.opt, 4);
  EXPECT_EQ(p.profile.max, 8);
  ASSERT_EQ(p.specs.size(), 4u);
  const int want[] = {1, 2, 4, 8};
  const ir::Tensor* gemm_weight = nullptr;
  for (size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(p.specs[k].batch, want[k]);
    const ir::Graph& g = *p.specs[k].graph;
    ASSERT_EQ(g.inputs.size(), 1u);
    EXPECT_EQ(g.inputs[0]->dims, (ir::Dims{want[k], 3, 6, 6}));
    EXPECT_EQ(g.outputs[0]->dims, (ir::Dims{want[k], 16384}));
    // The Gemm weight is one Tensor object in every specialization.
    const ir::Tensor* w = nullptr;
    for (auto& [name, v] : g.values())
      if (v->is_constant() && v->constant->numel() == 16384 * 8) w = v->constant.get();
    ASSERT_NE(w, nullptr);
    if (!gemm_weight) gemm_weight = w;
    EXPECT_EQ(w, gemm_weight);
  }
  int big = 0;
  for (auto& t : p.constants) big += t->numel() == 16384 * 8;
  EXPECT_EQ(big, 1);
  // Stored once: far below the four single-batch plans together.
  size_t separate = 0;
  for (int batch : want) {
    ParseOptions o;
    o.batch = batch;
    separate += Builder().build(*parse_onnx(b.model, o)).size();
  }
  EXPECT_GT(b.plan.size(), 16384u * 8 * 4);
  EXPECT_LT(b.plan.size() * 3, separate) << b.plan.size() << " vs " << separate;
  // Writing the decoded specializations again gives the same bytes.
  EXPECT_EQ(plan::write_profile_plan(p.profile, p.specs, p.device), b.plan);
}

TEST(ProfilePlan, EngineRunsEveryBatchOfTheProfile) {
  const Built& b = built();
  auto engine = Runtime().deserialize(b.plan, "p.plan");
  EXPECT_EQ(engine->profile().min, 1);
  EXPECT_EQ(engine->profile().opt, 4);
  EXPECT_EQ(engine->profile().max, 8);
  ASSERT_EQ(engine->inputs().size(), 1u);
  EXPECT_EQ(engine->inputs()[0].shape, (std::vector<int64_t>{8, 3, 6, 6}));
  EXPECT_EQ(engine->inputs()[0].batch_axis, 0);
  ASSERT_EQ(engine->outputs().size(), 1u);
  EXPECT_EQ(engine->outputs()[0].shape, (std::vector<int64_t>{8, 16384}));
  EXPECT_EQ(engine->outputs()[0].batch_axis, 0);
  const NetworkSummary s = engine->summary();
  EXPECT_EQ(s.profile.max, 8);
  EXPECT_GE(s.weight_bytes, 16384 * 8 * 4);
  EXPECT_LT(s.weight_bytes, 16384 * 8 * 4 * 2);

  auto ctx = engine->create_context();
  // Twice over, so a context reused after other batches still pads right.
  for (int round = 0; round < 2; ++round)
    for (int n : {1, 3, 4, 5, 8, 2, 7}) {
      const std::vector<float> x = profile_test::values(size_t(n) * 3 * 36, uint32_t(10 + n + round));
      auto out = ctx->run({{"x", host_floats({n, 3, 6, 6}, x)}});
      ASSERT_EQ(out.size(), 1u);
      const HostTensor& y = out.at("y");
      ASSERT_EQ(y.shape, (std::vector<int64_t>{n, 16384})) << "batch " << n;
      const std::vector<double> ref = conv_gemm_reference(b.wt, x, n);
      double err = 0;
      for (size_t i = 0; i < ref.size(); ++i)
        err = std::max(err, std::abs(double(y.as<float>()[i]) - ref[i]) / std::max(1.0, std::abs(ref[i])));
      EXPECT_LT(err, 1e-4) << "batch " << n;
    }

  // The summary a tool reads without loading.
  std::string device;
  const NetworkSummary rs = Runtime().summarize(b.plan, "p.plan", &device);
  EXPECT_EQ(device, "cpu");
  EXPECT_EQ(rs.profile.opt, 4);
  EXPECT_EQ(rs.weight_bytes, s.weight_bytes);
  EXPECT_EQ(rs.inputs[0].shape, (std::vector<int64_t>{8, 3, 6, 6}));
}

TEST(ProfilePlan, RunRefusesBatchesOutsideTheProfile) {
  const Built& b = built();
  auto ctx = Runtime().deserialize(b.plan, "p.plan")->create_context();
  for (int n : {0, 9}) {
    std::string m;
    const auto f = [&] { ctx->run({{"x", HostTensor::zeros(DataType::kFloat32, {n, 3, 6, 6})}}); };
    EXPECT_EQ(test::code_of(f), ErrorCode::kBadInput);
    m = msg_of(f);
    EXPECT_NE(m.find("input 'x' has batch " + std::to_string(n)), std::string::npos) << m;
    EXPECT_NE(m.find("[1, 8]"), std::string::npos) << m;
  }
  const auto wrong = [&] { ctx->run({{"x", HostTensor::zeros(DataType::kFloat32, {2, 3, 6, 5})}}); };
  EXPECT_EQ(test::code_of(wrong), ErrorCode::kBadInput);
  EXPECT_NE(msg_of(wrong).find("expected fp32[b,3,6,6] with b in [1, 8]"), std::string::npos) << msg_of(wrong);
  const auto missing = [&] { ctx->run({}); };
  EXPECT_EQ(test::code_of(missing), ErrorCode::kBadInput);
  const auto unknown = [&] {
    ctx->run({{"x", HostTensor::zeros(DataType::kFloat32, {2, 3, 6, 6})},
              {"q", HostTensor::zeros(DataType::kFloat32, {2})}});
  };
  EXPECT_NE(msg_of(unknown).find("unknown input 'q'"), std::string::npos);
  HostTensor short_data = HostTensor::zeros(DataType::kFloat32, {2, 3, 6, 6});
  short_data.data.resize(8);
  EXPECT_EQ(test::code_of([&] { ctx->run({{"x", short_data}}); }), ErrorCode::kBadInput);
}

TEST(ProfilePlan, SetBatchPicksTheSpecialization) {
  const Built& b = built();
  auto ctx = Runtime().deserialize(b.plan, "p.plan")->create_context();
  // Specializations 1, 2, 4, 8: the smallest that holds the batch.
  for (auto [n, spec] : {std::pair{1, 1}, {2, 2}, {3, 4}, {5, 8}, {8, 8}}) EXPECT_EQ(ctx->set_batch(n), spec) << n;
  for (int n : {0, 9}) {
    const auto f = [&] { ctx->set_batch(n); };
    EXPECT_EQ(test::code_of(f), ErrorCode::kBadInput);
    EXPECT_NE(msg_of(f).find("outside this engine's batch profile [1, 8]"), std::string::npos) << msg_of(f);
  }
  // CPU engines have no device buffers to serve.
  EXPECT_EQ(ctx->device_address("x"), nullptr);
  EXPECT_EQ(test::code_of([&] { ctx->enqueue(nullptr); }), ErrorCode::kUsage);
  // A single-batch engine has no batch to pick.
  ParseOptions o;
  o.batch = 2;
  auto single = Runtime().deserialize(Builder().build(*parse_onnx(b.model, o)), "single.plan")->create_context();
  const auto f = [&] { single->set_batch(2); };
  EXPECT_EQ(test::code_of(f), ErrorCode::kUsage);
  EXPECT_NE(msg_of(f).find("--min-batch/--max-batch"), std::string::npos) << msg_of(f);
}

TEST(ProfilePlan, InputsMustShareOneBatch) {
  ConvGemmWeights wt = conv_gemm_weights(4);
  const std::string model = temp_path("two_inputs.onnx");
  profile_test::save(conv_gemm_model(wt, -1, "second_input"), model);
  auto engine = Runtime().deserialize(Builder().build_profile(model, {}, {1, 2, 4}), "two.plan");
  auto ctx = engine->create_context();
  const auto mixed = [&] {
    ctx->run({{"x", HostTensor::zeros(DataType::kFloat32, {3, 3, 6, 6})},
              {"z", HostTensor::zeros(DataType::kFloat32, {2, 8})}});
  };
  EXPECT_EQ(test::code_of(mixed), ErrorCode::kBadInput);
  EXPECT_NE(msg_of(mixed).find("input 'z' has batch 2 but input 'x' has batch 3"), std::string::npos) << msg_of(mixed);
  // Both inputs padded (batch 3 runs on the batch-4 specialization).
  const std::vector<float> x = profile_test::values(3 * 3 * 36, 7), z = profile_test::values(3 * 8, 8);
  auto out = ctx->run({{"x", host_floats({3, 3, 6, 6}, x)}, {"z", host_floats({3, 8}, z)}});
  const std::vector<double> ref = conv_gemm_reference(wt, x, 3, &z);
  ASSERT_EQ(out.at("y").shape, (std::vector<int64_t>{3, 4}));
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(out.at("y").as<float>()[i], ref[i], 1e-4 * std::max(1.0, std::abs(ref[i])));
}

TEST(ProfilePlan, SingleBatchEnginesReportNoProfile) {
  const Built& b = built();
  ParseOptions o;
  o.batch = 2;
  auto engine = Runtime().deserialize(Builder().build(*parse_onnx(b.model, o)), "single.plan");
  EXPECT_EQ(engine->profile().min, 0);
  EXPECT_EQ(engine->profile().opt, 0);
  EXPECT_EQ(engine->profile().max, 0);
  EXPECT_EQ(engine->summary().profile.max, 0);
}

// Rewrites length and checksum after an edit, as plan_reader_fuzz does, so
// the reader's checks past the checksum are reached.
void repair(std::vector<uint8_t>& b) {
  size_t at = 12;
  for (int s = 0; s < 2; ++s) {
    uint32_t len = 0;
    std::memcpy(&len, &b[at], 4);
    at += 4 + len;
  }
  const uint64_t size = b.size() - at - 16;
  std::memcpy(&b[at], &size, 8);
  uint64_t h = plan::fnv1a64(b.data(), at + 8);
  h = plan::fnv1a64(b.data() + at + 16, size, h);
  std::memcpy(&b[at + 8], &h, 8);
}
size_t payload_at(const std::vector<uint8_t>& b) {
  size_t at = 12;
  for (int s = 0; s < 2; ++s) {
    uint32_t len = 0;
    std::memcpy(&len, &b[at], 4);
    at += 4 + len;
  }
  return at + 16;
}

void expect_refused(const std::vector<uint8_t>& bytes, const std::string& needle) {
  const auto f = [&] { Runtime().deserialize(bytes, "bad.plan"); };
  EXPECT_EQ(test::code_of(f), ErrorCode::kBadInput) << needle;
  const std::string m = msg_of(f);
  EXPECT_NE(m.find("bad.plan"), std::string::npos) << m;
  EXPECT_NE(m.find(needle), std::string::npos) << m;
  // Tools that only summarize refuse it too.
  EXPECT_EQ(test::code_of([&] { Runtime().summarize(bytes, "bad.plan"); }), ErrorCode::kBadInput) << needle;
}

TEST(ProfilePlan, CorruptContainersAreRefused) {
  const std::vector<uint8_t>& good = built().plan;
  const size_t p = payload_at(good);

  std::vector<uint8_t> b = good;
  b[b.size() - 100] ^= 1;
  expect_refused(b, "checksum mismatch");

  expect_refused(std::vector<uint8_t>(good.begin(), good.end() - 10), "truncated");
  expect_refused(std::vector<uint8_t>(good.begin(), good.begin() + 20), "corrupt");

  b = good;
  b[8] = 9;  // container format version
  expect_refused(b, "container format version 9, this kiln reads version 1");

  b = good;
  b[p] = uint8_t(plan::kFormatVersion + 1);  // graph format version
  repair(b);
  expect_refused(b, "graphs of plan format version " + std::to_string(plan::kFormatVersion + 1));

  b = good;
  b[p + 4] = 5;  // min 5 > opt 4
  repair(b);
  expect_refused(b, "is not ordered");

  b = good;
  b[p + 16] = b[p + 17] = b[p + 18] = b[p + 19] = 0;  // no shared constants
  repair(b);
  expect_refused(b, "is corrupt (");

  b = good;
  b.push_back(0);
  b.push_back(0);
  repair(b);
  expect_refused(b, "trailing bytes");

  // Byte changes all through a small container are refused or load: never a
  // crash, never an internal error.
  const std::string model = temp_path("small.onnx");
  profile_test::save(conv_gemm_model(conv_gemm_weights(3)), model);
  const std::vector<uint8_t> small = Builder().build_profile(model, {}, {1, 2, 3});
  for (size_t at = payload_at(small); at < small.size(); at += 3) {
    b = small;
    b[at] ^= 0x5a;
    repair(b);
    try {
      auto e = Runtime().deserialize(b, "fuzzed.plan");
      (void)e->create_context();
    } catch (const Error& e) {
      EXPECT_NE(e.code(), ErrorCode::kInternal) << "byte " << at << ": " << e.what();
    }
  }
}

TEST(ProfilePlan, EveryTruncationAndFlippedByteIsBadInput) {
  const std::string model = temp_path("tiny.onnx");
  profile_test::save(conv_gemm_model(conv_gemm_weights(2)), model);
  const std::vector<uint8_t> good = Builder().build_profile(model, {}, {1, 2, 2});
  for (size_t n = 0; n < good.size(); ++n) {
    const std::vector<uint8_t> cut(good.begin(), good.begin() + n);
    ASSERT_EQ(test::code_of([&] { Runtime().deserialize(cut, "cut.plan"); }), ErrorCode::kBadInput) << n;
  }
  for (size_t at = 0; at < good.size(); ++at) {
    std::vector<uint8_t> b = good;
    b[at] ^= 0x10;
    ASSERT_EQ(test::code_of([&] { Runtime().deserialize(b, "flip.plan"); }), ErrorCode::kBadInput) << at;
  }
}

}  // namespace
}  // namespace kiln
