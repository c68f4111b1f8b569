// The element-wise op set of the CUDA backend: one small interpreter serves
// single ops (Relu, Add, ...), variadic ones (Sum, Max, ...) and kiln
// FusedElementwise chains. A node becomes a Program of up to kMaxSteps steps
// applied to a chain value in registers; binary steps read one of up to
// kMaxInputs node inputs. The op switch runs once per pack of elements, so
// its cost is spread over 4-8 values. Formulas follow the CPU kernels
// (src/backends/cpu/unary.cpp, binary.cpp, fused_eltwise_ops.h) and compute
// in float for fp16 tensors.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/kernel.h"

namespace kiln::cuda::ew {

enum Op : uint8_t {
  // unary
  kRelu, kLeakyRelu, kSigmoid, kHardSigmoid, kHardSwish, kTanh, kExp, kNeg, kAbs, kSqrt, kClip, kErf, kElu,
  kSoftplus, kLog, kReciprocal, kFloor, kCeil, kRound, kSign, kSoftsign, kSelu, kCelu, kThresholdedRelu, kMish,
  kSin, kCos, kTan, kAsin, kAcos, kAtan, kSinh, kCosh, kAsinh, kAcosh, kAtanh, kGeluErf, kGeluTanh, kSwish,
  kShrink, kScale,
  // binary from here on
  kAdd, kSub, kMul, kDiv, kMax, kMin, kPow, kPRelu,
};
__host__ __device__ inline bool is_binary(Op op) { return op >= kAdd; }

// Op of an ONNX type name (Gelu maps to kGeluErf); false if not in the set.
bool op_of(const std::string& name, Op* op);

constexpr int kMaxSteps = 16;
constexpr int kMaxInputs = 8;

struct Step {
  Op op = kRelu;
  int8_t operand = -1;  // node input of a binary step
  uint8_t swap = 0;     // chain value is the right-hand side
  float a = 0.f, b = 0.f;
};

struct Program {
  int n = 0;
  Step s[kMaxSteps];
  // Standalone Clip with run-time bounds: node inputs holding min / max
  // (-1 if constant or absent), and whether each is fp16.
  int8_t lo_input = -1, hi_input = -1;
  uint8_t lo_half = 0, hi_half = 0;
};

// Kernel for `prog` over node `n`'s inputs (fp32, or fp16 throughout) into
// its output; constant inputs whose dtype differs from the compute dtype
// (an integer Pow exponent) are converted and uploaded by the kernel.
// Tactic names: "eltwise_flat" (every operand walks the output's order) or
// "eltwise_broadcast".
std::vector<Tactic> program_tactics(const ir::Node& n, const Program& prog, std::string* why);

// Add/Sub/Mul/Div/Max/Min/Sum on int32/int64 tensors (elementwise_int.cu).
std::vector<Tactic> int_binary_tactics(const ir::Node& n, std::string* why);

void register_fused_eltwise(Registry& r);  // elementwise_fused.cu
void register_cast_kernels(Registry& r);    // elementwise_cast.cu: Cast, Reformat

// ---- scalar formulas -----------------------------------------------------

__device__ __forceinline__ float clamp01(float v) {
  v = v > 1.0f ? 1.0f : v;
  return v < 0.0f ? 0.0f : v;  // NaN passes through
}
__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float softplusf(float x) {
  return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x));
}
__device__ __forceinline__ float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }
__device__ __forceinline__ float nan_min(float a, float b) { return (a < b || a != a) ? a : b; }

__device__ __forceinline__ float unary(Op op, float x, float a, float b) {
  switch (op) {
    case kRelu: return x < 0.0f ? 0.0f : x;
    case kLeakyRelu: return x < 0.0f ? a * x : x;
    case kSigmoid: return sigmoidf(x);
    case kHardSigmoid: return clamp01(a * x + b);
    case kHardSwish: return x * clamp01(x * (1.0f / 6.0f) + 0.5f);
    case kTanh: return tanhf(x);
    case kExp: return expf(x);
    case kNeg: return -x;
    case kAbs: return fabsf(x);
    case kSqrt: return sqrtf(x);
    case kClip: {
      const float y = x < a ? a : x;
      return y > b ? b : y;  // NaN passes through
    }
    case kErf: return erff(x);
    case kElu: return x < 0.0f ? a * expm1f(x) : x;
    case kSoftplus: return softplusf(x);
    case kLog: return logf(x);
    case kReciprocal: return 1.0f / x;
    case kFloor: return floorf(x);
    case kCeil: return ceilf(x);
    case kRound: return rintf(x);
    case kSign: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x);
    case kSoftsign: return x / (1.0f + fabsf(x));
    case kSelu: return x > 0.0f ? b * x : b * a * expm1f(x);  // a = alpha, b = gamma
    case kCelu: return x < 0.0f ? a * expm1f(x / a) : x;
    case kThresholdedRelu: return x > a ? x : 0.0f;
    case kMish: return x * tanhf(softplusf(x));
    case kSin: return sinf(x);
    case kCos: return cosf(x);
    case kTan: return tanf(x);
    case kAsin: return asinf(x);
    case kAcos: return acosf(x);
    case kAtan: return atanf(x);
    case kSinh: return sinhf(x);
    case kCosh: return coshf(x);
    case kAsinh: return asinhf(x);
    case kAcosh: return acoshf(x);
    case kAtanh: return atanhf(x);
    case kGeluErf: return 0.5f * x * erfcf(x * -0.70710678118654752f);
    case kGeluTanh: {
      const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      return x * sigmoidf(2.0f * u);
    }
    case kSwish: return x * sigmoidf(a * x);
    case kShrink: return x < -a ? x + b : (x > a ? x - b : 0.0f);  // a = lambd, b = bias
    case kScale: return x * a;
    default: return x;
  }
}

__device__ __forceinline__ float binary(Op op, float x, float y) {
  switch (op) {
    case kAdd: return x + y;
    case kSub: return x - y;
    case kMul: return x * y;
    case kDiv: return x / y;
    case kMax: return nan_max(x, y);
    case kMin: return nan_min(x, y);
    case kPow: return y == 2.0f ? x * x : powf(x, y);
    case kPRelu: return x < 0.0f ? x * y : x;
    default: return x;
  }
}

// v[j] = op(v[j]) for a pack; the switch is outside the element loop.
template <int N> __device__ __forceinline__ void apply_unary(Op op, float (&v)[N], float a, float b) {
  switch (op) {
#define KILN_EW_CASE(OP)                                             \
  case OP:                                                           \
    _Pragma("unroll") for (int j = 0; j < N; ++j) v[j] = unary(OP, v[j], a, b); \
    break;
    KILN_EW_CASE(kRelu) KILN_EW_CASE(kLeakyRelu) KILN_EW_CASE(kSigmoid) KILN_EW_CASE(kHardSigmoid)
    KILN_EW_CASE(kHardSwish) KILN_EW_CASE(kTanh) KILN_EW_CASE(kExp) KILN_EW_CASE(kNeg) KILN_EW_CASE(kAbs)
    KILN_EW_CASE(kSqrt) KILN_EW_CASE(kClip) KILN_EW_CASE(kErf) KILN_EW_CASE(kElu) KILN_EW_CASE(kSoftplus)
    KILN_EW_CASE(kScale)
#undef KILN_EW_CASE
    default:  // the rarer ops share one generic loop
#pragma unroll
      for (int j = 0; j < N; ++j) v[j] = unary(op, v[j], a, b);
  }
}

template <int N>
__device__ __forceinline__ void apply_binary(Op op, bool swap, float (&v)[N], const float (&w)[N]) {
  switch (op) {
#define KILN_EW_CASE(OP)                                                                               \
  case OP:                                                                                             \
    _Pragma("unroll") for (int j = 0; j < N; ++j) v[j] = swap ? binary(OP, w[j], v[j]) : binary(OP, v[j], w[j]); \
    break;
    KILN_EW_CASE(kAdd) KILN_EW_CASE(kSub) KILN_EW_CASE(kMul) KILN_EW_CASE(kDiv) KILN_EW_CASE(kMax)
    KILN_EW_CASE(kMin) KILN_EW_CASE(kPow) KILN_EW_CASE(kPRelu)
#undef KILN_EW_CASE
    default: break;
  }
}

}  // namespace kiln::cuda::ew
