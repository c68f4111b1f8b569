// Broadcasting integer arithmetic (int32/int64 Add, Sub, Mul, Div, Max, Min
// and two-input Sum): shape computations that stay on the device. Same
// semantics as the CPU kernel: wrap-around arithmetic, Div truncates toward
// zero and yields 0 for a zero divisor.
#include <type_traits>

#include "backends/cuda/common.h"
#include "backends/cuda/elementwise_ops.cuh"
#include "backends/cuda/tensor_plan.cuh"

namespace kiln::cuda::ew {

namespace {

constexpr int kThreads = 256;

struct IntArgs {
  const void* a = nullptr;
  const void* b = nullptr;
  void* out = nullptr;
  int64_t total = 0;
  Op op = kAdd;
  ix::Geometry<3> g;  // out, a, b
};

template <class T> __device__ __forceinline__ T int_op(Op op, T x, T y) {
  using U = std::make_unsigned_t<T>;
  switch (op) {
    case kAdd: return T(U(x) + U(y));
    case kSub: return T(U(x) - U(y));
    case kMul: return T(U(x) * U(y));
    case kDiv:
      if (y == 0) return T(0);
      if (y == T(-1)) return T(U(0) - U(x));  // no overflow trap on MIN / -1
      return T(x / y);
    case kMax: return x > y ? x : y;
    case kMin: return x < y ? x : y;
    default: return x;
  }
}

template <class T, class I> __global__ void __launch_bounds__(kThreads) int_kernel(const __grid_constant__ IntArgs a) {
  const T* pa = static_cast<const T*>(a.a);
  const T* pb = static_cast<const T*>(a.b);
  T* po = static_cast<T*>(a.out);
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < a.total; i += int64_t(gridDim.x) * kThreads) {
    I off[3];
    ix::locate<I, 3>(a.g, I(i), off);
    po[off[0]] = int_op<T>(a.op, pa[off[1]], pb[off[2]]);
  }
}

class IntKernel : public Kernel {
 public:
  IntKernel(const ir::Node& n, Op op) {
    const ir::Value& out = *n.outputs[0];
    wide_ = out.dtype == DataType::kInt64;
    ix::Plan p;
    p.dims = out.dims;
    p.add(strides_of(out));
    p.add(ix::broadcast_strides(*n.inputs[0], out.dims.size()));
    p.add(ix::broadcast_strides(*n.inputs[1], out.dims.size()));
    p = ix::normalized(p);
    a_.op = op;
    a_.total = p.total();
    a_.g = ix::geometry_of<3>(p, n.label());
    small_ = ix::fits32(p);
  }

  void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const override {
    if (a_.total == 0) return;
    IntArgs a = a_;
    a.a = in[0];
    a.b = in[1];
    a.out = out[0];
    const unsigned grid = grid_for(a.total, kThreads);
    if (wide_) {
      if (small_) int_kernel<int64_t, int32_t><<<grid, kThreads, 0, l.stream>>>(a);
      else int_kernel<int64_t, int64_t><<<grid, kThreads, 0, l.stream>>>(a);
    } else {
      if (small_) int_kernel<int32_t, int32_t><<<grid, kThreads, 0, l.stream>>>(a);
      else int_kernel<int32_t, int64_t><<<grid, kThreads, 0, l.stream>>>(a);
    }
    KILN_CUDA_LAUNCHED("int_kernel");
  }

 private:
  bool wide_ = false, small_ = true;
  IntArgs a_;
};

}  // namespace

std::vector<Tactic> int_binary_tactics(const ir::Node& n, std::string* why) {
  auto fail = [&](const std::string& m) {
    if (why) *why = m;
    return std::vector<Tactic>{};
  };
  Op op = kAdd;
  if (n.op_type != "Sum" && (!op_of(n.op_type, &op) || op == kPow || op == kPRelu))
    return fail("integer " + n.op_type + " has no CUDA kernel");
  if (n.inputs.size() != 2 || !n.inputs[0] || !n.inputs[1] || n.outputs.size() != 1 || !n.outputs[0])
    return fail("integer ops take exactly two inputs on the GPU");
  const DataType dt = n.inputs[0]->dtype;
  if (n.inputs[1]->dtype != dt || n.outputs[0]->dtype != dt) return fail("inputs differ in dtype");
  if (n.outputs[0]->dims.size() > size_t(kMaxRank)) return fail("rank above " + std::to_string(kMaxRank));
  const ir::Node* node = &n;
  return {{"eltwise_int", [node, op] { return std::unique_ptr<Kernel>(new IntKernel(*node, op)); }}};
}

}  // namespace kiln::cuda::ew
