// EfficientNMS_TRT: batched, class-wise (or class-agnostic) greedy NMS with
// fixed-size outputs. The CPU implementation here is the reference a CUDA
// kernel must reproduce bit for bit; README.md states the exact rules.
// Uses the public plugin API only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kiln/plugin.h"

namespace kiln::plugins::efficient_nms {

struct Params {
  float score_threshold = 0.f;
  float iou_threshold = 0.5f;
  int64_t max_output_boxes = 100;  // K
  int64_t background_class = -1;   // -1 = none
  bool score_activation = false;   // sigmoid on scores
  bool class_agnostic = false;
  int64_t box_coding = 0;          // 0 = corners [x1,y1,x2,y2], 1 = center-size [xc,yc,w,h]
  // > 0: at most this many detections per class; later candidates of a full
  // class are skipped and suppress nothing (ONNX NonMaxSuppression's
  // max_output_boxes_per_class). 0: no per-class limit.
  int64_t max_per_class = 0;
};

// Optional per-detection outputs, [N,K] like detection_classes (rows past
// num_detections are 0): the input box index b, and the detection's rank
// among the kept detections of its class (0, 1, ...; selection order).
struct Extra {
  int32_t* box_index = nullptr;
  int32_t* class_rank = nullptr;
};

// Input layout, from the input shapes.
struct Layout {
  int64_t batch = 0, boxes = 0, classes = 0;
  int64_t box_classes = 1;   // 1 = one box per anchor ([N,B,4] or [N,B,1,4]); C = per-class boxes
  bool anchors = false;
  int64_t anchor_batch = 1;  // 1 = shared by all images, else N
};

// Throws kBadInput (or kUnsupported) for parameter values outside their range.
void check_params(const Params& p);
// Checks boxes [N,B,4] / [N,B,C,4] / [N,B,1,4], scores [N,B,C], optional
// anchors [1|N,B,4] against each other and `p`; throws kBadInput naming them.
Layout check_shapes(const std::vector<std::vector<int64_t>>& inputs, const Params& p);
// Output shapes: num_detections [N,1], boxes [N,K,4], scores [N,K], classes [N,K].
std::vector<std::vector<int64_t>> output_shapes(const Layout& l, const Params& p);
size_t workspace_bytes(const Layout& l, const Params& p);

// The threshold that raw scores are compared with when score_activation is
// on: logit(score_threshold) in double (see README.md).
double activation_threshold(float score_threshold);

// Runs NMS for every image. `anchors` may be null when the layout has none.
// `workspace` holds workspace_bytes(l, p) bytes, 8-byte aligned.
void run(const Params& p, const Layout& l, const float* boxes, const float* scores, const float* anchors,
         int32_t* num_detections, float* detection_boxes, float* detection_scores, int32_t* detection_classes,
         void* workspace, const Extra& extra = {});

// The CUDA implementation (efficient_nms_cuda*.cu, built with the CUDA
// backend only): the same detections as run(), bit for bit, on `stream` (a
// cudaStream_t). All pointers are device pointers; `workspace` holds
// cuda_workspace_bytes(l, p) bytes, 256-byte aligned. Only enqueues work (no
// synchronization, no allocation), so it can be captured into a CUDA graph.
size_t cuda_workspace_bytes(const Layout& l, const Params& p);
void run_cuda(const Params& p, const Layout& l, const float* boxes, const float* scores, const float* anchors,
              int32_t* num_detections, float* detection_boxes, float* detection_scores, int32_t* detection_classes,
              void* workspace, void* stream, const Extra& extra = {});

// Adds the EfficientNMS_TRT creator (version "1", namespace "").
void register_plugin(PluginRegistry& registry);

}  // namespace kiln::plugins::efficient_nms
