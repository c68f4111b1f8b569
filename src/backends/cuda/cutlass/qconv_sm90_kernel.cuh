// One CUTLASS 3.x sm_90a INT8 implicit-GEMM forward convolution per
// configuration (see qconv_cutlass.h). Included by one small .cu file per
// configuration so each instantiation compiles on its own.
//
// Mainloop: as conv_sm90_kernel.cuh (TMA im2col loads of X, TMA tiled loads
// of KRSC W, warp-specialized wgmma), with int8 operands and int32
// accumulators. K tiles of 64 int8: ResNet-style layers have C = 64 * 2^i,
// and a 128-wide K tile over C = 64 left half of every tile zeros.
//
// CUTLASS 4.2 has only the non-persistent conv schedule: a CTA's epilogue
// overlaps nothing but other resident CTAs. With the default stage count
// one CTA filled the shared memory, so every tile ran load -> MMA ->
// epilogue in series. Configurations with MinBlocks = 2 fix the stage count
// and bound registers (launch bounds) so two CTAs share an SM and one's
// epilogue hides the other's loads.
//
// Epilogue: the QConv visitor tree of qconv_epilogue.cuh (shared with the
// 1x1 GEMM kernels of qconv_gemm_kernel.cuh).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

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

#include "backends/cuda/cutlass/qconv_cutlass.h"
#include "backends/cuda/cutlass/qconv_epilogue.cuh"
#include "kiln/error.h"

namespace kiln::cuda::cutlass_sm90 {

// A kernel whose launch bounds ask for MinBlocks resident CTAs per SM (the
// compiler then keeps registers within 64K / (threads * MinBlocks)).
template <class Base, int MinBlocks> struct WithMinBlocks : Base {
  static constexpr uint32_t MinBlocksPerMultiprocessor = MinBlocks;
};

// Stages 0: as many mainloop stages as the shared memory holds (one CTA per SM).
template <int TileM, int TileN, int TileK, class ElementD, class ElementC, int Stages, int MinBlocks>
class Sm90QConvTile final : public QConvTile {
  using TileShape = cute::Shape<cute::Int<TileM>, cute::Int<TileN>, cute::Shape<cute::Int<TileK>>>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;
  // 16 bytes: TMA's minimum alignment (C and K multiples of 16 for int8).
  static constexpr int kAlignAB = 16;
  static constexpr int kAlignC = 16 / int(sizeof(ElementC));
  static constexpr int kAlignD = 16 / int(sizeof(ElementD));
  using QFusion = QConvFusion<TileShape, ElementD, ElementC>;
  using Fusion = typename QFusion::Type;

  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, int32_t /*accumulator*/, float /*compute*/,
      ElementC, cutlass::layout::TensorNHWC, kAlignC, ElementD, cutlass::layout::TensorNHWC, kAlignD,
      cutlass::epilogue::TmaWarpSpecialized, Fusion>::CollectiveOp;
  using Mainloop = typename cutlass::conv::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, cutlass::conv::Operator::kFprop,
      int8_t, cutlass::layout::TensorNHWC, kAlignAB, int8_t, cutlass::layout::TensorNHWC, kAlignAB,
      int32_t /*accumulator*/, TileShape, ClusterShape,
      std::conditional_t<Stages == 0,
                         cutlass::conv::collective::StageCountAutoCarveout<
                             static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
                         cutlass::conv::collective::StageCount<(Stages > 0 ? Stages : 1)>>,
      cutlass::conv::collective::KernelScheduleAuto>::CollectiveOp;
  using Problem = cutlass::conv::ConvProblemShape<Mainloop::DispatchPolicy::ConvOp,
                                                  Mainloop::DispatchPolicy::NumSpatialDimensions>;
  using Kernel = WithMinBlocks<cutlass::conv::kernel::ConvUniversal<Problem, Mainloop, Epilogue>, MinBlocks>;
  using Device = cutlass::conv::device::ConvUniversalAdapter<Kernel>;
  static_assert(Problem::RankS == 2, "2-D convolutions only");
  static_assert(MinBlocks == 1 || Kernel::SharedStorageSize * MinBlocks <= (227 << 10),
                "MinBlocks CTAs must fit the shared memory of one SM");

 public:
  Sm90QConvTile(const char* name, DataType out, DataType z) : name_(name), out_(out), z_(z) {}
  const char* name() const override { return name_; }
  DataType out_dtype() const override { return out_; }
  DataType z_dtype() const override { return z_; }

  std::string check(const ConvShape& s) const override {
    // Null pointers: can_implement looks at shapes and strides only.
    const typename Kernel::Arguments args = arguments(s, QConvOperands{});
    const Problem& p = args.problem_shape;
    if (p.shape_C[0] != s.n || p.shape_C[1] != s.p || p.shape_C[2] != s.q || p.shape_C[3] != s.k)
      return "CUTLASS computes another output shape";
    const cutlass::Status st = Device::can_implement(args);
    if (st != cutlass::Status::kSuccess)
      return std::string("CUTLASS cannot implement it (") + cutlass::cutlassGetStatusString(st) + ")";
    return "";
  }

  size_t workspace_bytes(const ConvShape& s) const override {
    return Device::get_workspace_size(arguments(s, QConvOperands{}));
  }

  void prepare() const override {
    reserve_shared_memory(reinterpret_cast<const void*>(cutlass::device_kernel<Kernel>), Kernel::SharedStorageSize,
                          std::string("cutlass_sm90_i8:") + name_);
  }

  void launch(const ConvShape& s, const QConvOperands& o, void* workspace, cudaStream_t stream) const override {
    auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 != 0; };
    if (!o.x || !o.w || !o.y || !o.m || !o.bias || (s.has_z && !o.z) || misaligned(o.x) || misaligned(o.w) ||
        misaligned(o.y) || misaligned(o.m) || misaligned(o.bias) || (s.has_z && misaligned(o.z)))
      throw_internal(std::string("cutlass_sm90_i8:") + name_ + ": a tensor is missing or not 16-byte aligned");
    const typename Kernel::Arguments args = arguments(s, o);
    cutlass::Status st = Device::can_implement(args);
    if (st == cutlass::Status::kSuccess) st = Kernel::initialize_workspace(args, workspace, stream);
    if (st != cutlass::Status::kSuccess)
      throw_internal(std::string("cutlass_sm90_i8:") + name_ + ": " + cutlass::cutlassGetStatusString(st));
    // Params built per launch: they hold TMA descriptors of this call's
    // pointers, and the kernel object must stay unchanged (shared by contexts).
    typename Kernel::Params params = Kernel::to_underlying_arguments(args, workspace);
    st = Device::run(params, stream);
    if (st != cutlass::Status::kSuccess) {
      const cudaError_t e = cudaGetLastError();
      throw_internal(std::string("cutlass_sm90_i8:") + name_ + ": launch failed: " +
                     cutlass::cutlassGetStatusString(st) + " (" + cudaGetErrorString(e) + ")");
    }
  }

 private:
  static typename Kernel::Arguments arguments(const ConvShape& s, const QConvOperands& o) {
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
    ElementD* y = static_cast<ElementD*>(o.y);
    // Without a residual C is never loaded (QResidual's load flag); Y stands
    // in as a valid 16-byte aligned address for the C descriptor.
    const ElementC* c = s.has_z ? static_cast<const ElementC*>(o.z) : reinterpret_cast<const ElementC*>(y);
    const typename Fusion::Arguments fusion = QFusion::arguments(o, s.has_z);
    return typename Kernel::Arguments(
        problem,
        typename Kernel::MainloopArguments{static_cast<const int8_t*>(o.x), static_cast<const int8_t*>(o.w)},
        typename Kernel::EpilogueArguments{fusion, c, dc, y, dd}, cutlass::KernelHardwareInfo{});
  }

  const char* name_;
  DataType out_, z_;
};

}  // namespace kiln::cuda::cutlass_sm90
