// One CUTLASS 3.x sm_90a INT8 GEMM per configuration for the QConvs that are
// plain GEMMs: 1x1 kernel, stride 1, no padding, groups 1 (the
// "cutlass_sm90_i8gemm:<config>" tactics; see qconv_cutlass.h). In NHWC
//   Y[M = N*H*W, K] = X[M, C] * W[K, C]^T
// a "TN" GEMM: both operands K-major (row-major X, KRSC W with R = S = 1),
// which is also the only operand order int8 wgmma takes from shared memory.
//
// Why a GEMM next to the implicit-GEMM conv tiles: CUTLASS 4.2's sm90 conv
// builder has only the non-persistent schedule, where a CTA's epilogue
// stalls its tensor cores. The GEMM builder has persistent warp-specialized
// schedules: ping-pong (two consumer warp groups on alternate tiles, one's
// epilogue under the other's MMAs) and cooperative (both on one tile).
// Half of ResNet-50's conv time is 1x1 convolutions.
//
// Epilogue: the QConv visitor tree of qconv_epilogue.cuh, the same one the
// conv tiles run, on row-major [M, K] C (residual) and D.
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <string>
#include <type_traits>

// The include order of CUTLASS's own sm90 GEMM examples.
#include "cutlass/cutlass.h"
#include "cute/tensor.hpp"
#include "cutlass/numeric_types.h"
#include "cutlass/kernel_hardware_info.hpp"
#include "cutlass/device_kernel.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"

#include "backends/cuda/cutlass/qconv_cutlass.h"
#include "backends/cuda/cutlass/qconv_epilogue.cuh"
#include "kiln/error.h"

namespace kiln::cuda::cutlass_sm90 {

// Cooperative: both consumer warp groups split one TileM x TileN tile (TileM
// >= 128); otherwise ping-pong, each warp group owning whole tiles.
template <int TileM, int TileN, int TileK, class ElementD, class ElementC, bool Cooperative>
class Sm90QGemmTile final : public QConvTile {
  using TileShape = cute::Shape<cute::Int<TileM>, cute::Int<TileN>, cute::Int<TileK>>;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;
  // 16 bytes: TMA's minimum alignment (C and K multiples of 16 for int8).
  static constexpr int kAlignAB = 16;
  static constexpr int kAlignC = 16 / int(sizeof(ElementC));
  static constexpr int kAlignD = 16 / int(sizeof(ElementD));
  using QFusion = QConvFusion<TileShape, ElementD, ElementC>;
  using Fusion = typename QFusion::Type;
  using MainloopSchedule = std::conditional_t<Cooperative, cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                                              cutlass::gemm::KernelTmaWarpSpecializedPingpong>;
  using EpilogueSchedule = std::conditional_t<Cooperative, cutlass::epilogue::TmaWarpSpecializedCooperative,
                                              cutlass::epilogue::TmaWarpSpecialized>;

  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, int32_t /*accumulator*/, float /*compute*/,
      ElementC, cutlass::layout::RowMajor, kAlignC, ElementD, cutlass::layout::RowMajor, kAlignD,
      EpilogueSchedule, Fusion>::CollectiveOp;
  // A = X [M, C] row-major, B = W [K, C] "column-major" (K x N with the
  // reduction dimension contiguous): both K-major.
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, int8_t, cutlass::layout::RowMajor, kAlignAB, int8_t,
      cutlass::layout::ColumnMajor, kAlignAB, int32_t /*accumulator*/, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      MainloopSchedule>::CollectiveOp;
  // The default tile scheduler of these schedules is the persistent one.
  using Kernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, Mainloop, Epilogue>;
  using Device = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  static_assert(Kernel::SharedStorageSize <= (227 << 10), "the tile must fit the shared memory of one SM");

 public:
  Sm90QGemmTile(const char* name, DataType out, DataType z) : name_(name), out_(out), z_(z) {}
  const char* name() const override { return name_; }
  const char* family() const override { return "cutlass_sm90_i8gemm"; }
  DataType out_dtype() const override { return out_; }
  DataType z_dtype() const override { return z_; }

  std::string check(const ConvShape& s) const override {
    if (s.r != 1 || s.s != 1 || s.stride[0] != 1 || s.stride[1] != 1 || s.pad_lo[0] || s.pad_lo[1] ||
        s.pad_hi[0] || s.pad_hi[1] || s.p != s.h || s.q != s.w)
      return "not a 1x1 convolution with stride 1 and no padding (a plain GEMM)";
    // TMA: 16-byte row strides of X, W (C int8) and Y, Z (K elements).
    if (s.c % 16 != 0) return "input channels not a multiple of 16";
    if (s.k % 16 != 0) return "output channels not a multiple of 16";
    if (int64_t(s.n) * s.h * s.w >= INT_MAX || int64_t(s.n) * s.h * s.w * s.k >= INT_MAX)
      return "2^31 or more output elements";
    const cutlass::Status st = Device::can_implement(arguments(s, QConvOperands{}, cutlass::KernelHardwareInfo{}));
    if (st != cutlass::Status::kSuccess)
      return std::string("CUTLASS cannot implement it (") + cutlass::cutlassGetStatusString(st) + ")";
    return "";
  }

  size_t workspace_bytes(const ConvShape& s) const override {
    return Device::get_workspace_size(arguments(s, QConvOperands{}, hardware()));
  }

  void prepare() const override {
    reserve_shared_memory(reinterpret_cast<const void*>(cutlass::device_kernel<Kernel>), Kernel::SharedStorageSize,
                          std::string(family()) + ":" + name_);
  }

  void launch(const ConvShape& s, const QConvOperands& o, void* workspace, cudaStream_t stream) const override {
    auto misaligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 != 0; };
    if (!o.x || !o.w || !o.y || !o.m || !o.bias || (s.has_z && !o.z) || misaligned(o.x) || misaligned(o.w) ||
        misaligned(o.y) || misaligned(o.m) || misaligned(o.bias) || (s.has_z && misaligned(o.z)))
      throw_internal(std::string(family()) + ":" + name_ + ": a tensor is missing or not 16-byte aligned");
    const typename Kernel::Arguments args = arguments(s, o, hardware());
    cutlass::Status st = Device::can_implement(args);
    if (st == cutlass::Status::kSuccess) st = Kernel::initialize_workspace(args, workspace, stream);
    if (st != cutlass::Status::kSuccess)
      throw_internal(std::string(family()) + ":" + name_ + ": " + cutlass::cutlassGetStatusString(st));
    // Params built per launch: they hold TMA descriptors of this call's
    // pointers, and the kernel object must stay unchanged (shared by contexts).
    typename Kernel::Params params = Kernel::to_underlying_arguments(args, workspace);
    st = Device::run(params, stream);
    if (st != cutlass::Status::kSuccess) {
      const cudaError_t e = cudaGetLastError();
      throw_internal(std::string(family()) + ":" + name_ + ": launch failed: " + cutlass::cutlassGetStatusString(st) +
                     " (" + cudaGetErrorString(e) + ")");
    }
  }

 private:
  // The current device and its SM count: the persistent grid is one CTA per
  // SM. A failed query leaves 0, and CUTLASS then asks the driver itself.
  static cutlass::KernelHardwareInfo hardware() {
    cutlass::KernelHardwareInfo hw{};
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess) {
      hw.device_id = dev;
      hw.sm_count = sms;
    } else {
      cudaGetLastError();
    }
    return hw;
  }

  static typename Kernel::Arguments arguments(const ConvShape& s, const QConvOperands& o,
                                              const cutlass::KernelHardwareInfo& hw) {
    const int m = s.n * s.h * s.w;  // check() keeps it below 2^31
    const auto da = cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, cute::make_shape(m, s.c, 1));
    const auto db = cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, cute::make_shape(s.k, s.c, 1));
    const auto dc = cutlass::make_cute_packed_stride(typename Kernel::StrideC{}, cute::make_shape(m, s.k, 1));
    const auto dd = cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, cute::make_shape(m, s.k, 1));
    ElementD* y = static_cast<ElementD*>(o.y);
    // Without a residual C is never loaded (QResidual's load flag); Y stands
    // in as a valid 16-byte aligned address for the C descriptor.
    const ElementC* c = s.has_z ? static_cast<const ElementC*>(o.z) : reinterpret_cast<const ElementC*>(y);
    typename Kernel::Arguments args{
        cutlass::gemm::GemmUniversalMode::kGemm,
        {m, s.k, s.c, 1},
        {static_cast<const int8_t*>(o.x), da, static_cast<const int8_t*>(o.w), db},
        {QFusion::arguments(o, s.has_z), c, dc, y, dd},
        hw};
    return args;
  }

  const char* name_;
  DataType out_, z_;
};

}  // namespace kiln::cuda::cutlass_sm90
