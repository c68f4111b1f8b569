// EfficientNMS_TRT on the CPU against a brute-force reference written here:
// decode in double, score filter, sort, then the textbook O(n^2) greedy NMS
// (each selected box suppresses every later candidate it overlaps).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <random>

#include "kiln/plugin.h"

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

struct Det {
  double box[4];
  double score;
  int cls;
};

struct Result {
  std::vector<int32_t> num;
  std::vector<float> boxes, scores;
  std::vector<int32_t> classes;
};

// ---- reference ------------------------------------------------------------------

// Decoding follows README.md step 1, which fixes it in fp32 (a device kernel
// must round the same way); products are formed in double and rounded once,
// which is the fp32 product, so no fused multiply-add can sneak in.
float mul_f(float a, float b) { return float(double(a) * double(b)); }

std::array<double, 4> ref_decode(const Config& cfg, const float* d, const float* a) {
  float c[4];
  if (cfg.coding == 0) {
    for (int i = 0; i < 4; ++i) c[i] = a ? d[i] + a[i] : d[i];
  } else {
    float xc = d[0], yc = d[1], w = d[2], h = d[3];
    if (a) {
      xc = mul_f(d[0], a[2]) + a[0];
      yc = mul_f(d[1], a[3]) + a[1];
      w = float(std::exp(double(d[2])) * double(a[2]));
      h = float(std::exp(double(d[3])) * double(a[3]));
    }
    c[0] = xc - w / 2, c[1] = yc - h / 2, c[2] = xc + w / 2, c[3] = yc + h / 2;
  }
  return {std::min(c[0], c[2]), std::min(c[1], c[3]), std::max(c[0], c[2]), std::max(c[1], c[3])};
}

double ref_iou(const std::array<double, 4>& a, const std::array<double, 4>& b) {
  const double area_a = (a[2] - a[0]) * (a[3] - a[1]), area_b = (b[2] - b[0]) * (b[3] - b[1]);
  if (area_a <= 0 || area_b <= 0) return 0;
  const double w = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  const double h = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  const double inter = w * h;
  return inter <= 0 ? 0 : inter / (area_a + area_b - inter);
}

std::vector<std::vector<Det>> reference(const Config& cfg, const Data& d) {
  std::vector<std::vector<Det>> out(size_t(cfg.n));
  const int64_t cb = cfg.per_class_boxes ? cfg.c : 1;
  for (int64_t n = 0; n < cfg.n; ++n) {
    struct Cand { float raw; int64_t b, c; std::array<double, 4> box; };
    std::vector<Cand> cands;
    for (int64_t b = 0; b < cfg.b; ++b)
      for (int64_t c = 0; c < cfg.c; ++c) {
        if (c == cfg.background) continue;
        const float s = d.scores[size_t((n * cfg.b + b) * cfg.c + c)];
        const double score = cfg.activation ? 1.0 / (1.0 + std::exp(-double(s))) : double(s);
        if (!(score > double(cfg.score_threshold))) continue;
        const float* box = &d.boxes[size_t(((n * cfg.b + b) * cb + (cb == 1 ? 0 : c)) * 4)];
        const float* anc = cfg.anchor_batch ? &d.anchors[size_t(((cfg.anchor_batch == 1 ? 0 : n) * cfg.b + b) * 4)] : nullptr;
        cands.push_back({s, b, c, ref_decode(cfg, box, anc)});
      }
    std::sort(cands.begin(), cands.end(), [](const Cand& x, const Cand& y) {
      return x.raw != y.raw ? x.raw > y.raw : x.b != y.b ? x.b < y.b : x.c < y.c;
    });
    std::vector<bool> dead(cands.size(), false);
    for (size_t i = 0; i < cands.size(); ++i) {
      if (dead[i]) continue;
      if (int64_t(out[size_t(n)].size()) < cfg.k) {
        const Cand& x = cands[i];
        const double score = cfg.activation ? 1.0 / (1.0 + std::exp(-double(x.raw))) : double(x.raw);
        out[size_t(n)].push_back({{x.box[0], x.box[1], x.box[2], x.box[3]}, score, int(x.c)});
      }
      for (size_t j = i + 1; j < cands.size(); ++j)
        if ((cfg.agnostic || cands[j].c == cands[i].c) && ref_iou(cands[i].box, cands[j].box) > cfg.iou_threshold)
          dead[j] = true;
    }
  }
  return out;
}

// ---- kiln -----------------------------------------------------------------------

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
  // Through the byte form, as a plan would hold it.
  auto made = cr->create("nms", f);
  return cr->deserialize("nms", made->serialize());
}

std::vector<std::vector<int64_t>> input_shapes(const Config& cfg) {
  std::vector<std::vector<int64_t>> s;
  if (cfg.per_class_boxes) s.push_back({cfg.n, cfg.b, cfg.c, 4});
  else s.push_back({cfg.n, cfg.b, 4});
  s.push_back({cfg.n, cfg.b, cfg.c});
  if (cfg.anchor_batch) s.push_back({cfg.anchor_batch, cfg.b, 4});
  return s;
}

Result run_kiln(const Config& cfg, const Data& d) {
  auto p = make_plugin(cfg);
  const auto shapes = input_shapes(cfg);
  const auto out_shapes = p->output_shapes(shapes);
  const auto out_types = p->output_dtypes({shapes.size(), DataType::kFloat32});
  std::vector<PluginTensorDesc> ins, outs;
  for (auto& s : shapes) ins.push_back({DataType::kFloat32, s, TensorFormat::kLinear});
  for (size_t k = 0; k < out_shapes.size(); ++k) outs.push_back({out_types[k], out_shapes[k], TensorFormat::kLinear});
  for (size_t pos = 0; pos < ins.size() + outs.size(); ++pos) {
    const auto& desc = pos < ins.size() ? ins[pos] : outs[pos - ins.size()];
    EXPECT_TRUE(p->supports_format(int(pos), int(ins.size()), desc.dtype, TensorFormat::kLinear));
  }
  p->set_tactic(p->tactics().at(0));
  p->configure(ins, outs);
  std::vector<uint64_t> ws((p->workspace_size(ins, outs) + 7) / 8 + 1);
  Result r;
  // Outputs start as garbage so "rows past the detections are zero" is checked.
  r.num.assign(size_t(cfg.n), -7);
  r.boxes.assign(size_t(cfg.n * cfg.k * 4), 9.f);
  r.scores.assign(size_t(cfg.n * cfg.k), 9.f);
  r.classes.assign(size_t(cfg.n * cfg.k), -7);
  std::vector<const void*> ip = {d.boxes.data(), d.scores.data()};
  if (cfg.anchor_batch) ip.push_back(d.anchors.data());
  std::vector<void*> op = {r.num.data(), r.boxes.data(), r.scores.data(), r.classes.data()};
  p->execute(ins, outs, ip.data(), op.data(), ws.data());
  return r;
}

void compare(const Config& cfg, const Data& d, const std::string& what) {
  SCOPED_TRACE(what);
  const auto ref = reference(cfg, d);
  const Result got = run_kiln(cfg, d);
  for (int64_t n = 0; n < cfg.n; ++n) {
    const auto& dets = ref[size_t(n)];
    ASSERT_EQ(got.num[size_t(n)], int32_t(dets.size())) << "image " << n;
    for (int64_t j = 0; j < cfg.k; ++j) {
      const size_t row = size_t(n * cfg.k + j);
      if (j < int64_t(dets.size())) {
        EXPECT_EQ(got.classes[row], dets[size_t(j)].cls) << "image " << n << " row " << j;
        for (int i = 0; i < 4; ++i)
          EXPECT_NEAR(got.boxes[row * 4 + size_t(i)], dets[size_t(j)].box[i], 1e-5 * (1 + std::fabs(dets[size_t(j)].box[i])))
              << "image " << n << " row " << j;
        EXPECT_NEAR(got.scores[row], dets[size_t(j)].score, 1e-6 * (1 + std::fabs(dets[size_t(j)].score)));
      } else {
        EXPECT_EQ(got.classes[row], 0);
        EXPECT_EQ(got.scores[row], 0.f);
        for (int i = 0; i < 4; ++i) EXPECT_EQ(got.boxes[row * 4 + size_t(i)], 0.f);
      }
    }
  }
}

// Boxes around random centres with sizes that make overlaps common; some
// corner boxes come with their corners swapped.
Data random_data(const Config& cfg, uint32_t seed, bool quantized_scores = false) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Data d;
  const int64_t cb = cfg.per_class_boxes ? cfg.c : 1;
  const bool deltas = cfg.anchor_batch != 0;
  for (int64_t i = 0; i < cfg.n * cfg.b * cb; ++i) {
    if (deltas) {
      // Small corrections around the anchors.
      for (int j = 0; j < 4; ++j) d.boxes.push_back((u(rng) - 0.5f) * (cfg.coding == 0 ? 0.1f : 0.6f));
      continue;
    }
    const float xc = u(rng), yc = u(rng), w = 0.05f + 0.35f * u(rng), h = 0.05f + 0.35f * u(rng);
    if (cfg.coding == 1) {
      d.boxes.insert(d.boxes.end(), {xc, yc, w, h});
    } else {
      float x1 = xc - w / 2, x2 = xc + w / 2;
      if (u(rng) < 0.1f) std::swap(x1, x2);
      d.boxes.insert(d.boxes.end(), {x1, yc - h / 2, x2, yc + h / 2});
    }
  }
  for (int64_t i = 0; i < cfg.n * cfg.b * cfg.c; ++i) {
    float s = cfg.activation ? (u(rng) - 0.5f) * 8.f : u(rng);
    if (quantized_scores) s = std::floor(s * 4.f) / 4.f;
    d.scores.push_back(s);
  }
  for (int64_t i = 0; i < cfg.anchor_batch * cfg.b; ++i) {
    const float xc = u(rng), yc = u(rng), w = 0.05f + 0.3f * u(rng), h = 0.05f + 0.3f * u(rng);
    if (cfg.coding == 1) d.anchors.insert(d.anchors.end(), {xc, yc, w, h});
    else d.anchors.insert(d.anchors.end(), {xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2});
  }
  return d;
}

TEST(EfficientNms, RandomizedAgainstBruteForce) {
  std::mt19937 pick(99);
  for (uint32_t t = 0; t < 300; ++t) {
    Config cfg;
    cfg.n = 1 + int64_t(pick() % 3);
    cfg.b = int64_t(pick() % 60);
    cfg.c = 1 + int64_t(pick() % 6);
    cfg.per_class_boxes = pick() % 4 == 0;
    cfg.coding = int64_t(pick() % 2);
    cfg.anchor_batch = pick() % 3 == 0 ? (pick() % 2 ? 1 : cfg.n) : 0;
    cfg.activation = pick() % 3 == 0;
    cfg.agnostic = pick() % 3 == 0;
    cfg.background = pick() % 4 == 0 ? int64_t(pick() % uint32_t(cfg.c)) : -1;
    cfg.score_threshold = cfg.activation ? 0.3f : float(pick() % 50) / 100.f;
    cfg.iou_threshold = float(pick() % 90 + 5) / 100.f;
    cfg.k = 1 + int64_t(pick() % 40);
    compare(cfg, random_data(cfg, t, pick() % 4 == 0), "case " + std::to_string(t));
  }
}

TEST(EfficientNms, ZeroBoxes) {
  Config cfg;
  cfg.n = 2, cfg.b = 0, cfg.c = 3, cfg.k = 5;
  Result r = run_kiln(cfg, random_data(cfg, 1));
  EXPECT_EQ(r.num, (std::vector<int32_t>{0, 0}));
  compare(cfg, random_data(cfg, 1), "zero boxes");
}

TEST(EfficientNms, EverythingBelowThreshold) {
  Config cfg;
  cfg.b = 30, cfg.c = 4, cfg.score_threshold = 1.0f;  // scores are in [0, 1)
  Result r = run_kiln(cfg, random_data(cfg, 2));
  EXPECT_EQ(r.num[0], 0);
}

TEST(EfficientNms, IdenticalBoxesKeepOnePerClass) {
  Config cfg;
  cfg.b = 8, cfg.c = 3, cfg.k = 10;
  Data d;
  for (int i = 0; i < 8; ++i) d.boxes.insert(d.boxes.end(), {0.1f, 0.1f, 0.5f, 0.6f});
  for (int i = 0; i < 8 * 3; ++i) d.scores.push_back(0.5f);  // all tied
  Result r = run_kiln(cfg, d);
  ASSERT_EQ(r.num[0], 3);
  // Ties go to the lowest (box, class): box 0 for every class, classes in order.
  EXPECT_EQ(std::vector<int32_t>(r.classes.begin(), r.classes.begin() + 3), (std::vector<int32_t>{0, 1, 2}));
  cfg.agnostic = true;
  r = run_kiln(cfg, d);
  EXPECT_EQ(r.num[0], 1);
  EXPECT_EQ(r.classes[0], 0);
  compare(cfg, d, "identical, agnostic");
}

TEST(EfficientNms, TiesBreakByBoxThenClass) {
  Config cfg;
  cfg.b = 3, cfg.c = 2, cfg.k = 6, cfg.score_threshold = 0.f;
  Data d;
  // Three disjoint boxes, every score 0.5: order is (b0,c0) (b0,c1) (b1,c0) ...
  for (int i = 0; i < 3; ++i) d.boxes.insert(d.boxes.end(), {float(i), 0.f, float(i) + 0.5f, 0.5f});
  d.scores.assign(6, 0.5f);
  Result r = run_kiln(cfg, d);
  ASSERT_EQ(r.num[0], 6);
  EXPECT_EQ(r.classes, (std::vector<int32_t>{0, 1, 0, 1, 0, 1}));
  const std::vector<float> x1 = {r.boxes[0], r.boxes[4], r.boxes[8], r.boxes[12], r.boxes[16], r.boxes[20]};
  EXPECT_EQ(x1, (std::vector<float>{0, 0, 1, 1, 2, 2}));
}

TEST(EfficientNms, DegenerateBoxesNeverSuppress) {
  Config cfg;
  cfg.b = 4, cfg.c = 1, cfg.k = 4, cfg.iou_threshold = 0.f, cfg.score_threshold = 0.f;
  Data d;
  d.boxes = {0.2f, 0.2f, 0.2f, 0.8f,   // zero width
             0.2f, 0.2f, 0.2f, 0.8f,   // identical, zero width
             0.f, 0.f, 1.f, 1.f,       // covers both
             1.f, 0.f, 2.f, 1.f};      // only touches the previous one
  d.scores = {0.9f, 0.8f, 0.7f, 0.6f};
  Result r = run_kiln(cfg, d);
  EXPECT_EQ(r.num[0], 4);
  compare(cfg, d, "degenerate");
}

TEST(EfficientNms, BackgroundClassIsSkipped) {
  Config cfg;
  cfg.n = 2, cfg.b = 40, cfg.c = 4, cfg.background = 0, cfg.k = 30;
  const Data d = random_data(cfg, 7);
  Result r = run_kiln(cfg, d);
  for (int64_t n = 0; n < cfg.n; ++n)
    for (int32_t j = 0; j < r.num[size_t(n)]; ++j) EXPECT_NE(r.classes[size_t(n * cfg.k + j)], 0);
  compare(cfg, d, "background");
}

TEST(EfficientNms, ManyClassesBatchAndActivation) {
  Config cfg;
  cfg.n = 3, cfg.b = 120, cfg.c = 80, cfg.k = 100, cfg.activation = true, cfg.score_threshold = 0.9f;
  compare(cfg, random_data(cfg, 11), "80 classes");
  cfg.activation = false, cfg.score_threshold = 0.95f, cfg.agnostic = true;
  compare(cfg, random_data(cfg, 12), "80 classes agnostic");
}

TEST(EfficientNms, CenterSizeWithAnchors) {
  Config cfg;
  cfg.n = 2, cfg.b = 50, cfg.c = 3, cfg.coding = 1, cfg.anchor_batch = 1, cfg.k = 25;
  compare(cfg, random_data(cfg, 21), "center-size, shared anchors");
  cfg.anchor_batch = 2, cfg.coding = 0;
  compare(cfg, random_data(cfg, 22), "corners, per-image anchors");
}

TEST(EfficientNms, TruncatesAtMaxOutputBoxes) {
  Config cfg;
  cfg.b = 50, cfg.c = 2, cfg.k = 3, cfg.score_threshold = 0.f, cfg.iou_threshold = 1.f;  // nothing suppressed
  Result r = run_kiln(cfg, random_data(cfg, 5));
  EXPECT_EQ(r.num[0], 3);
  compare(cfg, random_data(cfg, 5), "truncated");
}

TEST(EfficientNms, ActivationThresholdMatchesSigmoid) {
  // score_activation keeps s when sigmoid(s) > t: here t = 0.5 -> s > 0.
  Config cfg;
  cfg.b = 4, cfg.c = 1, cfg.k = 4, cfg.activation = true, cfg.score_threshold = 0.5f;
  Data d;
  for (int i = 0; i < 4; ++i) d.boxes.insert(d.boxes.end(), {float(i), 0.f, float(i) + 0.5f, 1.f});
  d.scores = {-0.25f, 0.f, 0.25f, 3.f};
  Result r = run_kiln(cfg, d);
  ASSERT_EQ(r.num[0], 2);
  EXPECT_FLOAT_EQ(r.scores[0], float(1.0 / (1.0 + std::exp(-3.0))));
  EXPECT_FLOAT_EQ(r.scores[1], float(1.0 / (1.0 + std::exp(-0.25))));
}

template <typename F> void expect_error(F f, ErrorCode code, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << part << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(EfficientNms, RefusesBadParametersAndShapes) {
  Config cfg;
  cfg.coding = 2;
  expect_error([&] { make_plugin(cfg); }, ErrorCode::kBadInput, "box_coding");
  cfg = Config{};
  cfg.iou_threshold = 1.5f;
  expect_error([&] { make_plugin(cfg); }, ErrorCode::kBadInput, "iou_threshold");
  cfg = Config{};
  cfg.k = 0;
  expect_error([&] { make_plugin(cfg); }, ErrorCode::kBadInput, "max_output_boxes");
  cfg = Config{};
  auto p = make_plugin(cfg);
  expect_error([&] { p->output_shapes({{1, 10, 4}, {1, 11, 2}}); }, ErrorCode::kBadInput, "disagree");
  expect_error([&] { p->output_shapes({{1, 10, 5}, {1, 10, 2}}); }, ErrorCode::kBadInput, "boxes must be");
  expect_error([&] { p->output_shapes({{1, 10, 3, 4}, {1, 10, 2}}); }, ErrorCode::kBadInput, "per-class");
  expect_error([&] { p->output_shapes({{2, 10, 4}, {2, 10, 2}, {3, 10, 4}}); }, ErrorCode::kBadInput, "anchors");
  cfg.background = 2;
  expect_error([&] { make_plugin(cfg)->output_shapes({{1, 10, 4}, {1, 10, 2}}); }, ErrorCode::kBadInput,
               "background_class");
  EXPECT_FALSE(p->supports_format(0, 2, DataType::kFloat16, TensorFormat::kLinear));
  EXPECT_FALSE(p->supports_format(0, 2, DataType::kFloat32, TensorFormat::kNHWC));
}

}  // namespace
}  // namespace kiln
