// Shared by the two halves of the CUDA EfficientNMS_TRT (README.md, "CUDA"):
// efficient_nms_select.cu finds and sorts each image's best candidates
// (tier 0), efficient_nms_cuda.cu runs the greedy suppression. Every float
// operation that decides a result is an explicit round-to-nearest intrinsic
// (__fmul_rn, __dadd_rn, ...), so no multiply-add is ever fused and the bits
// match the CPU reference whatever -fmad says.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "kiln/error.h"

namespace kiln::plugins::efficient_nms::gpu {

constexpr int kThreads = 256;        // every kernel's block size
constexpr uint32_t kTier = 4096;     // tier 0 holds at least this many candidates ...
constexpr uint32_t kTierCap = 8192;  // ... and at most this many
constexpr uint32_t kRankChunk = 512; // keys per block in the ranking kernel
constexpr uint32_t kHist0 = 4096, kHist1 = 4096, kHist2 = 256;  // bins of the three select passes
constexpr uint32_t kHistAll = kHist0 + kHist1 + kHist2;
constexpr int kSmemKept = 256;  // kept boxes held in shared memory; more go to the workspace

// Everything the kernels need to know, by value.
struct Dev {
  int batch = 0;
  uint32_t boxes = 0, classes = 0, box_classes = 1, per_image = 0;  // per_image = boxes * classes
  int64_t k = 0;               // max_output_boxes
  int64_t background = -1;
  float threshold = 0.f;       // score_threshold (no activation)
  double logit = 0.0;          // raw-score threshold with activation (README step 2)
  double iou = 0.0;
  bool activation = false, agnostic = false, anchors = false;
  int coding = 0;
  int64_t anchor_batch = 1;
  int64_t max_per_class = 0;   // > 0: per-class limit (Params::max_per_class)
};

// Per-image selection state; the workspace zeroes it before every run.
struct ImgState {
  uint32_t arrive[3];  // blocks done with each select pass
  uint32_t done;       // tier 0 is decided
  uint32_t prefix;     // high bits of the score key the next pass refines
  uint32_t above;      // candidates with a larger score than that prefix group
  uint32_t lo_u;       // tier 0 = every candidate whose score key is >= lo_u
  uint32_t n_cand;     // candidates of the image (past threshold and background)
  uint32_t n_tier;     // tier 0 members gathered
  uint32_t pad[7];
};

// Scores as unsigned keys that order like the floats (larger score, larger
// key); -0.0 and +0.0 get one key, as they compare equal.
__device__ __forceinline__ uint32_t score_key(float s) {
  uint32_t x = s == 0.f ? 0u : __float_as_uint(s);
  return (x & 0x80000000u) ? ~x : (x | 0x80000000u);
}

// The candidate order of README step 3 as one unsigned 64-bit key, ascending:
// score descending, then flat index b * C + c ascending (= box, then class).
__device__ __forceinline__ uint64_t order_key(uint32_t u, uint32_t idx) {
  return (uint64_t(~u) << 32) | idx;
}

// Is scores[idx] of an image a candidate (README step 2)? Sets its score key.
__device__ __forceinline__ bool candidate(const Dev& d, float s, uint32_t idx, uint32_t& u) {
  if (d.background >= 0 && int64_t(idx % d.classes) == d.background) return false;
  const bool keep = d.activation ? double(s) > d.logit : s > d.threshold;
  if (!keep) return false;
  u = score_key(s);
  return true;
}

// Throws kInternal naming the step unless `e` is cudaSuccess.
inline void check_cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear it, so the next call starts clean
  throw Error(ErrorCode::kInternal, std::string("EfficientNMS_TRT (CUDA): ") + what + ": " + cudaGetErrorString(e));
}

// Where the NMS stage reads and writes (device pointers).
struct NmsIo {
  const float* boxes;
  const float* scores;
  const float* anchors;   // null without anchors
  const ImgState* state;
  const uint32_t* rank;   // tier 0 as gathered, and each member's place in the order
  const uint64_t* tier;
  uint64_t* sorted;       // tier 0 in order
  float4* kept_box;       // kept-box lists when k > kSmemKept (batch * k each), else null
  double* kept_area;
  int* kept_cls;
  int* kept_next;
  int32_t* num_detections;
  float* out_boxes;
  float* out_scores;
  int32_t* out_classes;
  int32_t* class_count;   // batch * classes, zeroed; kept per class (null: none needed)
  int32_t* out_index;     // Extra::box_index (may be null)
  int32_t* out_rank;      // Extra::class_rank (may be null)
};

// One block per image: greedy suppression over the sorted candidates, then
// the outputs (efficient_nms_cuda.cu). Throws kInternal on a launch error.
void launch_nms(const Dev& d, const NmsIo& io, cudaStream_t stream);

}  // namespace kiln::plugins::efficient_nms::gpu
