// kiln_NonMaxSuppression (ONNX NonMaxSuppression on the EfficientNMS
// kernels): the CUDA enqueue against the CPU execute, the oracle that
// tests/e2e/test_nms_vs_onnxruntime.py checks against onnxruntime. Every
// selected_indices row and the row count must be equal; GPU outputs are
// poisoned first so an unwritten row fails. Cases: random sizes, ties, all
// boxes identical (everything past the first suppressed), one box per class,
// zero boxes, many classes, batches, both box encodings.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backends/cuda/common.h"
#include "backends/cuda/parity.h"
#include "kiln/plugin.h"

namespace kiln {
namespace {

struct Case {
  int64_t n = 1, b = 10, c = 1, per_class = 5, center = 0;
  float iou = 0.5f, score = 0.2f;
  bool ties = false, identical = false;
};

struct Out {
  std::vector<int64_t> sel, count;
};

struct Prepared {
  std::unique_ptr<Plugin> p;
  std::vector<PluginTensorDesc> ins, outs;
  size_t workspace = 0;
};

Prepared prepare(const Case& k) {
  const PluginCreator* cr = PluginRegistry::global().find("kiln_NonMaxSuppression", "1", "");
  if (!cr) throw std::runtime_error("kiln_NonMaxSuppression is not registered");
  FieldCollection f;
  f.set_int("max_output_boxes_per_class", k.per_class)
      .set_float("iou_threshold", k.iou)
      .set_float("score_threshold", k.score)
      .set_int("center_point_box", k.center);
  Prepared r;
  r.p = cr->deserialize("nms", cr->create("nms", f)->serialize());
  const std::vector<std::vector<int64_t>> shapes = {{k.n, k.b, 4}, {k.n, k.b, k.c}};
  const auto out_shapes = r.p->output_shapes(shapes);
  for (auto& s : shapes) r.ins.push_back({DataType::kFloat32, s, TensorFormat::kLinear});
  for (auto& s : out_shapes) r.outs.push_back({DataType::kInt64, s, TensorFormat::kLinear});
  r.p->configure(r.ins, r.outs);
  r.workspace = r.p->workspace_size(r.ins, r.outs);
  return r;
}

Out run(const Case& k, const std::vector<float>& boxes, const std::vector<float>& scores, bool gpu) {
  Prepared pr = prepare(k);
  Out o;
  o.sel.assign(size_t(pr.outs[0].dims[0] * 3), -7);
  o.count.assign(1, -7);
  if (!gpu) {
    std::vector<uint64_t> ws(pr.workspace / 8 + 8);
    const void* in[] = {boxes.data(), scores.data()};
    void* out[] = {o.sel.data(), o.count.data()};
    pr.p->execute(pr.ins, pr.outs, in, out, ws.data());
    return o;
  }
  auto db = cuda::upload(boxes.data(), boxes.size() * 4), ds = cuda::upload(scores.data(), scores.size() * 4);
  auto dsel = cuda::device_alloc(o.sel.size() * 8 + 8), dcount = cuda::device_alloc(8);
  cuda::check(cudaMemset(dsel.get(), 0x5A, o.sel.size() * 8 + 8), "poison");
  cuda::check(cudaMemset(dcount.get(), 0x5A, 8), "poison");
  auto ws = cuda::device_alloc(pr.workspace);
  const void* in[] = {db.get(), ds.get()};
  void* out[] = {dsel.get(), dcount.get()};
  pr.p->enqueue(pr.ins, pr.outs, in, out, ws.get(), nullptr);
  cuda::check(cudaDeviceSynchronize(), "kiln_NonMaxSuppression enqueue");
  if (!o.sel.empty()) cuda::check(cudaMemcpy(o.sel.data(), dsel.get(), o.sel.size() * 8, cudaMemcpyDeviceToHost), "d2h");
  cuda::check(cudaMemcpy(o.count.data(), dcount.get(), 8, cudaMemcpyDeviceToHost), "d2h");
  return o;
}

void expect_same(const Case& k, uint32_t seed) {
  SCOPED_TRACE("n=" + std::to_string(k.n) + " b=" + std::to_string(k.b) + " c=" + std::to_string(k.c) +
               " per_class=" + std::to_string(k.per_class) + " seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> boxes, scores;
  for (int64_t i = 0; i < k.n * k.b; ++i) {
    float xc = u(rng), yc = u(rng), w = 0.05f + 0.3f * u(rng), h = 0.05f + 0.3f * u(rng);
    if (k.identical) xc = 0.5f, yc = 0.5f, w = 0.2f, h = 0.3f;
    if (k.center) boxes.insert(boxes.end(), {xc, yc, w, h});
    else boxes.insert(boxes.end(), {yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2});
  }
  for (int64_t i = 0; i < k.n * k.b * k.c; ++i) scores.push_back(k.ties ? std::floor(u(rng) * 4.f) / 4.f : u(rng));
  const Out cpu = run(k, boxes, scores, false), gpu = run(k, boxes, scores, true);
  ASSERT_EQ(gpu.count, cpu.count);
  ASSERT_GE(cpu.count[0], 0);
  EXPECT_EQ(gpu.sel, cpu.sel);
}

TEST(OnnxNmsCuda, RandomizedMatchesCpu) {
  KILN_REQUIRE_GPU();
  std::mt19937 pick(77);
  for (uint32_t t = 0; t < 80; ++t) {
    Case k;
    k.n = 1 + int64_t(pick() % 3);
    k.b = int64_t(pick() % 120);
    k.c = 1 + int64_t(pick() % 9);
    k.per_class = 1 + int64_t(pick() % 12);
    k.center = int64_t(pick() % 2);
    k.iou = float(pick() % 101) / 100.f;
    k.score = float(pick() % 60) / 100.f;
    k.ties = pick() % 3 == 0;
    expect_same(k, t);
  }
}

TEST(OnnxNmsCuda, EdgeCases) {
  KILN_REQUIRE_GPU();
  Case k;
  k.identical = true, k.b = 300, k.c = 3, k.per_class = 4;  // one survivor per class
  expect_same(k, 1);
  k = Case{};
  k.b = 0, k.c = 4;  // nothing to select
  expect_same(k, 2);
  k = Case{};
  k.n = 4, k.b = 2000, k.c = 91, k.per_class = 100, k.score = 0.01f, k.iou = 0.45f;  // SSD-like, batch 4
  expect_same(k, 3);
  k.per_class = 1, k.iou = 1.f;  // nothing suppressed: the class limit alone decides
  expect_same(k, 4);
}

}  // namespace
}  // namespace kiln
