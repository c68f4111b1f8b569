// ExecutionContext: input checking and concurrent contexts on one engine.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <thread>

#include "builder/network.h"
#include "engine/test_ops.h"
#include "kiln/kiln.h"
#include "support/op_test.h"

namespace kiln {
namespace {

std::unique_ptr<Engine> test_engine() {
  Network net;
  net.graph = test::make_test_graph();
  return Runtime().deserialize(Builder().build(net), "engine.plan");
}

std::map<std::string, HostTensor> good_inputs(uint32_t seed) {
  return {{"X", test::random_tensor(DataType::kFloat32, {2, 2, 5, 5}, seed).to_host()},
          {"Y", test::random_tensor(DataType::kFloat32, {2, 3, 5, 5}, seed + 1).to_host()}};
}

template <typename F> std::string bad_input_message(F f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBadInput) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(Engine, RunChecksEveryInput) {
  auto engine = test_engine();
  auto ctx = engine->create_context();
  auto in = good_inputs(1);

  auto missing = in;
  missing.erase("Y");
  EXPECT_EQ(bad_input_message([&] { ctx->run(missing); }), "input 'Y' (fp32[2,3,5,5]) is missing");

  auto unknown = in;
  unknown["x"] = in["X"];
  EXPECT_EQ(bad_input_message([&] { ctx->run(unknown); }), "unknown input 'x': the engine's inputs are 'X', 'Y'");

  auto dtype = in;
  dtype["X"] = HostTensor::zeros(DataType::kFloat16, {2, 2, 5, 5});
  EXPECT_EQ(bad_input_message([&] { ctx->run(dtype); }), "input 'X': expected fp32[2,2,5,5], got fp16[2,2,5,5]");

  auto shape = in;
  shape["Y"] = HostTensor::zeros(DataType::kFloat32, {1, 3, 5, 5});
  EXPECT_EQ(bad_input_message([&] { ctx->run(shape); }), "input 'Y': expected fp32[2,3,5,5], got fp32[1,3,5,5]");

  auto size = in;
  size["X"].data.pop_back();
  EXPECT_EQ(bad_input_message([&] { ctx->run(size); }),
            "input 'X' of shape [2,2,5,5] holds 399 bytes, expected 400");

  // The context still works after refusing inputs.
  auto out = ctx->run(in);
  EXPECT_EQ(out.size(), 5u);
}

// Contexts share the engine's kernels and own their buffers: several running
// at once must each get their own correct answers.
TEST(Engine, ContextsRunConcurrently) {
  auto engine = test_engine();
  auto g = test::make_test_graph();
  std::atomic<int> wrong{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      try {
        auto ctx = engine->create_context();
        for (int it = 0; it < 25; ++it) {
          uint32_t seed = uint32_t(100 * t + 2 * it);
          auto in = good_inputs(seed);
          auto out = ctx->run(in);
          auto xs = in["X"], ys = in["Y"];
          std::vector<float> x(xs.as<float>(), xs.as<float>() + xs.numel());
          std::vector<float> y(ys.as<float>(), ys.as<float>() + ys.numel());
          auto ref = test::reference(*g, x, y);
          const HostTensor& q = out.at("Q");
          for (size_t i = 0; i < ref.q.size(); ++i)
            if (std::fabs(q.as<float>()[i] - ref.q[i]) > 1e-5 * std::max(1.0, std::fabs(ref.q[i]))) {
              ++wrong;
              break;
            }
        }
      } catch (...) {
        ++errors;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(errors.load(), 0);
}

TEST(Engine, ContextOutlivesEngine) {
  auto engine = test_engine();
  auto ctx = engine->create_context();
  engine.reset();
  EXPECT_EQ(ctx->run(good_inputs(3)).size(), 5u);
}

}  // namespace
}  // namespace kiln
