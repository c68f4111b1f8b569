// EfficientNMS_TRT on the CPU: the reference implementation. Every rule that
// decides which boxes survive (decode, threshold, order, IoU) is spelled out
// in README.md; this file must stay in step with it. Built with
// -ffp-contract=off so no multiply-add is fused behind the README's back.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "plugins/efficient_nms/efficient_nms.h"

namespace kiln::plugins::efficient_nms {

namespace {

struct Candidate {
  float score;  // raw score (before any activation)
  int32_t box;
  int32_t cls;
};

// A decoded box; lo <= hi on each axis unless a coordinate is NaN.
// Axis 0 is coordinates 0 and 2 of the input, axis 1 coordinates 1 and 3.
struct Corners {
  float lo0, lo1, hi0, hi1;
};

struct Kept {
  Corners box;
  float score;
  int32_t cls;
  int32_t box_index;
  int32_t class_rank;
};

constexpr int64_t kMaxIndex = std::numeric_limits<int32_t>::max();

size_t align8(size_t n) { return (n + 7) / 8 * 8; }

Corners ordered(float a0, float a1, float b0, float b1) {
  Corners c{a0, a1, b0, b1};
  if (c.lo0 > c.hi0) std::swap(c.lo0, c.hi0);
  if (c.lo1 > c.hi1) std::swap(c.lo1, c.hi1);
  return c;
}

// Box `d` (4 floats) with anchor `a` (or null) in `coding`, as ordered corners.
Corners decode(const float* d, const float* a, int64_t coding) {
  if (coding == 0) {
    if (!a) return ordered(d[0], d[1], d[2], d[3]);
    return ordered(d[0] + a[0], d[1] + a[1], d[2] + a[2], d[3] + a[3]);
  }
  float c0 = d[0], c1 = d[1], s0 = d[2], s1 = d[3];
  if (a) {
    c0 = d[0] * a[2] + a[0];
    c1 = d[1] * a[3] + a[1];
    s0 = float(std::exp(double(d[2])) * double(a[2]));
    s1 = float(std::exp(double(d[3])) * double(a[3]));
  }
  const float h0 = 0.5f * s0, h1 = 0.5f * s1;
  return ordered(c0 - h0, c1 - h1, c0 + h0, c1 + h1);
}

// IoU(a, b) > threshold, in double from the float corners. A box with zero
// (or NaN) extent on an axis, or a pair without a positive-area overlap,
// never suppresses.
bool overlaps(const Corners& a, const Corners& b, double threshold) {
  const double a0 = double(a.hi0) - double(a.lo0), a1 = double(a.hi1) - double(a.lo1);
  const double b0 = double(b.hi0) - double(b.lo0), b1 = double(b.hi1) - double(b.lo1);
  if (!(a0 > 0) || !(a1 > 0) || !(b0 > 0) || !(b1 > 0)) return false;
  const double i0 = double(std::min(a.hi0, b.hi0)) - double(std::max(a.lo0, b.lo0));
  const double i1 = double(std::min(a.hi1, b.hi1)) - double(std::max(a.lo1, b.lo1));
  if (!(i0 > 0) || !(i1 > 0)) return false;
  const double inter = i0 * i1;
  const double uni = (a0 * a1 + b0 * b1) - inter;
  return inter / uni > threshold;
}

float activated(float raw) { return float(1.0 / (1.0 + std::exp(-double(raw)))); }

std::string dims_text(const std::vector<int64_t>& d) { return shape_str(d); }

}  // namespace

void check_params(const Params& p) {
  if (std::isnan(p.score_threshold)) throw_bad_input("score_threshold is NaN");
  if (!(p.iou_threshold >= 0.f && p.iou_threshold <= 1.f))
    throw_bad_input("iou_threshold must be in [0, 1], got " + std::to_string(p.iou_threshold));
  if (p.max_output_boxes < 1 || p.max_output_boxes > kMaxIndex)
    throw_bad_input("max_output_boxes must be in [1, 2^31), got " + std::to_string(p.max_output_boxes));
  if (p.max_per_class < 0) throw_bad_input("max_per_class must be >= 0, got " + std::to_string(p.max_per_class));
  if (p.background_class < -1)
    throw_bad_input("background_class must be -1 (none) or a class index, got " + std::to_string(p.background_class));
  if (p.box_coding != 0 && p.box_coding != 1)
    throw_bad_input("box_coding must be 0 (corners) or 1 (center-size), got " + std::to_string(p.box_coding));
}

Layout check_shapes(const std::vector<std::vector<int64_t>>& in, const Params& p) {
  if (in.size() != 2 && in.size() != 3)
    throw_bad_input("EfficientNMS_TRT takes 2 inputs (boxes, scores) or 3 (boxes, scores, anchors), got " +
                    std::to_string(in.size()));
  const auto& boxes = in[0];
  const auto& scores = in[1];
  if (scores.size() != 3) throw_bad_input("scores must be [N,B,C], got " + dims_text(scores));
  Layout l;
  l.batch = scores[0];
  l.boxes = scores[1];
  l.classes = scores[2];
  const bool shared = boxes.size() == 3 && boxes[2] == 4;
  const bool per_class = boxes.size() == 4 && boxes[3] == 4;
  if (!shared && !per_class) throw_bad_input("boxes must be [N,B,4] or [N,B,C,4], got " + dims_text(boxes));
  if (boxes[0] != l.batch || boxes[1] != l.boxes)
    throw_bad_input("boxes " + dims_text(boxes) + " and scores " + dims_text(scores) +
                    " disagree on the batch or box count");
  if (per_class) {
    if (boxes[2] != l.classes && boxes[2] != 1)
      throw_bad_input("per-class boxes " + dims_text(boxes) + " must have 1 or C=" + std::to_string(l.classes) +
                      " classes like scores " + dims_text(scores));
    l.box_classes = boxes[2];
  }
  if (in.size() == 3) {
    const auto& a = in[2];
    if (a.size() != 3 || a[2] != 4 || a[1] != l.boxes || (a[0] != 1 && a[0] != l.batch))
      throw_bad_input("anchors must be [1,B,4] or [N,B,4] with B=" + std::to_string(l.boxes) + ", N=" +
                      std::to_string(l.batch) + ", got " + dims_text(a));
    l.anchors = true;
    l.anchor_batch = a[0];
  }
  if (l.boxes * l.classes > kMaxIndex || l.boxes * l.box_classes > kMaxIndex)
    throw_unsupported("EfficientNMS_TRT handles up to 2^31 candidates per image, got " + std::to_string(l.boxes) +
                      " boxes x " + std::to_string(l.classes) + " classes");
  if (p.background_class >= l.classes && l.classes > 0)
    throw_bad_input("background_class " + std::to_string(p.background_class) + " is not one of the " +
                    std::to_string(l.classes) + " classes");
  return l;
}

std::vector<std::vector<int64_t>> output_shapes(const Layout& l, const Params& p) {
  const int64_t k = p.max_output_boxes;
  return {{l.batch, 1}, {l.batch, k, 4}, {l.batch, k}, {l.batch, k}};
}

size_t workspace_bytes(const Layout& l, const Params& p) {
  return align8(size_t(l.boxes * l.classes) * sizeof(Candidate)) +
         align8(size_t(l.boxes * l.box_classes) * sizeof(Corners)) + size_t(p.max_output_boxes) * sizeof(Kept);
}

double activation_threshold(float t) {
  if (!(t > 0.f)) return -std::numeric_limits<double>::infinity();
  if (!(t < 1.f)) return std::numeric_limits<double>::infinity();
  return std::log(double(t) / (1.0 - double(t)));
}

void run(const Params& p, const Layout& l, const float* boxes, const float* scores, const float* anchors,
         int32_t* num_detections, float* out_boxes, float* out_scores, int32_t* out_classes, void* workspace,
         const Extra& extra) {
  const int64_t B = l.boxes, C = l.classes, CB = l.box_classes, K = p.max_output_boxes;
  auto* cands = static_cast<Candidate*>(workspace);
  auto* decoded = reinterpret_cast<Corners*>(static_cast<uint8_t*>(workspace) + align8(size_t(B * C) * sizeof(Candidate)));
  auto* kept = reinterpret_cast<Kept*>(reinterpret_cast<uint8_t*>(decoded) + align8(size_t(B * CB) * sizeof(Corners)));
  const double logit = activation_threshold(p.score_threshold);
  const double iou = double(p.iou_threshold);
  // Detections kept per class, for max_per_class and class_rank.
  std::vector<int32_t> per_class(p.max_per_class > 0 || extra.class_rank ? size_t(C) : 0);

  for (int64_t n = 0; n < l.batch; ++n) {
    const float* img_boxes = boxes + n * B * CB * 4;
    const float* img_scores = scores + n * B * C;
    const float* img_anchors = l.anchors ? anchors + (l.anchor_batch == 1 ? 0 : n) * B * 4 : nullptr;

    // 1. Threshold (candidates come out in (box, class) order).
    size_t count = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) {
        if (c == p.background_class) continue;
        const float s = img_scores[b * C + c];
        const bool keep = p.score_activation ? double(s) > logit : s > p.score_threshold;
        if (keep) cands[count++] = {s, int32_t(b), int32_t(c)};
      }
    // 2. Order: score descending, then box index, then class ascending.
    std::sort(cands, cands + count, [](const Candidate& a, const Candidate& b) {
      if (a.score != b.score) return a.score > b.score;
      if (a.box != b.box) return a.box < b.box;
      return a.cls < b.cls;
    });
    // 3. Decode every box once.
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < CB; ++c)
        decoded[b * CB + c] = decode(img_boxes + (b * CB + c) * 4, img_anchors ? img_anchors + b * 4 : nullptr,
                                     p.box_coding);
    // 4. Greedy suppression against the boxes kept so far.
    // A candidate of a class already holding max_per_class detections is
    // skipped before the test: it is neither kept nor suppresses anything.
    std::fill(per_class.begin(), per_class.end(), 0);
    int64_t nkept = 0;
    for (size_t i = 0; i < count && nkept < K; ++i) {
      const Candidate& cd = cands[i];
      if (p.max_per_class > 0 && per_class[size_t(cd.cls)] >= p.max_per_class) continue;
      const Corners& box = decoded[cd.box * CB + (CB == 1 ? 0 : cd.cls)];
      bool suppressed = false;
      for (int64_t j = 0; j < nkept && !suppressed; ++j)
        suppressed = (p.class_agnostic || kept[j].cls == cd.cls) && overlaps(kept[j].box, box, iou);
      if (suppressed) continue;
      const int32_t rank = per_class.empty() ? 0 : per_class[size_t(cd.cls)]++;
      kept[nkept++] = {box, cd.score, cd.cls, cd.box, rank};
    }
    // 5. Outputs; rows past the detections are zero.
    num_detections[n] = int32_t(nkept);
    float* ob = out_boxes + n * K * 4;
    float* os = out_scores + n * K;
    int32_t* oc = out_classes + n * K;
    std::memset(ob, 0, size_t(K) * 4 * sizeof(float));
    std::memset(os, 0, size_t(K) * sizeof(float));
    std::memset(oc, 0, size_t(K) * sizeof(int32_t));
    int32_t* oi = extra.box_index ? extra.box_index + n * K : nullptr;
    int32_t* orank = extra.class_rank ? extra.class_rank + n * K : nullptr;
    if (oi) std::memset(oi, 0, size_t(K) * sizeof(int32_t));
    if (orank) std::memset(orank, 0, size_t(K) * sizeof(int32_t));
    for (int64_t j = 0; j < nkept; ++j) {
      const Corners& c = kept[j].box;
      ob[j * 4 + 0] = c.lo0;
      ob[j * 4 + 1] = c.lo1;
      ob[j * 4 + 2] = c.hi0;
      ob[j * 4 + 3] = c.hi1;
      os[j] = p.score_activation ? activated(kept[j].score) : kept[j].score;
      oc[j] = kept[j].cls;
      if (oi) oi[j] = kept[j].box_index;
      if (orank) orank[j] = kept[j].class_rank;
    }
  }
}

}  // namespace kiln::plugins::efficient_nms
