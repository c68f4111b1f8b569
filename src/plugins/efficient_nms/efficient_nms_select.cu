// EfficientNMS_TRT on CUDA, stage 1 of 2, and the host entry run_cuda.
//
// Sorting every candidate of an image (up to B*C, 800k for SSD300 x COCO) is
// what makes NMS slow; the greedy loop rarely looks past the first few
// thousand. So per image, with every block of the GPU:
//   select passes  a radix select over the score key (12 + 12 + 8 bits, one
//                  pass over all scores each; a pass whose image is decided
//                  returns at once) finds a cut such that tier 0 = every
//                  candidate with score key >= cut holds 4096..8192
//                  candidates, or all of them when there are fewer. The last
//                  block of each pass (a ticket counter) reads the finished
//                  histogram and decides. Equal scores past the cap are left
//                  out whole, so tier 0 is always a prefix of the order.
//   gather         writes tier 0's 64-bit order keys (score, index), in any order;
//   rank           each key's place = how many keys are smaller (keys are
//                  unique), spread over blocks; stage 2 scatters by it.
// Everything is launched on the caller's stream with no host round trip, so
// it captures into a CUDA graph; stage 2 continues past tier 0 when needed.
#include <algorithm>

#include "plugins/efficient_nms/efficient_nms.h"
#include "plugins/efficient_nms/efficient_nms_cuda.cuh"

namespace kiln::plugins::efficient_nms {

namespace gpu {
namespace {

__device__ uint32_t block_exclusive_sum(uint32_t v, uint32_t* total, uint32_t* warp_sums) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint32_t x = v;
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) warp_sums[warp] = x;
  __syncthreads();
  if (warp == 0) {
    uint32_t w = lane < kThreads / 32 ? warp_sums[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t y = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += y;
    }
    if (lane < kThreads / 32) warp_sums[lane] = w;
  }
  __syncthreads();
  *total = warp_sums[kThreads / 32 - 1];
  return (warp ? warp_sums[warp - 1] : 0) + x - v;
}

template <int PASS> struct PassBins {
  static constexpr uint32_t bins = PASS == 2 ? kHist2 : PASS == 1 ? kHist1 : kHist0;
  static constexpr uint32_t offset = PASS == 0 ? 0 : PASS == 1 ? kHist0 : kHist0 + kHist1;
};

// Lowest score key of digit `bin` under `prefix` in pass PASS.
template <int PASS> __device__ __forceinline__ uint32_t bin_low(uint32_t prefix, uint32_t bin) {
  if (PASS == 0) return bin << 20;
  if (PASS == 1) return (prefix << 20) | (bin << 8);
  return (prefix << 8) | bin;
}

// Run by the last block of a pass over the image's finished histogram `g`.
template <int PASS>
__device__ void resolve(ImgState* st, const uint32_t* g, uint32_t prefix, uint32_t* warp_sums) {
  constexpr uint32_t kBins = PassBins<PASS>::bins, kPer = kBins / kThreads;
  // Thread t holds ranks t*kPer.. in descending score order (bin kBins-1 first).
  uint32_t c[kPer];
  uint32_t sum = 0;
#pragma unroll
  for (uint32_t j = 0; j < kPer; ++j) {
    c[j] = __ldcg(g + (kBins - 1 - (threadIdx.x * kPer + j)));
    sum += c[j];
  }
  uint32_t total = 0;
  const uint32_t before = block_exclusive_sum(sum, &total, warp_sums);
  const uint32_t above = PASS == 0 ? 0 : st->above;
  if (PASS == 0 && threadIdx.x == 0) st->n_cand = total;
  if ((PASS == 0 && total <= kTierCap) || above + total < kTier) {
    // Few enough: the whole group (every candidate, in pass 0) is tier 0.
    if (threadIdx.x == 0) {
      st->lo_u = PASS == 0 ? 0u : PASS == 1 ? prefix << 20 : prefix << 8;
      st->done = 1;
    }
    return;
  }
  uint32_t run = above + before;
  if (!(run < kTier && run + sum >= kTier)) return;  // the crossing is another thread's
#pragma unroll
  for (uint32_t j = 0; j < kPer; ++j) {
    const uint32_t incl = run + c[j];
    if (incl >= kTier) {
      const uint32_t bin = kBins - 1 - (threadIdx.x * kPer + j);
      if (incl <= kTierCap) {
        st->lo_u = bin_low<PASS>(prefix, bin);
        st->done = 1;
      } else if (PASS < 2) {
        st->prefix = PASS == 0 ? bin : (prefix << 12) | bin;
        st->above = run;
      } else {
        // One score value with more candidates than fit: leave it to stage 2.
        st->lo_u = bin_low<PASS>(prefix, bin) + 1;
        st->done = 1;
      }
      return;
    }
    run = incl;
  }
}

template <int PASS>
__global__ void __launch_bounds__(kThreads)
    select_pass(Dev d, const float* __restrict__ scores, ImgState* state, uint32_t* hist) {
  constexpr uint32_t kBins = PassBins<PASS>::bins;
  __shared__ uint32_t h[kBins];
  __shared__ uint32_t warp_sums[kThreads / 32];
  __shared__ bool last;
  ImgState* st = state + blockIdx.y;
  if (PASS > 0 && st->done) return;  // same answer for the whole block
  const uint32_t prefix = PASS > 0 ? st->prefix : 0;
  for (uint32_t b = threadIdx.x; b < kBins; b += kThreads) h[b] = 0;
  __syncthreads();

  const float* s = scores + int64_t(blockIdx.y) * d.per_image;
  const uint32_t n = d.per_image, stride = gridDim.x * kThreads;
  auto count = [&](float v, uint32_t i) {
    uint32_t u;
    if (!candidate(d, v, i, u)) return;
    if (PASS == 0) atomicAdd(&h[u >> 20], 1u);
    else if (PASS == 1 && (u >> 20) == prefix) atomicAdd(&h[(u >> 8) & 0xFFFu], 1u);
    else if (PASS == 2 && (u >> 8) == prefix) atomicAdd(&h[u & 0xFFu], 1u);
  };
  // n < 2^31 and stride <= 2^18, so none of these sums wraps.
  uint32_t i = blockIdx.x * kThreads + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    float v[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] = __ldg(s + i + k * stride);
#pragma unroll
    for (int k = 0; k < 4; ++k) count(v[k], i + k * stride);
  }
  for (; i < n; i += stride) count(__ldg(s + i), i);
  __syncthreads();

  uint32_t* g = hist + int64_t(blockIdx.y) * kHistAll + PassBins<PASS>::offset;
  for (uint32_t b = threadIdx.x; b < kBins; b += kThreads)
    if (h[b]) atomicAdd(&g[b], h[b]);
  __threadfence();  // our counts land before our ticket
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&st->arrive[PASS], 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  resolve<PASS>(st, g, prefix, warp_sums);
}

__global__ void __launch_bounds__(kThreads)
    gather_tier(Dev d, const float* __restrict__ scores, ImgState* state, uint64_t* tier) {
  ImgState* st = state + blockIdx.y;
  const uint32_t lo = st->lo_u, n = d.per_image, lane = threadIdx.x & 31;
  const float* s = scores + int64_t(blockIdx.y) * d.per_image;
  uint64_t* out = tier + int64_t(blockIdx.y) * kTierCap;
  const uint32_t step = gridDim.x * kThreads;  // warps take 32 consecutive scores
  for (uint32_t base = blockIdx.x * kThreads + (threadIdx.x & ~31u); base < n; base += 4 * step) {
    float v[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t i = base + k * step + lane;
      v[k] = i < n ? __ldg(s + i) : 0.f;
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t i = base + k * step + lane;
      uint32_t u = 0;
      const bool take = i < n && candidate(d, v[k], i, u) && u >= lo;
      const unsigned m = __ballot_sync(0xffffffffu, take);
      if (!m) continue;
      const int leader = __ffs(m) - 1;
      uint32_t pos = 0;
      if (int(lane) == leader) pos = atomicAdd(&st->n_tier, uint32_t(__popc(m)));
      pos = __shfl_sync(0xffffffffu, pos, leader) + __popc(m & ((1u << lane) - 1));
      if (take && pos < kTierCap) out[pos] = order_key(u, i);
    }
  }
}

// Block (x, y, image): keys x*256.. counted against chunk y of the tier.
__global__ void __launch_bounds__(kThreads) rank_tier(const ImgState* state, const uint64_t* tier, uint32_t* rank) {
  __shared__ uint64_t chunk[kRankChunk];
  const uint32_t m = min(state[blockIdx.z].n_tier, kTierCap);
  const uint32_t first = blockIdx.x * kThreads, c0 = blockIdx.y * kRankChunk;
  if (first >= m || c0 >= m) return;
  const uint64_t* t = tier + int64_t(blockIdx.z) * kTierCap;
  // Padding keys are larger than any real key (whose top half is never all ones).
  for (uint32_t q = threadIdx.x; q < kRankChunk; q += kThreads) chunk[q] = c0 + q < m ? t[c0 + q] : ~0ull;
  __syncthreads();
  const uint32_t j = first + threadIdx.x;
  if (j >= m) return;
  const uint64_t key = t[j];
  uint32_t below = 0;
#pragma unroll 16
  for (uint32_t q = 0; q < kRankChunk; ++q) below += chunk[q] < key ? 1u : 0u;
  if (below) atomicAdd(&rank[int64_t(blockIdx.z) * kTierCap + j], below);
}

}  // namespace
}  // namespace gpu

namespace {

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// The workspace, carved from `base` (nullptr: only the sizes).
struct Carve {
  gpu::ImgState* state = nullptr;
  uint32_t* hist = nullptr;
  uint32_t* rank = nullptr;
  uint64_t* tier = nullptr;
  uint64_t* sorted = nullptr;
  float4* kept_box = nullptr;
  double* kept_area = nullptr;
  int* kept_cls = nullptr;
  int* kept_next = nullptr;
  int32_t* class_count = nullptr;
  size_t zeroed = 0;  // leading bytes cleared before every run
  size_t total = 0;
};

// `with_rank`: Extra::class_rank is wanted, which needs the per-class counts.
Carve carve(const Layout& l, const Params& p, uint8_t* base, bool with_rank) {
  const size_t n = size_t(l.batch);
  Carve c;
  size_t off = 0;
  auto take = [&](size_t bytes) {
    uint8_t* at = base ? base + off : nullptr;
    off += align256(bytes);
    return at;
  };
  c.state = reinterpret_cast<gpu::ImgState*>(take(n * sizeof(gpu::ImgState)));
  c.hist = reinterpret_cast<uint32_t*>(take(n * gpu::kHistAll * sizeof(uint32_t)));
  c.rank = reinterpret_cast<uint32_t*>(take(n * gpu::kTierCap * sizeof(uint32_t)));
  if (p.max_per_class > 0 || with_rank)
    c.class_count = reinterpret_cast<int32_t*>(take(n * size_t(l.classes) * sizeof(int32_t)));
  c.zeroed = off;
  c.tier = reinterpret_cast<uint64_t*>(take(n * gpu::kTierCap * sizeof(uint64_t)));
  c.sorted = reinterpret_cast<uint64_t*>(take(n * gpu::kTierCap * sizeof(uint64_t)));
  if (p.max_output_boxes > gpu::kSmemKept) {
    const size_t k = n * size_t(p.max_output_boxes);
    c.kept_box = reinterpret_cast<float4*>(take(k * sizeof(float4)));
    c.kept_area = reinterpret_cast<double*>(take(k * sizeof(double)));
    c.kept_cls = reinterpret_cast<int*>(take(k * sizeof(int)));
    c.kept_next = reinterpret_cast<int*>(take(k * sizeof(int)));
  }
  c.total = off;
  return c;
}

void check_batch(const Layout& l) {
  if (l.batch > 65535)
    throw_unsupported("EfficientNMS_TRT on CUDA handles up to 65535 images per batch, got " + std::to_string(l.batch) +
                      ": split the batch or build for the CPU");
}

}  // namespace

size_t cuda_workspace_bytes(const Layout& l, const Params& p) {
  // No batch check here: the CPU path asks for this size too (see the plugin).
  // Sized for class ranks too, which any run may ask for.
  return l.batch <= 0 ? 0 : carve(l, p, nullptr, true).total;
}

void run_cuda(const Params& p, const Layout& l, const float* boxes, const float* scores, const float* anchors,
              int32_t* num_detections, float* detection_boxes, float* detection_scores, int32_t* detection_classes,
              void* workspace, void* stream, const Extra& extra) {
  if (l.batch <= 0) return;
  check_batch(l);
  if (!workspace) throw_internal("EfficientNMS_TRT (CUDA): no workspace");
  gpu::Dev d;
  d.batch = int(l.batch);
  d.boxes = uint32_t(l.boxes);
  d.classes = uint32_t(l.classes);
  d.box_classes = uint32_t(l.box_classes);
  d.per_image = uint32_t(l.boxes * l.classes);  // < 2^31, checked by check_shapes
  d.k = p.max_output_boxes;
  d.background = p.background_class;
  d.threshold = p.score_threshold;
  d.logit = activation_threshold(p.score_threshold);
  d.iou = double(p.iou_threshold);
  d.activation = p.score_activation;
  d.agnostic = p.class_agnostic;
  d.anchors = l.anchors && anchors;
  d.coding = int(p.box_coding);
  d.anchor_batch = l.anchor_batch;
  d.max_per_class = p.max_per_class;

  const Carve c = carve(l, p, static_cast<uint8_t*>(workspace), extra.class_rank != nullptr);
  auto s = static_cast<cudaStream_t>(stream);
  gpu::check_cuda(cudaMemsetAsync(c.state, 0, c.zeroed, s), "clearing the workspace");
  if (d.per_image > 0) {
    const uint32_t per_block = gpu::kThreads * 16;
    const unsigned bx = std::min<uint32_t>(std::max<uint32_t>((d.per_image + per_block - 1) / per_block, 1), 1024);
    const dim3 grid(bx, unsigned(l.batch));
    gpu::select_pass<0><<<grid, gpu::kThreads, 0, s>>>(d, scores, c.state, c.hist);
    gpu::check_cuda(cudaGetLastError(), "select pass 1");
    gpu::select_pass<1><<<grid, gpu::kThreads, 0, s>>>(d, scores, c.state, c.hist);
    gpu::check_cuda(cudaGetLastError(), "select pass 2");
    gpu::select_pass<2><<<grid, gpu::kThreads, 0, s>>>(d, scores, c.state, c.hist);
    gpu::check_cuda(cudaGetLastError(), "select pass 3");
    gpu::gather_tier<<<grid, gpu::kThreads, 0, s>>>(d, scores, c.state, c.tier);
    gpu::check_cuda(cudaGetLastError(), "gather");
    const dim3 rgrid(gpu::kTierCap / gpu::kThreads, gpu::kTierCap / gpu::kRankChunk, unsigned(l.batch));
    gpu::rank_tier<<<rgrid, gpu::kThreads, 0, s>>>(c.state, c.tier, c.rank);
    gpu::check_cuda(cudaGetLastError(), "rank");
  }
  gpu::NmsIo io;
  io.boxes = boxes;
  io.scores = scores;
  io.anchors = d.anchors ? anchors : nullptr;
  io.state = c.state;
  io.rank = c.rank;
  io.tier = c.tier;
  io.sorted = c.sorted;
  io.kept_box = c.kept_box;
  io.kept_area = c.kept_area;
  io.kept_cls = c.kept_cls;
  io.kept_next = c.kept_next;
  io.num_detections = num_detections;
  io.out_boxes = detection_boxes;
  io.out_scores = detection_scores;
  io.out_classes = detection_classes;
  io.class_count = c.class_count;
  io.out_index = extra.box_index;
  io.out_rank = extra.class_rank;
  gpu::launch_nms(d, io, s);
}

}  // namespace kiln::plugins::efficient_nms
