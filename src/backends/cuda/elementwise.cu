// Element-wise CUDA kernels: unary activations, broadcasting binary ops and
// the variadic Sum/Mean/Max/Min all run through one interpreter kernel (see
// elementwise_ops.cuh); FusedElementwise is in elementwise_fused.cu, integer
// arithmetic in elementwise_int.cu, Cast and Reformat in elementwise_cast.cu.
//
// The iteration space is the output in its own memory order (tensor_plan.cuh),
// so writes are coalesced for any layout. When every operand either walks
// that order contiguously or holds one value per innermost row, each thread
// handles a 16-byte pack (4 floats / 8 halves) with vector loads; otherwise
// one element.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "backends/cuda/common.h"
#include "backends/cuda/half_convert.cuh"
#include "backends/cuda/elementwise_ops.cuh"
#include "backends/cuda/tensor_plan.cuh"

namespace kiln::cuda {

namespace ew {

namespace {

constexpr int kThreads = 256;
constexpr int kOps = kMaxInputs + 1;  // output + inputs

// How a pack of N elements reads one input.
enum Read : uint8_t {
  kSame,       // walks the output's order: N contiguous values at the pack's index
  kRow,        // contiguous along the innermost axis, rows pack-aligned: N values at its offset
  kRowScalar,  // one value per innermost row
  kUniform,    // one value for the whole tensor
  kEach,       // anything else: every element's offset computed on its own
};

struct Args {
  Program prog;
  const void* in[kMaxInputs] = {};
  void* out = nullptr;
  int nin = 0;
  int64_t total = 0;
  uint8_t read[kMaxInputs] = {};
  uint8_t need_locate = 0;  // some input reads kRow / kRowScalar
  ix::Geometry<kOps> g;     // operand 0 = output, k + 1 = input k
};

template <class T, int N> struct alignas(sizeof(T) * N) Pack {
  T v[N];
};


// off[k] without dynamic indexing (which would force the array to local memory).
template <class I> __device__ __forceinline__ I pick(const I (&off)[kOps], int k) {
  I o = off[0];
#pragma unroll
  for (int j = 1; j < kOps; ++j)
    if (j == k) o = off[j];
  return o;
}

// Input k's values for the pack at flat index i (off: located offsets).
template <class T, int N, class I>
__device__ __forceinline__ void load(const Args& a, int k, I i, const I (&off)[kOps], float (&v)[N]) {
  const T* p = static_cast<const T*>(a.in[k]);
  if (N == 1) {
    v[0] = to_f(p[pick(off, k + 1)]);
    return;
  }
  const uint8_t how = a.read[k];
  if (how == kSame || how == kRow) {
    const Pack<T, N> x = *reinterpret_cast<const Pack<T, N>*>(p + (how == kSame ? i : pick(off, k + 1)));
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] = to_f(x.v[j]);
  } else if (how == kEach) {
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] = to_f(p[ix::offset_of<I>(a.g, k + 1, I(i + j))]);
  } else {
    const float x = to_f(p[how == kUniform ? I(a.g.base[k + 1]) : pick(off, k + 1)]);
#pragma unroll
    for (int j = 0; j < N; ++j) v[j] = x;
  }
}

__device__ __forceinline__ float read_bound(const void* p, uint8_t half) {
  return half ? __half2float(*static_cast<const __half*>(p)) : *static_cast<const float*>(p);
}

// Runs the program on the N elements from flat index i (one pack, or one
// element when N == 1) and stores them; the output is dense in its own
// order, so element i lies at offset i.
template <class T, int N, class I>
__device__ __forceinline__ void run_pack(const Args& a, I i, float lo, float hi) {
  I off[kOps];
  if (N == 1 || a.need_locate) ix::locate<I, kOps>(a.g, i, off, a.nin + 1);
  else
#pragma unroll
    for (int k = 0; k < kOps; ++k) off[k] = 0;
  float v[N];
  load<T, N, I>(a, 0, i, off, v);
  for (int s = 0; s < a.prog.n; ++s) {
    const Step st = a.prog.s[s];
    if (!is_binary(st.op)) {
      float x = st.a, y = st.b;
      if (st.op == kClip) {
        if (a.prog.lo_input >= 0) x = lo;
        if (a.prog.hi_input >= 0) y = hi;
      }
      apply_unary<N>(st.op, v, x, y);
    } else {
      float w[N];
      load<T, N, I>(a, st.operand, i, off, w);
      apply_binary<N>(st.op, st.swap != 0, v, w);
    }
  }
  Pack<T, N> o;
#pragma unroll
  for (int j = 0; j < N; ++j) o.v[j] = from_f<T>(v[j]);
  *reinterpret_cast<Pack<T, N>*>(static_cast<T*>(a.out) + i) = o;
}

// Packs of N elements, then the last total % N elements one by one.
template <class T, int N, class I>
__global__ void __launch_bounds__(kThreads) eltwise_kernel(const __grid_constant__ Args a) {
  float lo = 0.f, hi = 0.f;
  if (a.prog.lo_input >= 0) lo = read_bound(a.in[a.prog.lo_input], a.prog.lo_half);
  if (a.prog.hi_input >= 0) hi = read_bound(a.in[a.prog.hi_input], a.prog.hi_half);
  const int64_t packs = a.total / N, stride = int64_t(gridDim.x) * kThreads;
  const int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  for (int64_t p = t; p < packs; p += stride) run_pack<T, N, I>(a, I(p * N), lo, hi);
  if (N > 1)
    for (int64_t i = packs * N + t; i < a.total; i += stride) run_pack<T, 1, I>(a, I(i), lo, hi);
}

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

// Inputs a program reads through the geometry (x0 and binary operands).
std::vector<bool> used_inputs(const ir::Node& n, const Program& prog) {
  std::vector<bool> used(n.inputs.size(), false);
  if (!used.empty()) used[0] = true;
  for (int s = 0; s < prog.n; ++s)
    if (is_binary(prog.s[s].op)) used[size_t(prog.s[s].operand)] = true;
  return used;
}

ix::Plan plan_of(const ir::Node& n, const std::vector<bool>& used) {
  const ir::Value& out = *n.outputs[0];
  const size_t r = out.dims.size();
  ix::Plan p;
  p.dims = out.dims;
  p.add(strides_of(out));
  for (size_t k = 0; k < n.inputs.size(); ++k)
    p.add(used[k] ? ix::broadcast_strides(*n.inputs[k], r) : std::vector<int64_t>(r, 0));
  return ix::normalized(p);
}

// How input k (plan operand k + 1) is read in packs of `vec` elements.
Read read_of(const ix::Plan& p, size_t op, int vec) {
  const int last = p.rank() - 1;
  const std::vector<int64_t>& s = p.strides[op];
  if (std::all_of(s.begin(), s.end(), [](int64_t x) { return x == 0; })) return kUniform;
  if (s == p.strides[0] && p.base[op] == p.base[0]) return kSame;
  // Row reads need packs that never cross a row.
  if (last > 0 && p.dims[size_t(last)] % vec == 0) {
    if (s[size_t(last)] == 0) return kRowScalar;
    bool aligned = s[size_t(last)] == 1 && p.base[op] % vec == 0;
    for (int a = 0; a < last; ++a) aligned = aligned && s[size_t(a)] % vec == 0;
    if (aligned) return kRow;
  }
  return kEach;
}

class EltwiseKernel : public Kernel {
 public:
  EltwiseKernel(const ir::Node& n, const Program& prog) : label_(n.label()) {
    const ir::Value& out = *n.outputs[0];
    half_ = out.dtype == DataType::kFloat16;
    if (n.inputs.size() > size_t(kMaxInputs))
      throw_unsupported(label_ + ": more than " + std::to_string(kMaxInputs) + " inputs");
    used_ = used_inputs(n, prog);
    owned_.resize(n.inputs.size());
    // Constant operands of another dtype (an integer Pow exponent) are
    // converted once here.
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const ir::Tensor* c = constant_input(n, k);
      if (!used_[k] || !c || c->dtype() == out.dtype) continue;
      std::vector<double> v = c->to_double();
      if (half_) {
        std::vector<uint16_t> h(v.size());
        for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_half(float(v[i]));
        owned_[k] = upload(h.data(), h.size() * 2);
      } else {
        std::vector<float> f(v.begin(), v.end());
        owned_[k] = upload(f.data(), f.size() * 4);
      }
    }
    const ix::Plan p = plan_of(n, used_);
    a_.prog = prog;
    a_.nin = int(n.inputs.size());
    a_.total = p.total();
    a_.g = ix::geometry_of<kOps>(p, label_);
    small_ = ix::fits32(p);
    vec_ = half_ ? 8 : 4;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      a_.read[k] = used_[k] ? read_of(p, k + 1, vec_) : kUniform;
      if (a_.read[k] == kRow || a_.read[k] == kRowScalar) a_.need_locate = 1;
    }
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (a_.total == 0) return;
    Args a = a_;
    bool aligned = true;  // vector loads need 16-byte aligned bases
    for (size_t k = 0; k < in.size() && k < used_.size(); ++k) {
      a.in[k] = owned_[k] ? owned_[k].get() : in[k];
      if ((a.read[k] == kSame || a.read[k] == kRow) && reinterpret_cast<uintptr_t>(a.in[k]) % 16) aligned = false;
    }
    a.out = out[0];
    if (reinterpret_cast<uintptr_t>(a.out) % 16) aligned = false;
    const int n = aligned ? vec_ : 1;
    const unsigned grid = grid_for((a.total + n - 1) / n, kThreads);
    if (half_) launch<__half>(a, aligned, grid, l.stream);
    else launch<float>(a, aligned, grid, l.stream);
    KILN_CUDA_LAUNCHED("eltwise_kernel");
  }

 private:
  template <class T> void launch(const Args& a, bool packed, unsigned grid, cudaStream_t s) const {
    constexpr int kVec = 16 / sizeof(T);
    if (packed && small_) eltwise_kernel<T, kVec, int32_t><<<grid, kThreads, 0, s>>>(a);
    else if (packed) eltwise_kernel<T, kVec, int64_t><<<grid, kThreads, 0, s>>>(a);
    else if (small_) eltwise_kernel<T, 1, int32_t><<<grid, kThreads, 0, s>>>(a);
    else eltwise_kernel<T, 1, int64_t><<<grid, kThreads, 0, s>>>(a);
  }

  std::string label_;
  bool half_ = false, small_ = true;
  int vec_ = 4;
  std::vector<bool> used_;
  std::vector<DevicePtr> owned_;
  Args a_;
};

}  // namespace

bool op_of(const std::string& name, Op* op) {
  static const char* const kNames[] = {
      "Relu",  "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",     "Exp",        "Neg",
      "Abs",   "Sqrt",      "Clip",    "Erf",         "Elu",       "Softplus", "Log",        "Reciprocal",
      "Floor", "Ceil",      "Round",   "Sign",        "Softsign",  "Selu",     "Celu",       "ThresholdedRelu",
      "Mish",  "Sin",       "Cos",     "Tan",         "Asin",      "Acos",     "Atan",       "Sinh",
      "Cosh",  "Asinh",     "Acosh",   "Atanh",       "Gelu",      "GeluTanh", "Swish",      "Shrink",
      "Scale", "Add",       "Sub",     "Mul",         "Div",       "Max",      "Min",        "Pow",
      "PRelu"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == size_t(kPRelu) + 1, "one name per op");
  for (size_t k = 0; k < sizeof(kNames) / sizeof(kNames[0]); ++k)
    if (name == kNames[k]) {
      *op = Op(k);
      return true;
    }
  return false;
}

std::vector<Tactic> program_tactics(const ir::Node& n, const Program& prog, std::string* why) {
  auto fail = [&](const std::string& m) {
    if (why) *why = m;
    return std::vector<Tactic>{};
  };
  if (n.outputs.size() != 1 || !n.outputs[0] || n.inputs.empty() || !n.inputs[0])
    return fail("expected one output and a first input");
  const DataType dt = n.outputs[0]->dtype;
  if (!is_float(dt)) return fail("the CUDA kernel computes fp32/fp16 only, the output is " + std::string(dtype_name(dt)));
  if (n.inputs.size() > size_t(kMaxInputs))
    return fail(std::to_string(n.inputs.size()) + " inputs; the CUDA kernel takes at most " + std::to_string(kMaxInputs));
  if (prog.n > kMaxSteps) return fail("more than " + std::to_string(kMaxSteps) + " fused ops");
  if (n.outputs[0]->dims.size() > size_t(kMaxRank)) return fail("rank above " + std::to_string(kMaxRank));
  const std::vector<bool> used = used_inputs(n, prog);
  for (size_t k = 0; k < n.inputs.size(); ++k) {
    const ir::Value* v = n.inputs[k];
    if (!used[k]) continue;
    if (!v) return fail("input " + std::to_string(k) + " is missing");
    if (v->dtype != dt && !(constant_input(n, k) && v->dtype != DataType::kBool))
      return fail("input '" + v->name + "' is " + dtype_name(v->dtype) + " but the output is " + dtype_name(dt) +
                  " (a run-time input must match)");
  }
  const ix::Plan p = plan_of(n, used);
  if (p.rank() > kMaxRank) return fail("the broadcast does not merge into " + std::to_string(kMaxRank) + " axes");
  const ir::Node* node = &n;
  const std::string name = p.rank() == 1 ? "eltwise_flat" : "eltwise_broadcast";
  return {{name, [node, prog] { return std::unique_ptr<Kernel>(new EltwiseKernel(*node, prog)); }}};
}

namespace {

float bound_of(const ir::Tensor& t) {
  return t.dtype() == DataType::kFloat16 ? half_to_float(t.data<uint16_t>()[0]) : float(t.to_double()[0]);
}

std::vector<Tactic> unary_tactics(const ir::Node& n, std::string* why) {
  Op op;
  std::string type = n.op_type;
  if (type == "Gelu" && n.s("approximate", "none") == "tanh") type = "GeluTanh";
  if (!op_of(type, &op) || is_binary(op)) {
    if (why) *why = "not an element-wise op";
    return {};
  }
  if (!n.in(0) || !is_float(n.in(0)->dtype)) {
    if (why) *why = "the CUDA kernel takes fp32/fp16 inputs only";
    return {};
  }
  Program prog;
  prog.n = 1;
  Step& s = prog.s[0];
  s.op = op;
  if (op == kLeakyRelu) s.a = n.f("alpha", 0.01f);
  if (op == kHardSigmoid) s.a = n.f("alpha", 0.2f), s.b = n.f("beta", 0.5f);
  if (op == kElu || op == kCelu || op == kThresholdedRelu || op == kSwish) s.a = n.f("alpha", 1.0f);
  if (op == kShrink) s.a = n.f("lambd", 0.5f), s.b = n.f("bias", 0.0f);
  if (op == kSelu) s.a = n.f("alpha", 1.67326319217681884765625f), s.b = n.f("gamma", 1.05070102214813232421875f);
  if (op == kCelu && s.a == 0.0f) throw_bad_input(n.label() + ": Celu alpha must not be 0");
  if (op == kClip) {
    s.a = -std::numeric_limits<float>::infinity();
    s.b = std::numeric_limits<float>::infinity();
    for (size_t k = 1; k < 3; ++k) {
      const ir::Value* v = n.in(k);
      if (!v) continue;
      if (!is_float(v->dtype)) {
        if (why) *why = "Clip bounds must be fp32/fp16";
        return {};
      }
      if (const ir::Tensor* c = constant_input(n, k)) {
        if (c->numel() != 1) throw_bad_input(n.label() + ": Clip bound '" + v->name + "' must hold one value");
        (k == 1 ? s.a : s.b) = bound_of(*c);
      } else {
        (k == 1 ? prog.lo_input : prog.hi_input) = int8_t(k);
        (k == 1 ? prog.lo_half : prog.hi_half) = v->dtype == DataType::kFloat16;
      }
    }
  }
  return program_tactics(n, prog, why);
}

// Add/Sub/Mul/Div/Pow/PRelu and the variadic Sum/Mean/Max/Min: a chain over
// the inputs (Mean scales at the end).
std::vector<Tactic> binary_tactics(const ir::Node& n, std::string* why) {
  const bool mean = n.op_type == "Mean";
  Op op = kAdd;
  if (n.op_type != "Sum" && !mean && !op_of(n.op_type, &op)) {
    if (why) *why = "not an element-wise op";
    return {};
  }
  Program prog;
  for (size_t k = 1; k < n.inputs.size() && prog.n < kMaxSteps; ++k) {
    prog.s[prog.n].op = op;
    prog.s[prog.n].operand = int8_t(k);
    ++prog.n;
  }
  if (n.inputs.size() > size_t(kMaxInputs)) {
    if (why) *why = "more than " + std::to_string(kMaxInputs) + " inputs";
    return {};
  }
  if (mean && n.inputs.size() > 1) {
    prog.s[prog.n].op = kScale;
    prog.s[prog.n].a = 1.0f / float(n.inputs.size());
    ++prog.n;
  }
  return program_tactics(n, prog, why);
}

// Integer inputs go to elementwise_int.cu.
std::vector<Tactic> binary_or_int(const ir::Node& n, std::string* why) {
  const ir::Value* x = n.in(0);
  if (x && (x->dtype == DataType::kInt32 || x->dtype == DataType::kInt64)) return int_binary_tactics(n, why);
  return binary_tactics(n, why);
}

}  // namespace
}  // namespace ew

void register_elementwise_kernels(Registry& r) {
  OpTraits one;
  one.fp16_inputs = {0};
  one.any_layout = true;
  one.out_layout = OpTraits::kLikeInput0;
  for (const char* op : {"Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Exp", "Log", "Neg",
                         "Abs", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf", "Elu", "Selu", "Celu",
                         "Softplus", "Softsign", "ThresholdedRelu", "Mish", "Gelu", "Swish", "Shrink", "Sin", "Cos",
                         "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"})
    r.add(op, ew::unary_tactics, one);
  // Clip bounds share the input's dtype (shape inference requires it), so
  // they convert with it; fp16 rounding of a bound cannot change an fp16 result.
  OpTraits clip = one;
  clip.fp16_inputs = {0, 1, 2};
  r.add("Clip", ew::unary_tactics, clip);

  OpTraits two = one;
  two.fp16_inputs = {0, 1};
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Pow", "PRelu"}) r.add(op, ew::binary_or_int, two);
  OpTraits many = one;
  many.fp16_inputs.clear();
  for (int k = 0; k < ew::kMaxInputs; ++k) many.fp16_inputs.push_back(k);
  for (const char* op : {"Sum", "Mean", "Max", "Min"}) r.add(op, ew::binary_or_int, many);
  ew::register_fused_eltwise(r);
  ew::register_cast_kernels(r);
}

}  // namespace kiln::cuda
