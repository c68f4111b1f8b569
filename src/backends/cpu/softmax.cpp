// Softmax, LogSoftmax and Hardmax along one axis (opset-13 semantics). The
// input is viewed as [O, A, I]: with I == 1 (last axis, the common case)
// each row is contiguous; otherwise each step along A is a contiguous run of
// I lanes processed together. Rows are shifted by their max before exp.
// kiln never unmasks FP exceptions nor reads errno; letting the compiler
// speculate FP ops is what allows these select-style loops to vectorize.
#pragma GCC optimize("no-trapping-math", "no-math-errno")

#include <algorithm>
#include <cmath>
#include <limits>

#include "backends/cpu/eltwise_util.h"

namespace kiln::cpu {

namespace {

enum class Mode { kSoftmax, kLog, kHard };

float row_max(const float* x, int64_t n) {
  float lanes[16];
  for (float& l : lanes) l = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] = ew::nan_max(lanes[l], x[i + l]);
  float m = lanes[0];
  for (int l = 1; l < 16; ++l) m = ew::nan_max(m, lanes[l]);
  for (; i < n; ++i) m = ew::nan_max(m, x[i]);
  return m;
}

float row_sum(const float* x, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += x[i + l];
  float s = 0.0f;
  for (int l = 0; l < 16; ++l) s += lanes[l];
  for (; i < n; ++i) s += x[i];
  return s;
}

#ifdef KILN_EW_AVX2
#pragma GCC push_options
#pragma GCC target("avx512f")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Softmax / LogSoftmax of one contiguous row, 16 lanes at a time: max,
// then exp(x - max) with its sum in the same pass, then scale or shift.
void softmax_row16(const float* x, float* y, int64_t n, Mode mode) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 vm = ninf;
  __mmask16 nan = 0;
  int64_t i = 0;
  const __mmask16 tail = __mmask16((1u << (n % 16)) - 1u);
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    vm = _mm512_max_ps(vm, v);
  }
  if (tail) {
    __m512 v = _mm512_mask_loadu_ps(ninf, tail, x + i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    vm = _mm512_max_ps(vm, v);
  }
  const float m = nan ? std::numeric_limits<float>::quiet_NaN() : _mm512_reduce_max_ps(vm);
  const __m512 vmx = _mm512_set1_ps(m);
  __m512 vs = _mm512_setzero_ps();
  const bool store = mode == Mode::kSoftmax;
  for (i = 0; i + 16 <= n; i += 16) {
    __m512 e = ew::v16::exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmx));
    vs = _mm512_add_ps(vs, e);
    if (store) _mm512_storeu_ps(y + i, e);
  }
  if (tail) {
    __m512 e = ew::v16::exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), vmx));
    e = _mm512_maskz_mov_ps(tail, e);
    vs = _mm512_add_ps(vs, e);
    if (store) _mm512_mask_storeu_ps(y + i, tail, e);
  }
  const float s = _mm512_reduce_add_ps(vs);
  if (store) {
    const __m512 inv = _mm512_set1_ps(1.0f / s);
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), inv));
    if (tail) _mm512_mask_storeu_ps(y + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, y + i), inv));
  } else {
    // (x - m) first: subtracting m + log(s) at once would round at m's scale.
    const __m512 ls = _mm512_set1_ps(std::log(s));
    for (i = 0; i + 16 <= n; i += 16)
      _mm512_storeu_ps(y + i, _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmx), ls));
    if (tail)
      _mm512_mask_storeu_ps(y + i, tail, _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), vmx), ls));
  }
}
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

void softmax_row(const float* x, float* y, int64_t n, Mode mode) {
#ifdef KILN_EW_AVX2
  if (mode != Mode::kHard && ew::has_avx512()) return softmax_row16(x, y, n, mode);
#endif
  if (mode == Mode::kHard) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
      if (x[i] > x[best] || (x[i] != x[i] && x[best] == x[best])) best = i;
    std::fill(y, y + n, 0.0f);
    y[best] = 1.0f;
    return;
  }
  const float m = row_max(x, n);
  ew::exp_n(x, y, n, m);
  const float s = row_sum(y, n);
  if (mode == Mode::kSoftmax) {
    const float inv = 1.0f / s;
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  } else {
    // (x - m) first: subtracting m + log(s) at once would round at m's scale.
    const float ls = std::log(s);
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) - ls;
  }
}

// One [A, m] block with lanes strided by I: per-lane max, exp, sum, scale.
void softmax_cols(const float* x, float* y, int64_t A, int64_t I, int64_t m, Mode mode) {
  constexpr int64_t kChunk = 256;
  float mx[kChunk], sum[kChunk];
  for (int64_t i = 0; i < m; ++i) mx[i] = x[i];
  if (mode == Mode::kHard) {
    int64_t best[kChunk] = {};
    for (int64_t a = 1; a < A; ++a)
      for (int64_t i = 0; i < m; ++i) {
        const float v = x[a * I + i];
        if (v > mx[i] || (v != v && mx[i] == mx[i])) mx[i] = v, best[i] = a;
      }
    for (int64_t a = 0; a < A; ++a)
      for (int64_t i = 0; i < m; ++i) y[a * I + i] = best[i] == a ? 1.0f : 0.0f;
    return;
  }
  for (int64_t a = 1; a < A; ++a)
    for (int64_t i = 0; i < m; ++i) mx[i] = ew::nan_max(mx[i], x[a * I + i]);
  for (int64_t i = 0; i < m; ++i) sum[i] = 0.0f;
  for (int64_t a = 0; a < A; ++a)
    for (int64_t i = 0; i < m; ++i) {
      const float e = ew::exp_fast(x[a * I + i] - mx[i]);
      if (mode == Mode::kSoftmax) y[a * I + i] = e;
      sum[i] += e;
    }
  if (mode == Mode::kSoftmax) {
    for (int64_t i = 0; i < m; ++i) sum[i] = 1.0f / sum[i];
    for (int64_t a = 0; a < A; ++a)
      for (int64_t i = 0; i < m; ++i) y[a * I + i] *= sum[i];
  } else {
    for (int64_t i = 0; i < m; ++i) sum[i] = std::log(sum[i]);
    for (int64_t a = 0; a < A; ++a)
      for (int64_t i = 0; i < m; ++i) y[a * I + i] = (x[a * I + i] - mx[i]) - sum[i];
  }
}

void softmax_f32(const float* x, float* y, const ir::Dims& dims, int64_t axis, Mode mode) {
  int64_t O = 1, A = 1, I = 1;
  for (int64_t d = 0; d < int64_t(dims.size()); ++d) (d < axis ? O : d == axis ? A : I) *= dims[size_t(d)];
  if (O * A * I == 0) return;
  if (I == 1) {
    ew::parallel_range(O, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) softmax_row(x + o * A, y + o * A, A, mode);
    }, std::max<int64_t>(1, ew::kGrain / A));
    return;
  }
  constexpr int64_t kChunk = 256;
  const int64_t chunks = (I + kChunk - 1) / kChunk;
  ew::parallel_range(O * chunks, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / chunks, i0 = (t % chunks) * kChunk;
      const int64_t off = o * A * I + i0;
      softmax_cols(x + off, y + off, A, I, std::min(kChunk, I - i0), mode);
    }
  }, std::max<int64_t>(1, ew::kGrain / (A * kChunk)));
}

std::unique_ptr<Kernel> make_softmax(const ir::Node& n) {
  const DataType dt = n.inputs[0]->dtype;
  require_dtype(n, "input", dt, {DataType::kFloat32, DataType::kFloat16});
  const int64_t rank = int64_t(n.inputs[0]->dims.size());
  const int64_t axis = ir::normalize_axis(n, n.i("axis", -1), rank);
  const Mode mode = n.op_type == "Softmax" ? Mode::kSoftmax : n.op_type == "LogSoftmax" ? Mode::kLog : Mode::kHard;
  const bool last = axis == rank - 1;
  std::string tactic = std::string("cpu.softmax.") + (last ? "rows" : "columns");
  return make_kernel(tactic, [axis, mode, dt](const std::vector<const ir::Tensor*>& in,
                                              const std::vector<ir::Tensor*>& out) {
    if (dt == DataType::kFloat32) return softmax_f32(in[0]->data<float>(), out[0]->data<float>(), in[0]->dims(), axis, mode);
    ir::Tensor fx = ew::to_float_tensor(*in[0]), fy(DataType::kFloat32, in[0]->dims());
    softmax_f32(fx.data<float>(), fy.data<float>(), fx.dims(), axis, mode);
    ew::store_half_tensor(fy, *out[0]);
  });
}

}  // namespace

void register_softmax_kernels(KernelRegistry& r) {
  for (const char* op : {"Softmax", "LogSoftmax", "Hardmax"}) r.add(op, make_softmax);
}

}  // namespace kiln::cpu
