// EfficientNMS_TRT on CUDA, stage 2 of 2: one block per image walks the
// image's candidates in order, a tile of 256 at a time, and keeps exactly
// what the CPU reference's greedy loop keeps (README.md):
//   A. every tile candidate is decoded (anchors applied here, no decoded-box
//      tensor) and tested against the boxes kept so far; kept boxes sit in
//      64 lists by class % 64, so class-wise NMS compares one class only;
//   B. every live candidate builds the mask of later tile candidates it
//      would suppress (tile members grouped by the same class buckets);
//   C. one thread walks the tile: the lowest remaining candidate is kept and
//      its mask removes what it suppresses; it stops at max_output_boxes;
//   D. kept boxes go straight to the outputs and to the kept lists.
// Tier 0 (sorted by stage 1) almost always holds every candidate the greedy
// loop reaches. When it does not (many suppressed, or more equal scores than
// fit), the block selects the next 1024..2048 candidates itself (radix select
// on the 64-bit order key over all scores), sorts them (bitonic, shared
// memory) and goes on: slower, but the same result.
#include "plugins/efficient_nms/efficient_nms_cuda.cuh"

namespace kiln::plugins::efficient_nms::gpu {

namespace {

constexpr int kTile = kThreads;     // candidates per tile, one per thread
constexpr int kWords = kTile / 64;  // 64-bit words in a tile mask
constexpr int kBuckets = 64;        // kept lists by class % 64
constexpr uint32_t kNextMin = 1024, kNextCap = 2048;  // tiers after tier 0

struct Shared {
  // Kept boxes that can suppress (non-degenerate), when max_output_boxes <= kSmemKept.
  float4 kbox[kSmemKept];
  double karea[kSmemKept];
  int kcls[kSmemKept];
  int knext[kSmemKept];  // next in the same bucket, -1 at the end
  int khead[kBuckets];
  // The tile.
  float4 tbox[kTile];
  double tarea[kTile];
  int tcls[kTile];
  int trank[kTile];                   // kept tile members' rank within their class
  uint64_t succ[kTile][kWords];       // later tile members each one suppresses
  uint64_t bucket[kBuckets][kWords];  // live tile members by class bucket
  uint64_t alive[kWords], live[kWords], kept[kWords];
  int n_kept, n_sup, tile_kept;
  // Tiers after tier 0.
  uint64_t next[kNextCap];
  uint32_t hist[256];
  uint32_t count;
  uint64_t sel_prefix, sel_bound;
  uint32_t sel_below;
  int sel_bits, sel_done;
};

struct Ctx {
  const Dev& d;
  const NmsIo& io;
  Shared& sm;
  int n;  // image
  float4* kbox;
  double* karea;
  int* kcls;
  int* knext;
};

__device__ __forceinline__ int bucket_of(const Dev& d, int cls) { return d.agnostic ? 0 : (cls & (kBuckets - 1)); }

__device__ __forceinline__ void or_bits(uint64_t* word, uint64_t bits) {
  atomicOr(reinterpret_cast<unsigned long long*>(word), static_cast<unsigned long long>(bits));
}

__device__ __forceinline__ uint64_t low_mask(int bits) { return bits >= 64 ? ~0ull : bits <= 0 ? 0ull : (1ull << bits) - 1; }

// README step 1: lo <= hi on each axis unless a coordinate is NaN.
__device__ __forceinline__ float4 ordered(float a0, float a1, float b0, float b1) {
  float4 c = make_float4(a0, a1, b0, b1);
  if (c.x > c.z) {
    const float t = c.x;
    c.x = c.z;
    c.z = t;
  }
  if (c.y > c.w) {
    const float t = c.y;
    c.y = c.w;
    c.w = t;
  }
  return c;
}

// Box (x = lo0, y = lo1, z = hi0, w = hi1) of candidate (b, cls), decoded with
// the reference's operations in the reference's order.
__device__ float4 decode(const Dev& d, const NmsIo& io, int n, uint32_t b, uint32_t cls) {
  const uint32_t bc = d.box_classes == 1 ? 0 : cls;
  const float* p = io.boxes + ((int64_t(n) * d.boxes + b) * d.box_classes + bc) * 4;
  const float v0 = p[0], v1 = p[1], v2 = p[2], v3 = p[3];
  const float* a = io.anchors ? io.anchors + ((d.anchor_batch == 1 ? 0 : int64_t(n)) * d.boxes + b) * 4 : nullptr;
  if (d.coding == 0) {
    if (!a) return ordered(v0, v1, v2, v3);
    return ordered(__fadd_rn(v0, a[0]), __fadd_rn(v1, a[1]), __fadd_rn(v2, a[2]), __fadd_rn(v3, a[3]));
  }
  float c0 = v0, c1 = v1, s0 = v2, s1 = v3;
  if (a) {
    c0 = __fadd_rn(__fmul_rn(v0, a[2]), a[0]);
    c1 = __fadd_rn(__fmul_rn(v1, a[3]), a[1]);
    s0 = __double2float_rn(__dmul_rn(exp(double(v2)), double(a[2])));
    s1 = __double2float_rn(__dmul_rn(exp(double(v3)), double(a[3])));
  }
  const float h0 = __fmul_rn(0.5f, s0), h1 = __fmul_rn(0.5f, s1);
  return ordered(__fsub_rn(c0, h0), __fsub_rn(c1, h1), __fadd_rn(c0, h0), __fadd_rn(c1, h1));
}

// a0 * a1 in double, or -1 for a degenerate box (an extent not > 0, or NaN),
// which never suppresses and is never suppressed. A real area is > 0: the
// extents are differences of floats, far from double underflow.
__device__ __forceinline__ double area_of(float4 c) {
  const double e0 = __dsub_rn(double(c.z), double(c.x)), e1 = __dsub_rn(double(c.w), double(c.y));
  if (!(e0 > 0) || !(e1 > 0)) return -1.0;
  return __dmul_rn(e0, e1);
}

// README step 5 for two non-degenerate boxes; `a` is the earlier (kept) one.
// min/max select like std::min(a, b) / std::max(a, b).
__device__ __forceinline__ bool overlaps(float4 a, double area_a, float4 b, double area_b, double thr) {
  const float hi0 = b.z < a.z ? b.z : a.z, lo0 = a.x < b.x ? b.x : a.x;
  const double i0 = __dsub_rn(double(hi0), double(lo0));
  if (!(i0 > 0)) return false;
  const float hi1 = b.w < a.w ? b.w : a.w, lo1 = a.y < b.y ? b.y : a.y;
  const double i1 = __dsub_rn(double(hi1), double(lo1));
  if (!(i1 > 0)) return false;
  const double inter = __dmul_rn(i0, i1);
  const double uni = __dsub_rn(__dadd_rn(area_a, area_b), inter);
  return __ddiv_rn(inter, uni) > thr;
}

// Does a kept box suppress this (non-degenerate) candidate?
__device__ bool suppressed(const Ctx& c, float4 box, double area, int cls) {
  if (c.d.agnostic) {
    const int ns = c.sm.n_sup;
    for (int k = 0; k < ns; ++k)
      if (overlaps(c.kbox[k], c.karea[k], box, area, c.d.iou)) return true;
    return false;
  }
  for (int k = c.sm.khead[bucket_of(c.d, cls)]; k >= 0; k = c.knext[k])
    if (c.kcls[k] == cls && overlaps(c.kbox[k], c.karea[k], box, area, c.d.iou)) return true;
  return false;
}

// Candidates keys[0..m) in order, tile by tile, until max_output_boxes are kept.
// Every thread calls it; it starts and ends on a barrier.
__device__ void process(const Ctx& c, const uint64_t* keys, uint32_t m) {
  Shared& sm = c.sm;
  const int j = threadIdx.x, wj = j >> 6;
  const uint64_t bj = 1ull << (j & 63);
  for (uint32_t t0 = 0; t0 < m; t0 += kTile) {
    if (sm.n_kept >= c.d.k) return;
    if (j < kWords) sm.alive[j] = sm.live[j] = 0;
    for (int q = j; q < kBuckets * kWords; q += kThreads) sm.bucket[q / kWords][q % kWords] = 0;
    __syncthreads();

    // A. decode and test against the kept boxes.
    const bool has = t0 + j < m;
    float4 box = make_float4(0.f, 0.f, 0.f, 0.f);
    double area = -1.0;
    int cls = 0;
    uint32_t idx = 0;
    bool alive = false;
    if (has) {
      idx = uint32_t(keys[t0 + j]);
      const uint32_t b = idx / c.d.classes;
      cls = int(idx - b * c.d.classes);
      box = decode(c.d, c.io, c.n, b, uint32_t(cls));
      area = area_of(box);
      alive = !(area > 0) || !suppressed(c, box, area, cls);
      sm.tbox[j] = box;
      sm.tarea[j] = area;
      sm.tcls[j] = cls;
      if (alive) or_bits(&sm.alive[wj], bj);
      if (alive && area > 0) {
        or_bits(&sm.live[wj], bj);
        or_bits(&sm.bucket[bucket_of(c.d, cls)][wj], bj);
      }
    }
    __syncthreads();

    // B. later live tile members of my class bucket that I would suppress.
    uint64_t mine[kWords];
#pragma unroll
    for (int w = 0; w < kWords; ++w) mine[w] = 0;
    if (alive && area > 0) {
      const uint64_t* bk = sm.bucket[bucket_of(c.d, cls)];
#pragma unroll
      for (int w = 0; w < kWords; ++w) {
        if (w < wj) continue;
        uint64_t cand = bk[w];
        if (w == wj) cand &= (j & 63) == 63 ? 0ull : ~0ull << ((j & 63) + 1);
        while (cand) {
          const int q = __ffsll((long long)cand) - 1;
          cand &= cand - 1;
          const int i = w * 64 + q;
          if ((c.d.agnostic || sm.tcls[i] == cls) && overlaps(box, area, sm.tbox[i], sm.tarea[i], c.d.iou))
            mine[w] |= 1ull << q;
        }
      }
    }
#pragma unroll
    for (int w = 0; w < kWords; ++w) sm.succ[j][w] = mine[w];
    __syncthreads();

    // C. the greedy walk over the tile. With per-class counts, a candidate
    // whose class is full is skipped: not kept, and it suppresses nothing.
    if (j == 0) {
      uint64_t rem[kWords], km[kWords];
#pragma unroll
      for (int w = 0; w < kWords; ++w) rem[w] = sm.alive[w], km[w] = 0;
      const int64_t room = c.d.k - sm.n_kept;
      int32_t* counts = c.io.class_count ? c.io.class_count + int64_t(c.n) * c.d.classes : nullptr;
      int cnt = 0;
#pragma unroll
      for (int w = 0; w < kWords; ++w) {
        while (rem[w] && cnt < room) {
          const int q = __ffsll((long long)rem[w]) - 1;
          const int i = w * 64 + q;
          rem[w] &= ~(1ull << q);
          if (counts) {
            int32_t& have = counts[sm.tcls[i]];
            if (c.d.max_per_class > 0 && have >= c.d.max_per_class) continue;
            sm.trank[i] = have++;
          }
          const uint64_t* s = sm.succ[i];
          km[w] |= 1ull << q;
          ++cnt;
#pragma unroll
          for (int w2 = 0; w2 < kWords; ++w2)
            if (w2 >= w) rem[w2] &= ~s[w2];
        }
      }
#pragma unroll
      for (int w = 0; w < kWords; ++w) sm.kept[w] = km[w];
      sm.tile_kept = cnt;
    }
    __syncthreads();

    // D. outputs and kept lists.
    if (has && (sm.kept[wj] & bj)) {
      int before = 0, sup_before = 0;
#pragma unroll
      for (int w = 0; w < kWords; ++w) {
        const uint64_t mask = w < wj ? ~0ull : w == wj ? bj - 1 : 0ull;
        before += __popcll(sm.kept[w] & mask);
        sup_before += __popcll(sm.kept[w] & sm.live[w] & mask);
      }
      const int64_t row = int64_t(c.n) * c.d.k + sm.n_kept + before;
      float* ob = c.io.out_boxes + row * 4;
      ob[0] = box.x, ob[1] = box.y, ob[2] = box.z, ob[3] = box.w;
      const float raw = c.io.scores[int64_t(c.n) * c.d.per_image + idx];
      c.io.out_scores[row] =
          c.d.activation ? __double2float_rn(__ddiv_rn(1.0, __dadd_rn(1.0, exp(-double(raw))))) : raw;
      c.io.out_classes[row] = cls;
      if (c.io.out_index) c.io.out_index[row] = int32_t(idx / c.d.classes);
      if (c.io.out_rank) c.io.out_rank[row] = sm.trank[j];
      if (area > 0) {
        const int k = sm.n_sup + sup_before;
        c.kbox[k] = box;
        c.karea[k] = area;
        c.kcls[k] = cls;
        c.knext[k] = atomicExch(&sm.khead[bucket_of(c.d, cls)], k);
      }
    }
    __syncthreads();
    if (j == 0) {
      int sup = 0;
      for (int w = 0; w < kWords; ++w) sup += __popcll(sm.kept[w] & sm.live[w]);
      sm.n_sup += sup;
      sm.n_kept += sm.tile_kept;
    }
    __syncthreads();
  }
}

// The bound H of the next tier after key `after`: {after < key <= H} holds
// between min(kNextMin, all that remain) and kNextCap candidates. A radix
// select on the order key, 8 bits a pass, over all the image's scores.
__device__ uint64_t select_next(const Ctx& c, uint64_t after) {
  Shared& sm = c.sm;
  if (threadIdx.x == 0) sm.sel_prefix = 0, sm.sel_bits = 0, sm.sel_below = 0, sm.sel_done = 0;
  __syncthreads();
  const float* s = c.io.scores + int64_t(c.n) * c.d.per_image;
  for (;;) {
    const int bits = sm.sel_bits, shift = 56 - bits;
    const uint64_t prefix = sm.sel_prefix;
    for (int q = threadIdx.x; q < 256; q += kThreads) sm.hist[q] = 0;
    __syncthreads();
    for (uint32_t i = threadIdx.x; i < c.d.per_image; i += kThreads) {
      uint32_t u;
      if (!candidate(c.d, s[i], i, u)) continue;
      const uint64_t key = order_key(u, i);
      if (key <= after || (bits > 0 && (key >> (64 - bits)) != prefix)) continue;
      atomicAdd(&sm.hist[(key >> shift) & 255], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      const uint32_t below = sm.sel_below;
      uint32_t cum = 0;
      bool found = false;
      for (int dg = 0; dg < 256 && !found; ++dg) {
        const uint32_t h = sm.hist[dg];
        if (below + cum + h >= kNextMin) {
          const uint64_t p2 = (prefix << 8) | uint64_t(dg);
          if (below + cum + h <= kNextCap) {
            sm.sel_bound = (p2 << shift) | low_mask(shift);
            sm.sel_done = 1;
          } else {  // one byte more (never past 56 bits: a full key is one candidate)
            sm.sel_prefix = p2;
            sm.sel_bits = bits + 8;
            sm.sel_below = below + cum;
          }
          found = true;
        }
        cum += h;
      }
      if (!found) {  // fewer than kNextMin left in this group: take all of it
        sm.sel_bound = bits == 0 ? ~0ull : (prefix << (64 - bits)) | low_mask(64 - bits);
        sm.sel_done = 1;
      }
    }
    __syncthreads();
    if (sm.sel_done) return sm.sel_bound;
  }
}

// Gathers {after < key <= bound} into sm.next and sorts it; returns the count.
__device__ uint32_t gather_next(const Ctx& c, uint64_t after, uint64_t bound) {
  Shared& sm = c.sm;
  if (threadIdx.x == 0) sm.count = 0;
  __syncthreads();
  const float* s = c.io.scores + int64_t(c.n) * c.d.per_image;
  for (uint32_t i = threadIdx.x; i < c.d.per_image; i += kThreads) {
    uint32_t u;
    if (!candidate(c.d, s[i], i, u)) continue;
    const uint64_t key = order_key(u, i);
    if (key <= after || key > bound) continue;
    const uint32_t pos = atomicAdd(&sm.count, 1u);
    if (pos < kNextCap) sm.next[pos] = key;
  }
  __syncthreads();
  const uint32_t f = min(sm.count, kNextCap);
  uint32_t size = 1;
  while (size < f) size <<= 1;
  for (uint32_t q = f + threadIdx.x; q < size; q += kThreads) sm.next[q] = ~0ull;
  __syncthreads();
  // Bitonic sort, ascending (keys are unique; the padding sorts last).
  for (uint32_t k = 2; k <= size; k <<= 1)
    for (uint32_t st = k >> 1; st > 0; st >>= 1) {
      for (uint32_t i = threadIdx.x; i < size; i += kThreads) {
        const uint32_t l = i ^ st;
        if (l > i) {
          const uint64_t a = sm.next[i], b = sm.next[l];
          if ((a > b) == ((i & k) == 0)) sm.next[i] = b, sm.next[l] = a;
        }
      }
      __syncthreads();
    }
  return f;
}

__global__ void __launch_bounds__(kThreads) nms_kernel(Dev d, NmsIo io) {
  __shared__ Shared sm;
  const int n = blockIdx.x;
  const bool local = d.k <= kSmemKept;
  const int64_t kb = local ? 0 : int64_t(n) * d.k;
  const Ctx c{d,  io, sm, n, local ? sm.kbox : io.kept_box + kb, local ? sm.karea : io.kept_area + kb,
              local ? sm.kcls : io.kept_cls + kb, local ? sm.knext : io.kept_next + kb};
  for (int q = threadIdx.x; q < kBuckets; q += kThreads) sm.khead[q] = -1;
  if (threadIdx.x == 0) sm.n_kept = 0, sm.n_sup = 0;

  // Tier 0 in order: stage 1 ranked every key.
  const ImgState st = io.state[n];
  const uint32_t m = min(st.n_tier, kTierCap);
  const int64_t tb = int64_t(n) * kTierCap;
  for (uint32_t q = threadIdx.x; q < m; q += kThreads) {
    const uint32_t r = io.rank[tb + q];
    if (r < m) io.sorted[tb + r] = io.tier[tb + q];
  }
  __syncthreads();
  process(c, io.sorted + tb, m);

  // Later tiers, only while boxes are missing and candidates remain.
  uint32_t consumed = m;
  uint64_t after = (uint64_t(~st.lo_u) << 32) | 0xFFFFFFFFull;  // last key of tier 0's range
  while (sm.n_kept < d.k && consumed < st.n_cand) {
    const uint64_t bound = select_next(c, after);
    const uint32_t f = gather_next(c, after, bound);
    if (f == 0) break;
    process(c, sm.next, f);
    consumed += f;
    after = bound;
  }

  const int kept = sm.n_kept;
  if (threadIdx.x == 0) io.num_detections[n] = kept;
  for (int64_t r = kept + threadIdx.x; r < d.k; r += kThreads) {
    const int64_t row = int64_t(n) * d.k + r;
    float* ob = io.out_boxes + row * 4;
    ob[0] = ob[1] = ob[2] = ob[3] = 0.f;
    io.out_scores[row] = 0.f;
    io.out_classes[row] = 0;
    if (io.out_index) io.out_index[row] = 0;
    if (io.out_rank) io.out_rank[row] = 0;
  }
}

}  // namespace

void launch_nms(const Dev& d, const NmsIo& io, cudaStream_t stream) {
  nms_kernel<<<unsigned(d.batch), kThreads, 0, stream>>>(d, io);
  check_cuda(cudaGetLastError(), "NMS kernel launch");
}

}  // namespace kiln::plugins::efficient_nms::gpu
