// Builder::build_profile: which models and profiles it refuses, and INT8
// profiles calibrated once with the scales (and float layers) shared.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "engine/plan.h"
#include "engine/profile_models.h"
#include "engine/profile_plan.h"
#include "kiln/kiln.h"

namespace kiln {
namespace {

using profile_test::conv_gemm_model;
using profile_test::conv_gemm_weights;
using profile_test::temp_path;

Error error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected a kiln::Error";
  return Error(ErrorCode::kInternal, "none");
}

std::string saved(const onnx_test::ModelBuilder& mb, const std::string& name) {
  const std::string path = temp_path(name);
  profile_test::save(mb, path);
  return path;
}

TEST(BuildProfile, RefusesOutputsWithoutBatchAxis) {
  const std::string model = saved(conv_gemm_model(conv_gemm_weights(4), -1, "batchless"), "batchless.onnx");
  const Error e = error_of([&] { Builder().build_profile(model, {}, {1, 2, 4}); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find("output 's'"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("no batch axis"), std::string::npos) << e.what();
  // The same model builds at one batch.
  ParseOptions o;
  o.batch = 2;
  EXPECT_FALSE(Builder().build(*parse_onnx(model, o)).empty());
}

TEST(BuildProfile, RefusesOutputsWithDataDependentRows) {
  using onnx::TensorProto;
  onnx_test::ModelBuilder mb(17);
  mb.input("boxes", TensorProto::FLOAT, {-1, 6, 4}, {"N"});
  mb.input("scores", TensorProto::FLOAT, {-1, 1, 6}, {"N"});
  onnx::TensorProto k;
  k.set_name("k");
  k.set_data_type(TensorProto::INT64);
  k.add_dims(1);
  k.add_int64_data(3);
  *mb.g->add_initializer() = k;
  mb.node("NonMaxSuppression", {"boxes", "scores", "k"}, {"selected"}, "nms");
  mb.output("selected");
  const std::string model = saved(mb, "nms.onnx");
  const Error e = error_of([&] { Builder().build_profile(model, {}, {1, 2, 4}); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find("output 'selected'"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("data-dependent row count"), std::string::npos) << e.what();
}

TEST(BuildProfile, RefusesModelsWithoutBatchDimension) {
  const std::string model = saved(conv_gemm_model(conv_gemm_weights(4), 2), "fixed.onnx");
  const Error e = error_of([&] { Builder().build_profile(model, {}, {1, 2, 4}); });
  EXPECT_EQ(e.code(), ErrorCode::kUsage);
  EXPECT_NE(std::string(e.what()).find("the model has no batch dimension"), std::string::npos) << e.what();
}

TEST(BuildProfile, RefusesBadProfilesAndAFixedBatch) {
  const std::string model = saved(conv_gemm_model(conv_gemm_weights(4)), "usage.onnx");
  for (BatchProfile p : {BatchProfile{0, 1, 2}, BatchProfile{4, 2, 8}, BatchProfile{1, 9, 8}})
    EXPECT_EQ(error_of([&] { Builder().build_profile(model, {}, p); }).code(), ErrorCode::kUsage);
  ParseOptions o;
  o.batch = 2;
  EXPECT_EQ(error_of([&] { Builder().build_profile(model, o, {1, 2, 4}); }).code(), ErrorCode::kUsage);
}

TEST(BuildProfile, OneBatchProfile) {
  const std::string model = saved(conv_gemm_model(conv_gemm_weights(4)), "one.onnx");
  auto plan = Builder().build_profile(model, {}, {3, 3, 3});
  auto p = plan::read_profile_plan(plan.data(), plan.size(), "one.plan");
  ASSERT_EQ(p.specs.size(), 1u);
  EXPECT_EQ(p.specs[0].batch, 3);
  auto ctx = Runtime().deserialize(plan, "one.plan")->create_context();
  EXPECT_EQ(ctx->run({{"x", HostTensor::zeros(DataType::kFloat32, {3, 3, 6, 6})}}).at("y").shape,
            (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(test::code_of([&] { ctx->run({{"x", HostTensor::zeros(DataType::kFloat32, {2, 3, 6, 6})}}); }),
            ErrorCode::kBadInput);
}

// Random batches at a fixed batch size; counts how often it was asked.
class TestCalibrator : public Calibrator {
 public:
  TestCalibrator(int batch, int count) : batch_(batch), count_(count) {}
  bool next_batch(std::map<std::string, HostTensor>& inputs) override {
    if (given_ >= count_) return false;
    ++given_;
    ++total_;
    const auto v = profile_test::values(size_t(batch_) * 3 * 36, uint32_t(100 + given_));
    inputs["x"] = profile_test::host_floats({batch_, 3, 6, 6}, v);
    return true;
  }
  int batch_count() const override { return count_; }
  bool rewind() override {
    given_ = 0;
    return true;
  }
  int total() const { return total_; }

 private:
  int batch_, count_, given_ = 0, total_ = 0;
};

// Per specialization: QConv layers and their scales.
std::map<int, std::map<std::string, std::vector<float>>> qconv_scales(const std::vector<uint8_t>& bytes) {
  plan::ProfilePlan p = plan::read_profile_plan(bytes.data(), bytes.size(), "int8.plan");
  std::map<int, std::map<std::string, std::vector<float>>> out;
  for (auto& s : p.specs) {
    auto& layers = out[s.batch];
    for (auto& n : s.graph->nodes())
      if (n->op_type == "QConv")
        layers[n->name] = {n->f("x_scale", 0), n->has("y_scale") ? n->f("y_scale", 0) : 0.f};
  }
  return out;
}

TEST(BuildProfile, Int8CalibratesOnceAtOptAndSharesTheScales) {
  const profile_test::ConvGemmWeights wt = conv_gemm_weights(4);
  const std::string model = saved(conv_gemm_model(wt), "int8.onnx");
  TestCalibrator cal(4, 3);
  BuilderConfig cfg;
  cfg.int8 = true;
  cfg.calibration.calibrator = &cal;
  cfg.calibration.method = CalibrationMethod::kMinMax;
  cfg.calibration.cache_path = temp_path("int8.cache");
  std::filesystem::remove(cfg.calibration.cache_path);
  const auto plan = Builder(cfg).build_profile(model, {}, {1, 4, 8});
  EXPECT_EQ(cal.total(), 3);  // one calibration pass, at the opt batch
  EXPECT_TRUE(std::filesystem::exists(cfg.calibration.cache_path));
  const auto scales = qconv_scales(plan);
  ASSERT_EQ(scales.size(), 4u);
  ASSERT_EQ(scales.at(4).size(), 1u);
  for (auto& [batch, layers] : scales) EXPECT_EQ(layers, scales.at(4)) << "batch " << batch;

  // INT8 results stay near the float64 reference at every batch.
  auto ctx = Runtime().deserialize(plan, "int8.plan")->create_context();
  for (int n : {1, 3, 8}) {
    const auto x = profile_test::values(size_t(n) * 3 * 36, uint32_t(200 + n));
    const HostTensor y = ctx->run({{"x", profile_test::host_floats({n, 3, 6, 6}, x)}}).at("y");
    const auto ref = profile_test::conv_gemm_reference(wt, x, n);
    double scale = 0, err = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      scale = std::max(scale, std::abs(ref[i]));
      err = std::max(err, std::abs(double(y.as<float>()[i]) - ref[i]));
    }
    EXPECT_LT(err, 0.05 * scale) << "batch " << n;
  }

  // Without a cache of the user's, a temporary one carries the scales.
  TestCalibrator cal2(4, 3);
  cfg.calibration.calibrator = &cal2;
  cfg.calibration.cache_path.clear();
  EXPECT_EQ(qconv_scales(Builder(cfg).build_profile(model, {}, {1, 4, 8})), scales);
  EXPECT_EQ(cal2.total(), 3);
}

TEST(BuildProfile, Int8GuardChoicesReachEverySpecialization) {
  const std::string model = saved(conv_gemm_model(conv_gemm_weights(4)), "guard.onnx");
  TestCalibrator cal(2, 2);
  BuilderConfig cfg;
  cfg.int8 = true;
  cfg.calibration.calibrator = &cal;
  cfg.calibration.method = CalibrationMethod::kMinMax;
  cfg.int8_guard = true;
  cfg.int8_guard_bound = 1e-12;  // unreachable: the guard returns every conv to float
  const auto plan = Builder(cfg).build_profile(model, {}, {1, 2, 4});
  const auto scales = qconv_scales(plan);
  ASSERT_EQ(scales.size(), 3u);
  for (auto& [batch, layers] : scales) EXPECT_TRUE(layers.empty()) << "batch " << batch;
  // Without the guard the conv is INT8 in every specialization.
  TestCalibrator cal2(2, 2);
  cfg.calibration.calibrator = &cal2;
  cfg.int8_guard = false;
  for (auto& [batch, layers] : qconv_scales(Builder(cfg).build_profile(model, {}, {1, 2, 4})))
    EXPECT_EQ(layers.size(), 1u) << "batch " << batch;
}

}  // namespace
}  // namespace kiln
