// Batch-profile plans on the GPU: every batch against the float64 reference,
// the enqueue path serving the batch set_batch picks, and weights held
// once on the device however many specializations the plan has.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>

#include "backends/cuda/parity.h"
#include "engine/profile_models.h"
#include "kiln/kiln.h"

namespace kiln {
namespace {

using profile_test::conv_gemm_model;
using profile_test::conv_gemm_weights;
using profile_test::host_floats;
using profile_test::temp_path;

double rel_err(const HostTensor& y, const std::vector<double>& ref) {
  double scale = 1e-30, err = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    scale = std::max(scale, std::abs(ref[i]));
    err = std::max(err, std::abs(double(y.as<float>()[i]) - ref[i]));
  }
  return err / scale;
}

TEST(CudaProfileEngine, RunsEveryBatchAndEnqueuesTheSetBatch) {
  KILN_REQUIRE_GPU();
  const profile_test::ConvGemmWeights wt = conv_gemm_weights(64);
  const std::string model = temp_path("cuda_conv_gemm.onnx");
  profile_test::save(conv_gemm_model(wt), model);
  BuilderConfig cfg;
  cfg.device = Device::kCuda;
  auto engine = Runtime().deserialize(Builder(cfg).build_profile(model, {}, {1, 3, 8}), "gpu.plan");
  EXPECT_EQ(engine->profile().max, 8);
  auto ctx = engine->create_context();
  for (int n : {1, 2, 3, 5, 8}) {
    const auto x = profile_test::values(size_t(n) * 3 * 36, uint32_t(300 + n));
    const HostTensor y = ctx->run({{"x", host_floats({n, 3, 6, 6}, x)}}).at("y");
    ASSERT_EQ(y.shape, (std::vector<int64_t>{n, 64}));
    EXPECT_LT(rel_err(y, profile_test::conv_gemm_reference(wt, x, n)), 1e-3) << "batch " << n;
  }
  // device_address / enqueue: `n` rows written into the device buffers the
  // context serves now, one inference enqueued, `n` rows read back and
  // checked against the float64 reference.
  const auto enqueue_rows = [&](int n, uint32_t seed) {
    const auto x = profile_test::values(size_t(n) * 3 * 36, seed);
    ASSERT_NE(ctx->device_address("x"), nullptr);
    ASSERT_EQ(cudaMemcpy(ctx->device_address("x"), x.data(), x.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ctx->enqueue(nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    HostTensor y = HostTensor::zeros(DataType::kFloat32, {n, 64});
    ASSERT_EQ(cudaMemcpy(y.data.data(), ctx->device_address("y"), y.data.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_LT(rel_err(y, profile_test::conv_gemm_reference(wt, x, n)), 1e-3) << "enqueue of " << n << " rows";
  };
  enqueue_rows(8, 400);  // the max batch, served until set_batch
  // set_batch(5): the batch-8 specialization's buffers serve 5 rows; rows
  // 5..7 hold what was there (the batch above) and must not leak into 0..4.
  ASSERT_EQ(ctx->set_batch(5), 8);
  enqueue_rows(5, 401);
  // set_batch(2): the batch-2 specialization, made on demand, with its own buffers.
  ASSERT_EQ(ctx->set_batch(2), 2);
  enqueue_rows(2, 402);
  EXPECT_EQ(test::code_of([&] { ctx->set_batch(9); }), ErrorCode::kBadInput);
}

// Device memory an engine takes when loaded (weights, kernels' own copies).
int64_t load_bytes(const std::vector<uint8_t>& plan, std::unique_ptr<Engine>& keep) {
  size_t free_before = 0, free_after = 0, total = 0;
  cudaDeviceSynchronize();
  cudaMemGetInfo(&free_before, &total);
  keep = Runtime().deserialize(plan, "mem.plan");
  cudaDeviceSynchronize();
  cudaMemGetInfo(&free_after, &total);
  return int64_t(free_before) - int64_t(free_after);
}

// x[N,1024,2,2] -> 1x1 Conv 1024->2048 (8 MiB of FP32 weights) -> Relu ->
// GlobalAveragePool -> Flatten -> y[N,2048].
std::string big_conv_model() {
  using onnx::TensorProto;
  onnx_test::ModelBuilder mb(17);
  mb.input("x", TensorProto::FLOAT, {-1, 1024, 2, 2}, {"N"});
  *mb.g->add_initializer() = onnx_test::float_tensor("W", {2048, 1024, 1, 1}, profile_test::values(2048 * 1024, 5));
  mb.node("Conv", {"x", "W"}, {"c"}, "conv");
  mb.node("Relu", {"c"}, {"r"}, "relu");
  mb.node("GlobalAveragePool", {"r"}, {"p"}, "pool");
  mb.node("Flatten", {"p"}, {"y"}, "flatten");
  mb.output("y");
  const std::string path = temp_path("big_conv.onnx");
  profile_test::save(mb, path);
  return path;
}

// Five specializations (1, 2, 4, 8, 16) must not hold five copies of the
// weights: the constants are uploaded once, and the kernels' own repacked or
// converted copies of equal bytes are shared while the plan loads.
void check_weights_held_once(bool fp16) {
  const std::string model = big_conv_model();
  BuilderConfig cfg;
  cfg.device = Device::kCuda;
  cfg.fp16 = fp16;
  ParseOptions one;
  one.batch = 16;
  const auto single = Builder(cfg).build(*parse_onnx(model, one));
  const auto profile = Builder(cfg).build_profile(model, {}, {1, 4, 16});
  std::unique_ptr<Engine> warm, a, b;
  load_bytes(single, warm);  // libraries and lazily loaded kernels settle first
  const int64_t single_bytes = load_bytes(single, a);
  const int64_t profile_bytes = load_bytes(profile, b);
  const int64_t weights = 2048 * 1024 * (fp16 ? 2 : 4);
  EXPECT_GE(single_bytes, weights / 2);
  // Five unshared copies would be 3x and more; two forms of the weights (when
  // batches picked kernels that lay them out differently) stay below 2x.
  EXPECT_LT(profile_bytes, 2 * single_bytes) << "single " << single_bytes << ", profile " << profile_bytes;
}

TEST(CudaProfileEngine, WeightsAreHeldOnceFp32) {
  KILN_REQUIRE_GPU();
  check_weights_held_once(false);
}

TEST(CudaProfileEngine, WeightsAreHeldOnceFp16) {
  KILN_REQUIRE_GPU();
  check_weights_held_once(true);
}

}  // namespace
}  // namespace kiln
