// kiln_NonMaxSuppression: the ONNX NonMaxSuppression op on the EfficientNMS
// kernels (onnx_nms_plugin.cpp; README.md, "ONNX NonMaxSuppression").
#pragma once

#include <cstdint>

#include "kiln/plugin.h"

namespace kiln::plugins::efficient_nms {

// The node's constant inputs and attribute.
struct OnnxNmsParams {
  int64_t max_per_class = 0;     // max_output_boxes_per_class (>= 1; 0 is lowered to an empty constant)
  float iou_threshold = 0.f;
  float score_threshold = 0.f;   // -inf when the node has none
  int64_t center_point_box = 0;  // 0: [y1,x1,y2,x2] corners, 1: [xc,yc,w,h]
};

const char* onnx_nms_type();  // "kiln_NonMaxSuppression"
void register_onnx_nms(PluginRegistry& registry);

// CUDA (onnx_nms_cuda.cu): turns the per-image detections of the EfficientNMS
// stage ([N,K] classes, box indices and class ranks; `num` [N]) into ONNX
// selected_indices rows ordered by image, class, rank, zeroes the rows past
// them, and writes their number to `count`. `class_start` is N*C ints of
// scratch. Only enqueues work on `stream`.
void compact_onnx_cuda(int64_t batch, int64_t classes, int64_t k, const int32_t* num, const int32_t* cls,
                       const int32_t* box_index, const int32_t* class_rank, int32_t* class_start, int64_t* selected,
                       int64_t* count, void* stream);

}  // namespace kiln::plugins::efficient_nms
