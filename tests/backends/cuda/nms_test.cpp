// EfficientNMS_TRT's CUDA kernels against its CPU reference (the oracle the
// README names), bit for bit: num_detections, boxes, classes and raw scores
// equal; with score_activation the sigmoid may differ by one fp32 ulp (the
// README allows it: exp may round differently on the device). GPU outputs are
// poisoned first, so an unwritten row fails. Cases cover random inputs, ties,
// everything suppressed (the kernels must look past their first tier),
// many classes (SSD300 shape), batches, class-agnostic, sigmoid, both box
// codings with and without anchors, NaN / inf / -0 scores, degenerate boxes,
// and the registry, parity-harness and CUDA-engine paths.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

#include "backends/cuda/common.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/parity.h"
#include "kiln/kiln.h"
#include "kiln/plugin.h"
#include "onnx/import_test_util.h"

namespace kiln {
namespace {

struct Config {
  int64_t n = 1, b = 10, c = 1;
  bool per_class_boxes = false;
  int64_t anchor_batch = 0;  // 0 = no anchors, else 1 or n
  float score_threshold = 0.2f, iou_threshold = 0.5f;
  int64_t k = 20, background = -1, coding = 0;
  bool activation = false, agnostic = false;
};

struct Data {
  std::vector<float> boxes, scores, anchors;
};

struct Result {
  std::vector<int32_t> num, classes;
  std::vector<float> boxes, scores;
};

std::unique_ptr<Plugin> make_plugin(const Config& cfg) {
  const PluginCreator* cr = PluginRegistry::global().find("EfficientNMS_TRT", "1", "");
  if (!cr) throw std::runtime_error("EfficientNMS_TRT is not registered");
  FieldCollection f;
  f.set_float("score_threshold", cfg.score_threshold)
      .set_float("iou_threshold", cfg.iou_threshold)
      .set_int("max_output_boxes", cfg.k)
      .set_int("background_class", cfg.background)
      .set_int("score_activation", cfg.activation)
      .set_int("class_agnostic", cfg.agnostic)
      .set_int("box_coding", cfg.coding);
  return cr->deserialize("nms", cr->create("nms", f)->serialize());
}

std::vector<std::vector<int64_t>> input_shapes(const Config& cfg) {
  std::vector<std::vector<int64_t>> s;
  if (cfg.per_class_boxes) s.push_back({cfg.n, cfg.b, cfg.c, 4});
  else s.push_back({cfg.n, cfg.b, 4});
  s.push_back({cfg.n, cfg.b, cfg.c});
  if (cfg.anchor_batch) s.push_back({cfg.anchor_batch, cfg.b, 4});
  return s;
}

// A configured plugin with its tensor descriptors.
struct Prepared {
  std::unique_ptr<Plugin> p;
  std::vector<PluginTensorDesc> ins, outs;
  size_t workspace = 0;
};

Prepared prepare(const Config& cfg) {
  Prepared r;
  r.p = make_plugin(cfg);
  const auto shapes = input_shapes(cfg);
  const auto out_shapes = r.p->output_shapes(shapes);
  const auto out_types = r.p->output_dtypes({shapes.size(), DataType::kFloat32});
  for (auto& s : shapes) r.ins.push_back({DataType::kFloat32, s, TensorFormat::kLinear});
  for (size_t k = 0; k < out_shapes.size(); ++k) r.outs.push_back({out_types[k], out_shapes[k], TensorFormat::kLinear});
  r.p->set_tactic(r.p->tactics().at(0));
  r.p->configure(r.ins, r.outs);
  r.workspace = r.p->workspace_size(r.ins, r.outs);
  return r;
}

Result run_cpu(const Config& cfg, const Data& d) {
  Prepared pr = prepare(cfg);
  std::vector<uint64_t> ws(pr.workspace / 8 + 8);
  Result r;
  r.num.assign(size_t(cfg.n), -7);
  r.boxes.assign(size_t(cfg.n * cfg.k * 4), 9.f);
  r.scores.assign(size_t(cfg.n * cfg.k), 9.f);
  r.classes.assign(size_t(cfg.n * cfg.k), -7);
  std::vector<const void*> ip = {d.boxes.data(), d.scores.data()};
  if (cfg.anchor_batch) ip.push_back(d.anchors.data());
  std::vector<void*> op = {r.num.data(), r.boxes.data(), r.scores.data(), r.classes.data()};
  pr.p->execute(pr.ins, pr.outs, ip.data(), op.data(), ws.data());
  return r;
}

template <typename T> cuda::DevicePtr to_device(const std::vector<T>& v) {
  return cuda::upload(v.data(), v.size() * sizeof(T));
}

template <typename T> void from_device(std::vector<T>& v, const cuda::DevicePtr& p) {
  if (!v.empty()) cuda::check(cudaMemcpy(v.data(), p.get(), v.size() * sizeof(T), cudaMemcpyDeviceToHost), "download");
}

// Runs the plugin's enqueue; `ms` (if set) receives the median of `timed` runs.
Result run_gpu(const Config& cfg, const Data& d, double* ms = nullptr, int timed = 20) {
  Prepared pr = prepare(cfg);
  std::vector<cuda::DevicePtr> in;
  in.reserve(3);
  in.push_back(to_device(d.boxes));
  in.push_back(to_device(d.scores));
  if (cfg.anchor_batch) in.push_back(to_device(d.anchors));
  Result r;
  r.num.resize(size_t(cfg.n));
  r.boxes.resize(size_t(cfg.n * cfg.k * 4));
  r.scores.resize(size_t(cfg.n * cfg.k));
  r.classes.resize(size_t(cfg.n * cfg.k));
  const size_t bytes[4] = {r.num.size() * 4, r.boxes.size() * 4, r.scores.size() * 4, r.classes.size() * 4};
  std::vector<cuda::DevicePtr> out;
  for (size_t b : bytes) {
    out.push_back(cuda::device_alloc(b));
    cuda::check(cudaMemset(out.back().get(), 0xFF, b < 256 ? 256 : b), "poison");  // NaN / -1
  }
  cuda::DevicePtr ws = cuda::device_alloc(pr.workspace);
  std::vector<const void*> ip;
  for (auto& p : in) ip.push_back(p.get());
  std::vector<void*> op;
  for (auto& p : out) op.push_back(p.get());
  cudaStream_t s = nullptr;
  cuda::check(cudaStreamCreate(&s), "cudaStreamCreate");
  pr.p->enqueue(pr.ins, pr.outs, ip.data(), op.data(), ws.get(), s);
  cuda::check(cudaStreamSynchronize(s), "EfficientNMS_TRT enqueue");
  if (ms) {
    cudaEvent_t e0, e1;
    cuda::check(cudaEventCreate(&e0), "event");
    cuda::check(cudaEventCreate(&e1), "event");
    std::vector<double> t;
    for (int i = 0; i < timed; ++i) {
      cuda::check(cudaEventRecord(e0, s), "record");
      pr.p->enqueue(pr.ins, pr.outs, ip.data(), op.data(), ws.get(), s);
      cuda::check(cudaEventRecord(e1, s), "record");
      cuda::check(cudaEventSynchronize(e1), "sync");
      float f = 0;
      cuda::check(cudaEventElapsedTime(&f, e0, e1), "elapsed");
      t.push_back(f);
    }
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    *ms = t[t.size() / 2];
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
  }
  cudaStreamDestroy(s);
  from_device(r.num, out[0]);
  from_device(r.boxes, out[1]);
  from_device(r.scores, out[2]);
  from_device(r.classes, out[3]);
  return r;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Distance in ulps between two finite floats of the same sign.
int64_t ulps(float a, float b) { return std::llabs(int64_t(bits_of(a)) - int64_t(bits_of(b))); }

void expect_same(const Config& cfg, const Data& d, const std::string& what, Result* gpu_out = nullptr) {
  SCOPED_TRACE(what);
  const Result cpu = run_cpu(cfg, d);
  const Result gpu = run_gpu(cfg, d);
  ASSERT_EQ(gpu.num, cpu.num);
  int reported = 0;
  for (int64_t row = 0; row < cfg.n * cfg.k && reported < 5; ++row) {
    const size_t r = size_t(row);
    bool same = gpu.classes[r] == cpu.classes[r] && std::memcmp(&gpu.boxes[r * 4], &cpu.boxes[r * 4], 16) == 0;
    same = same && (bits_of(gpu.scores[r]) == bits_of(cpu.scores[r]) ||
                    (cfg.activation && std::isfinite(cpu.scores[r]) && ulps(gpu.scores[r], cpu.scores[r]) <= 1));
    if (!same) {
      ++reported;
      ADD_FAILURE() << "image " << row / cfg.k << " row " << row % cfg.k << ": cpu class " << cpu.classes[r]
                    << " score " << cpu.scores[r] << " box [" << cpu.boxes[r * 4] << "," << cpu.boxes[r * 4 + 1] << ","
                    << cpu.boxes[r * 4 + 2] << "," << cpu.boxes[r * 4 + 3] << "], gpu class " << gpu.classes[r]
                    << " score " << gpu.scores[r] << " box [" << gpu.boxes[r * 4] << "," << gpu.boxes[r * 4 + 1] << ","
                    << gpu.boxes[r * 4 + 2] << "," << gpu.boxes[r * 4 + 3] << "]";
    }
  }
  if (gpu_out) *gpu_out = gpu;
}

enum class Scores { kUniform, kQuantized, kTied };

// Boxes around random centres (sizes scaled by `size`); some corners swapped,
// a few degenerate; with anchors, small deltas around them.
Data random_data(const Config& cfg, uint32_t seed, Scores mode = Scores::kUniform, float size = 1.f,
                 bool identical_boxes = false) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Data d;
  const int64_t cb = cfg.per_class_boxes ? cfg.c : 1;
  for (int64_t i = 0; i < cfg.n * cfg.b * cb; ++i) {
    if (cfg.anchor_batch) {
      for (int j = 0; j < 4; ++j) d.boxes.push_back((u(rng) - 0.5f) * (cfg.coding == 0 ? 0.1f : 0.6f));
      continue;
    }
    float xc = u(rng), yc = u(rng), w = (0.05f + 0.35f * u(rng)) * size, h = (0.05f + 0.35f * u(rng)) * size;
    if (identical_boxes) xc = 0.5f, yc = 0.4f, w = 0.3f, h = 0.2f;
    if (cfg.coding == 1) {
      d.boxes.insert(d.boxes.end(), {xc, yc, w, h});
      continue;
    }
    float x1 = xc - w / 2, x2 = xc + w / 2;
    if (!identical_boxes && u(rng) < 0.1f) std::swap(x1, x2);
    if (!identical_boxes && u(rng) < 0.02f) x2 = x1;  // zero width
    d.boxes.insert(d.boxes.end(), {x1, yc - h / 2, x2, yc + h / 2});
  }
  for (int64_t i = 0; i < cfg.n * cfg.b * cfg.c; ++i) {
    float s = cfg.activation ? (u(rng) - 0.5f) * 8.f : u(rng);
    if (mode == Scores::kQuantized) s = std::floor(s * 4.f) / 4.f;
    if (mode == Scores::kTied) s = 0.5f;
    d.scores.push_back(s);
  }
  for (int64_t i = 0; i < cfg.anchor_batch * cfg.b; ++i) {
    const float xc = u(rng), yc = u(rng), w = 0.05f + 0.3f * u(rng), h = 0.05f + 0.3f * u(rng);
    if (cfg.coding == 1) d.anchors.insert(d.anchors.end(), {xc, yc, w, h});
    else d.anchors.insert(d.anchors.end(), {xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2});
  }
  return d;
}

TEST(EfficientNmsCuda, RandomizedMatchesCpu) {
  KILN_REQUIRE_GPU();
  std::mt19937 pick(2024);
  for (uint32_t t = 0; t < 150; ++t) {
    Config cfg;
    cfg.n = 1 + int64_t(pick() % 3);
    cfg.b = int64_t(pick() % 80);
    cfg.c = 1 + int64_t(pick() % 7);
    cfg.per_class_boxes = pick() % 4 == 0;
    cfg.coding = int64_t(pick() % 2);
    cfg.anchor_batch = pick() % 3 == 0 ? (pick() % 2 ? 1 : cfg.n) : 0;
    cfg.activation = pick() % 3 == 0;
    cfg.agnostic = pick() % 3 == 0;
    cfg.background = pick() % 4 == 0 ? int64_t(pick() % uint32_t(cfg.c)) : -1;
    cfg.score_threshold = cfg.activation ? 0.3f : float(pick() % 50) / 100.f;
    cfg.iou_threshold = float(pick() % 101) / 100.f;
    cfg.k = 1 + int64_t(pick() % 40);
    expect_same(cfg, random_data(cfg, t, pick() % 4 == 0 ? Scores::kQuantized : Scores::kUniform),
                "case " + std::to_string(t));
  }
}

TEST(EfficientNmsCuda, ZeroBoxesAndNothingAboveThreshold) {
  KILN_REQUIRE_GPU();
  Config cfg;
  cfg.n = 2, cfg.b = 0, cfg.c = 3, cfg.k = 5;
  Result g;
  expect_same(cfg, random_data(cfg, 1), "zero boxes", &g);
  EXPECT_EQ(g.num, (std::vector<int32_t>{0, 0}));
  cfg.b = 30, cfg.score_threshold = 1.f;  // scores are in [0, 1)
  expect_same(cfg, random_data(cfg, 2), "nothing above the threshold", &g);
  EXPECT_EQ(g.num, (std::vector<int32_t>{0, 0}));
  cfg.activation = true;  // sigmoid(s) > 1 never holds
  expect_same(cfg, random_data(cfg, 3), "activation, threshold 1", &g);
  EXPECT_EQ(g.num, (std::vector<int32_t>{0, 0}));
}

TEST(EfficientNmsCuda, AllSuppressedWalksEveryCandidate) {
  KILN_REQUIRE_GPU();
  // 12000 candidates on one box: class-wise NMS keeps the first of each
  // class, so the kernels walk every candidate, far past their first tier.
  Config cfg;
  cfg.b = 3000, cfg.c = 4, cfg.k = 100, cfg.score_threshold = 0.f;
  for (Scores mode : {Scores::kUniform, Scores::kTied}) {
    const Data d = random_data(cfg, 5, mode, 1.f, true);
    Result g;
    cfg.agnostic = false;
    expect_same(cfg, d, "class-wise", &g);
    EXPECT_EQ(g.num[0], 4);
    if (mode == Scores::kTied) {  // box 0 wins for every class, classes in order
      EXPECT_EQ(std::vector<int32_t>(g.classes.begin(), g.classes.begin() + 4), (std::vector<int32_t>{0, 1, 2, 3}));
    }
    cfg.agnostic = true;
    expect_same(cfg, d, "agnostic", &g);
    EXPECT_EQ(g.num[0], 1);
  }
  // Big random boxes, low IoU threshold: most candidates are suppressed.
  cfg = Config{};
  cfg.n = 2, cfg.b = 6000, cfg.c = 2, cfg.k = 2000, cfg.score_threshold = 0.f, cfg.iou_threshold = 0.1f;
  expect_same(cfg, random_data(cfg, 6, Scores::kUniform, 4.f), "heavy suppression");
  cfg.agnostic = true;
  expect_same(cfg, random_data(cfg, 7, Scores::kUniform, 4.f), "heavy suppression, agnostic");
}

TEST(EfficientNmsCuda, TiesBreakByBoxThenClass) {
  KILN_REQUIRE_GPU();
  Config cfg;
  cfg.b = 3, cfg.c = 2, cfg.k = 6, cfg.score_threshold = 0.f;
  Data d;
  for (int i = 0; i < 3; ++i) d.boxes.insert(d.boxes.end(), {float(i), 0.f, float(i) + 0.5f, 0.5f});
  d.scores.assign(6, 0.5f);
  Result g;
  expect_same(cfg, d, "six tied", &g);
  EXPECT_EQ(g.classes, (std::vector<int32_t>{0, 1, 0, 1, 0, 1}));
  // Many equal scores: tie groups larger than the kernels' tiers.
  cfg = Config{};
  cfg.n = 2, cfg.b = 4000, cfg.c = 5, cfg.k = 600, cfg.score_threshold = 0.f, cfg.iou_threshold = 0.3f;
  expect_same(cfg, random_data(cfg, 8, Scores::kQuantized), "quantized scores");
  Data t = random_data(cfg, 9);
  for (size_t i = 0; i < t.scores.size(); ++i) t.scores[i] = i % 5 == 0 ? 0.6f + float(i % 977) * 1e-4f : 0.5f;
  expect_same(cfg, t, "distinct scores, then 32000 tied");
}

TEST(EfficientNmsCuda, ManyClassesLikeSsd300) {
  KILN_REQUIRE_GPU();
  // SSD300 on COCO: 8732 priors x 91 classes, background 0, center-size
  // deltas on shared anchors, threshold 0.01, IoU 0.45, 200 kept.
  Config cfg;
  cfg.b = 8732, cfg.c = 91, cfg.background = 0, cfg.coding = 1, cfg.anchor_batch = 1;
  cfg.score_threshold = 0.01f, cfg.iou_threshold = 0.45f, cfg.k = 200;
  for (int64_t n : {1, 8}) {
    cfg.n = n;
    const Data d = random_data(cfg, uint32_t(10 + n));
    expect_same(cfg, d, "ssd batch " + std::to_string(n));
    double ms = 0;
    run_gpu(cfg, d, &ms);
    std::printf("[ info ] EfficientNMS_TRT CUDA, SSD300 shape, batch %ld: %.4f ms (median of 20, plugin enqueue)\n",
                long(n), ms);
    RecordProperty("ssd_batch" + std::to_string(n) + "_us", int(ms * 1000));
  }
  cfg.n = 2, cfg.activation = true, cfg.score_threshold = 0.5f, cfg.agnostic = true, cfg.k = 300;
  expect_same(cfg, random_data(cfg, 12), "ssd shape, sigmoid, agnostic, 300 kept");
}

TEST(EfficientNmsCuda, CodingsAnchorsAndPerClassBoxes) {
  KILN_REQUIRE_GPU();
  Config cfg;
  cfg.n = 3, cfg.b = 500, cfg.c = 6, cfg.k = 50, cfg.score_threshold = 0.3f;
  for (int64_t coding : {0, 1})
    for (int64_t anchors : {int64_t(0), int64_t(1), cfg.n})
      for (bool per_class : {false, true}) {
        cfg.coding = coding, cfg.anchor_batch = anchors, cfg.per_class_boxes = per_class;
        expect_same(cfg, random_data(cfg, uint32_t(20 + coding * 7 + anchors * 3 + per_class)),
                    "coding " + std::to_string(coding) + " anchors " + std::to_string(anchors) +
                        (per_class ? " per-class" : " shared"));
      }
}

TEST(EfficientNmsCuda, SigmoidAndManyKeptBoxes) {
  KILN_REQUIRE_GPU();
  // More than 256 kept boxes live in the workspace instead of shared memory.
  Config cfg;
  cfg.n = 2, cfg.b = 3000, cfg.c = 3, cfg.k = 1000, cfg.activation = true, cfg.score_threshold = 0.2f;
  cfg.iou_threshold = 0.5f;
  expect_same(cfg, random_data(cfg, 30), "sigmoid, 1000 kept");
  cfg.agnostic = true, cfg.background = 1;
  expect_same(cfg, random_data(cfg, 31), "sigmoid, agnostic, background 1");
}

TEST(EfficientNmsCuda, SpecialScoresAndDegenerateBoxes) {
  KILN_REQUIRE_GPU();
  Config cfg;
  cfg.b = 8, cfg.c = 2, cfg.k = 16, cfg.score_threshold = -1.f, cfg.iou_threshold = 0.f;
  const float nan = std::nanf(""), inf = INFINITY;
  Data d;
  d.boxes = {0.2f, 0.2f, 0.2f, 0.8f,  0.2f, 0.2f, 0.2f, 0.8f, 0.f,  0.f,  1.f, 1.f, 1.f, 0.f, 2.f, 1.f,
             nan,  0.f,  1.f,  1.f,   0.f,  0.f,  1.f,  1.f,  0.5f, 0.5f, 0.f, 0.f, 3.f, 3.f, 3.f, 3.f};
  d.scores = {0.9f, -0.f, 0.f, inf, -inf, nan, 0.7f, 0.7f, -0.5f, 0.25f, 0.6f, 0.6f, 0.f, -0.f, 0.3f, 0.3f};
  Result g;
  expect_same(cfg, d, "special values", &g);
  EXPECT_GT(g.num[0], 0);
  cfg.activation = true, cfg.score_threshold = 0.f;  // every raw score but NaN and -inf passes
  expect_same(cfg, d, "special values, sigmoid");
}

TEST(EfficientNmsCuda, RunsThroughTheCudaRegistry) {
  KILN_REQUIRE_GPU();
  Config cfg;
  cfg.n = 2, cfg.b = 40, cfg.c = 3, cfg.k = 10;
  const Data d = random_data(cfg, 40);
  ir::Tensor boxes(DataType::kFloat32, {cfg.n, cfg.b, 4}), scores(DataType::kFloat32, {cfg.n, cfg.b, cfg.c});
  std::copy(d.boxes.begin(), d.boxes.end(), boxes.data<float>());
  std::copy(d.scores.begin(), d.scores.end(), scores.data<float>());
  std::map<std::string, ir::Attribute> attrs;
  attrs["plugin_version"] = test::attr_s("1");
  attrs["plugin_namespace"] = test::attr_s("");
  const std::vector<uint8_t> bytes = make_plugin(cfg)->serialize();
  ir::Tensor data(DataType::kUInt8, {int64_t(bytes.size())});
  std::copy(bytes.begin(), bytes.end(), data.data<uint8_t>());
  attrs["plugin_data"].kind = ir::Attribute::Kind::kTensor;
  attrs["plugin_data"].t = data;
  test::ParityOptions o;
  o.domain = "kiln.plugin";
  o.tol_fp32 = 0;  // exact
  auto rep = test::check_cuda_parity("EfficientNMS_TRT", {test::in(boxes), test::in(scores)}, attrs, 4, o);
  EXPECT_EQ(rep.checked, 1);
  EXPECT_EQ(rep.tactics, (std::vector<std::string>{"plugin:sorted_greedy"}));
}

// boxes [N,B,4], scores [N,B,C] -> EfficientNMS_TRT -> four outputs.
onnx_test::ModelBuilder nms_model(const Config& cfg) {
  onnx_test::ModelBuilder mb;
  mb.input("boxes", onnx::TensorProto::FLOAT, {cfg.n, cfg.b, 4});
  mb.input("scores", onnx::TensorProto::FLOAT, {cfg.n, cfg.b, cfg.c});
  auto* node = mb.node("EfficientNMS_TRT", {"boxes", "scores"}, {"num", "det_boxes", "det_scores", "det_classes"},
                       "nms", "trt");
  mb.opset_import("trt", 1);
  onnx_test::attr_float(node, "score_threshold", cfg.score_threshold);
  onnx_test::attr_float(node, "iou_threshold", cfg.iou_threshold);
  onnx_test::attr_int(node, "max_output_boxes", cfg.k);
  onnx_test::attr_int(node, "background_class", cfg.background);
  const int types[4] = {onnx::TensorProto::INT32, onnx::TensorProto::FLOAT, onnx::TensorProto::FLOAT,
                        onnx::TensorProto::INT32};
  const char* names[4] = {"num", "det_boxes", "det_scores", "det_classes"};
  for (int k = 0; k < 4; ++k) {
    mb.output(names[k]);
    mb.g->mutable_output(k)->mutable_type()->mutable_tensor_type()->set_elem_type(types[k]);
  }
  return mb;
}

TEST(EfficientNmsCuda, CudaEngineMatchesCpuEngine) {
  KILN_REQUIRE_GPU();
  Config cfg;
  cfg.n = 2, cfg.b = 300, cfg.c = 7, cfg.k = 40, cfg.score_threshold = 0.1f, cfg.iou_threshold = 0.5f;
  cfg.background = 0;
  const auto mb = nms_model(cfg);
  auto net = parse_onnx_bytes(mb.m.SerializeAsString(), ".");
  BuilderConfig gpu_cfg;
  gpu_cfg.device = Device::kCuda;
  auto cpu_engine = Runtime().deserialize(Builder().build(*net), "cpu.plan");
  auto gpu_engine = Runtime().deserialize(Builder(gpu_cfg).build(*net), "gpu.plan");
  const NetworkSummary s = gpu_engine->summary();
  ASSERT_EQ(s.layers.size(), 1u);
  EXPECT_EQ(s.layers[0].tactic, "plugin:sorted_greedy");
  auto cpu_ctx = cpu_engine->create_context();
  auto gpu_ctx = gpu_engine->create_context();  // replays a CUDA graph after the first run
  for (uint32_t seed : {50u, 51u, 52u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const Data d = random_data(cfg, seed);
    HostTensor boxes = HostTensor::zeros(DataType::kFloat32, {cfg.n, cfg.b, 4});
    HostTensor scores = HostTensor::zeros(DataType::kFloat32, {cfg.n, cfg.b, cfg.c});
    std::copy(d.boxes.begin(), d.boxes.end(), boxes.as<float>());
    std::copy(d.scores.begin(), d.scores.end(), scores.as<float>());
    auto want = cpu_ctx->run({{"boxes", boxes}, {"scores", scores}});
    auto got = gpu_ctx->run({{"boxes", boxes}, {"scores", scores}});
    for (const char* name : {"num", "det_boxes", "det_scores", "det_classes"}) {
      ASSERT_EQ(got.at(name).shape, want.at(name).shape) << name;
      EXPECT_EQ(got.at(name).data, want.at(name).data) << name;
    }
    EXPECT_GT(want.at("num").as<int32_t>()[0], 0);
  }
}

}  // namespace
}  // namespace kiln
