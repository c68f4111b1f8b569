// One CUTLASS 3.x sm_90a implicit-GEMM forward convolution per tile shape
// (see conv_cutlass.h). Included by one small .cu file per tile so each
// instantiation compiles on its own.
//
// GEMM view of the convolution (CUTLASS's fprop mapping): M = N*P*Q output
// pixels, N = K output channels, reduction = C*R*S. X is read through TMA
// im2col loads (padding, stride and dilation are TMA box parameters, out of
// bounds reads are zeros), W as a tiled K x (C, S, R) matrix. The kernel is
// TMA warp-specialized (one producer warp group, one MMA warp group; CUTLASS
// 4.2 offers no persistent schedule for convolutions), cluster 1x1x1.
//
// Epilogue (LinCombPerColBiasEltAct with a runtime clamp), in float:
//   D = clamp(1 * acc + bias[k] + beta * C, lo, hi),  C = Z, beta = 1 with a
//   residual and 0 without (then C is never read).
// This is the node's act(conv + B + Z) in the order conv.cpp fixes; with no
// bias the bias pointer is null and CUTLASS broadcasts 0.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

// CUTLASS headers are not all self-contained: this order is the one its own
// sm90 conv tests use.
#include "cutlass/cutlass.h"
#include "cute/tensor.hpp"
#include "cutlass/numeric_types.h"
#include "cutlass/kernel_hardware_info.hpp"
#include "cutlass/device_kernel.h"
#include "cutlass/conv/convnd_problem_shape.hpp"
#include "cutlass/conv/device/conv_universal_adapter.hpp"
#include "cutlass/conv/kernel/conv_universal.hpp"
#include "cutlass/conv/collective/collective_builder.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/epilogue/thread/activation.h"

#include "backends/cuda/cutlass/conv_cutlass.h"
#include "kiln/error.h"

namespace kiln::cuda::cutlass_sm90 {

template <int TileM, int TileN, int TileK>
class Sm90ConvTile final : public ConvTile {
  using Half = cutlass::half_t;
  using TileShape = cute::Shape<cute::Int<TileM>, cute::Int<TileN>, cute::Shape<cute::Int<TileK>>>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;
  // 16 bytes of halves: TMA's minimum alignment (C and K multiples of 8).
  static constexpr int kAlign = 8;

  using Fusion = cutlass::epilogue::fusion::LinCombPerColBiasEltAct<
      cutlass::epilogue::thread::Clamp, Half /*D*/, float /*compute*/, Half /*bias*/, Half /*C*/, float /*scalars*/>;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, float /*accumulator*/, float /*compute*/,
      Half, cutlass::layout::TensorNHWC, kAlign, Half, cutlass::layout::TensorNHWC, kAlign,
      cutlass::epilogue::TmaWarpSpecialized, Fusion>::CollectiveOp;
  using Mainloop = typename cutlass::conv::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, cutlass::conv::Operator::kFprop,
      Half, cutlass::layout::TensorNHWC, kAlign, Half, cutlass::layout::TensorNHWC, kAlign, float /*accumulator*/,
      TileShape, ClusterShape,
      cutlass::conv::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      cutlass::conv::collective::KernelScheduleAuto>::CollectiveOp;
  using Problem = cutlass::conv::ConvProblemShape<Mainloop::DispatchPolicy::ConvOp,
                                                  Mainloop::DispatchPolicy::NumSpatialDimensions>;
  using Kernel = cutlass::conv::kernel::ConvUniversal<Problem, Mainloop, Epilogue>;
  using Device = cutlass::conv::device::ConvUniversalAdapter<Kernel>;
  static_assert(Problem::RankS == 2, "2-D convolutions only");

 public:
  explicit Sm90ConvTile(const char* name) : name_(name) {}
  const char* name() const override { return name_; }

  std::string check(const ConvShape& s) const override {
    // Null pointers: can_implement looks at shapes and strides only.
    const typename Kernel::Arguments args = arguments(s, ConvOperands{});
    if (!output_matches(args.problem_shape, s)) return "CUTLASS computes another output shape";
    const cutlass::Status st = Device::can_implement(args);
    if (st != cutlass::Status::kSuccess)
      return std::string("CUTLASS cannot implement it (") + cutlass::cutlassGetStatusString(st) + ")";
    return "";
  }

  size_t workspace_bytes(const ConvShape& s) const override {
    return Device::get_workspace_size(arguments(s, ConvOperands{}));
  }

  void prepare() const override {
    reserve_shared_memory(reinterpret_cast<const void*>(cutlass::device_kernel<Kernel>), Kernel::SharedStorageSize,
                          std::string("cutlass_sm90:") + name_);
  }

  void launch(const ConvShape& s, const ConvOperands& o, void* workspace, cudaStream_t stream) const override {
    // TMA descriptors need 16-byte aligned global addresses.
    auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 != 0; };
    if (!o.x || !o.w || !o.y || (s.has_z && !o.z) || misaligned(o.x) || misaligned(o.w) || misaligned(o.y) ||
        (s.has_z && misaligned(o.z)))
      throw_internal(std::string("cutlass_sm90:") + name_ + ": a tensor is missing or not 16-byte aligned");
    const typename Kernel::Arguments args = arguments(s, o);
    cutlass::Status st = Device::can_implement(args);
    if (st == cutlass::Status::kSuccess) st = Kernel::initialize_workspace(args, workspace, stream);
    if (st != cutlass::Status::kSuccess)
      throw_internal(std::string("cutlass_sm90:") + name_ + ": " + cutlass::cutlassGetStatusString(st));
    // Params built per launch: they hold TMA descriptors of this call's
    // pointers, and the kernel object must stay unchanged (shared by contexts).
    typename Kernel::Params params = Kernel::to_underlying_arguments(args, workspace);
    st = Device::run(params, stream);
    if (st != cutlass::Status::kSuccess) {
      const cudaError_t e = cudaGetLastError();
      throw_internal(std::string("cutlass_sm90:") + name_ + ": launch failed: " + cutlass::cutlassGetStatusString(st) +
                     " (" + cudaGetErrorString(e) + ")");
    }
  }

 private:
  static bool output_matches(const Problem& p, const ConvShape& s) {
    return p.shape_C[0] == s.n && p.shape_C[1] == s.p && p.shape_C[2] == s.q && p.shape_C[3] == s.k;
  }

  static typename Kernel::Arguments arguments(const ConvShape& s, const ConvOperands& o) {
    typename Problem::TensorExtent act{}, flt{};
    act[0] = s.n, act[1] = s.h, act[2] = s.w, act[3] = s.c;
    flt[0] = s.k, flt[1] = s.r, flt[2] = s.s, flt[3] = s.c;
    typename Problem::ShapePadding lo{}, hi{};
    typename Problem::TraversalStride ts{};
    typename Problem::ShapeDilation dl{};
    for (int i = 0; i < 2; ++i) {
      lo[i] = s.pad_lo[i];
      hi[i] = s.pad_hi[i];
      ts[i] = s.stride[i];
      dl[i] = s.dil[i];
    }
    const Problem problem(cutlass::conv::Mode::kCrossCorrelation, act, Problem::packed_stride_right_major(act), flt,
                          Problem::packed_stride_right_major(flt), lo, hi, ts, dl, 1);
    // C and D: modes ((q, p, n), k); the flat NPQK strides reversed.
    typename Kernel::StrideC dc{};
    typename Kernel::StrideD dd{};
    cute::for_each(cute::make_seq<cute::rank<0>(typename Kernel::StrideC{})>{}, [&](auto i) {
      cute::get<0, i>(dc) = problem.stride_C[Problem::RankT - 2 - i];
      cute::get<0, i>(dd) = problem.stride_C[Problem::RankT - 2 - i];
    });
    const Half* y = static_cast<const Half*>(o.y);
    // Without a residual C is never loaded (beta = 0); Y stands in as a valid address.
    const Half* c = s.has_z ? static_cast<const Half*>(o.z) : y;
    typename Kernel::Arguments args(
        problem, typename Kernel::MainloopArguments{static_cast<const Half*>(o.x), static_cast<const Half*>(o.w)},
        typename Kernel::EpilogueArguments{{}, c, dc, y, dd}, cutlass::KernelHardwareInfo{});
    auto& f = args.epilogue.thread;
    f.alpha = 1.f;
    f.beta = s.has_z ? 1.f : 0.f;
    f.bias_ptr = s.has_bias ? static_cast<const Half*>(o.bias) : nullptr;
    f.activation.lower_bound = o.lo;
    f.activation.upper_bound = o.hi;
    return args;
  }

  const char* name_;
};

}  // namespace kiln::cuda::cutlass_sm90
