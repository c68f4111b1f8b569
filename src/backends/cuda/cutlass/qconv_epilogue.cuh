// The QConv epilogue visitor tree shared by the CUTLASS sm_90a INT8 kernels:
// the implicit-GEMM convolutions (qconv_sm90_kernel.cuh) and the plain GEMMs
// of 1x1 convolutions (qconv_gemm_kernel.cuh). One definition keeps the two
// kernel families bit-identical on the same accumulators.
//
// In float, per output element of column (output channel) k:
//   Inner  = acc * m[k] + bias[k]            (m, bias: per-column broadcasts)
//   WithZ  = Inner + QResidual               (z_scale * float(Z) loaded by TMA
//                                             in Z's own dtype; nothing loaded
//                                             and 0 without a residual)
//   D      = finish(WithZ)                   (activation, then for int8 D the
//                                             requantization, exact in float)
//
// Include after the mainloop's CUTLASS headers (cutlass/conv/... or
// cutlass/gemm/...): CUTLASS headers are not all self-contained and this is
// the order its own sm90 tests use.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cutlass/cutlass.h"
#include "cute/tensor.hpp"
#include "cutlass/numeric_types.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp"
#include "cutlass/numeric_conversion.h"

#include "backends/cuda/cutlass/qconv_cutlass.h"

namespace kiln::cuda::cutlass_sm90 {

// The last epilogue node: activation, then (int8 outputs) the requantization
// saturate_int8(round_half_even(v * inv_scale)) with NaN -> 0, leaving an
// integral float the int8 conversion takes exactly.
template <class T> struct QConvFinish {
  struct Arguments {
    int act = kQActNone;
    float a = 0.f, b = 0.f;
    float inv_scale = 1.f;
    int quantize = 0;
  };
  CUTLASS_HOST_DEVICE static float apply(float v, Arguments const& p) {
    if (p.act == kQActRelu) v = v > 0.f ? v : 0.f;
    else if (p.act == kQActLeaky) v = v < 0.f ? v * p.a : v;
    else if (p.act == kQActClip) v = fminf(fmaxf(v, p.a), p.b);
    if (p.quantize) {
      v = v * p.inv_scale;
      v = v != v ? 0.f : fminf(fmaxf(rintf(v), -128.f), 127.f);
    }
    return v;
  }
  CUTLASS_HOST_DEVICE T operator()(T const& v, Arguments const& p) const { return T(apply(float(v), p)); }
};

template <class T, int N> struct QConvFinish<cutlass::Array<T, N>> {
  using Arguments = typename QConvFinish<T>::Arguments;
  CUTLASS_HOST_DEVICE cutlass::Array<T, N> operator()(cutlass::Array<T, N> const& v, Arguments const& p) const {
    cutlass::Array<T, N> out;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) out[i] = T(QConvFinish<T>::apply(float(v[i]), p));
    return out;
  }
};

// The residual term z_scale * float(Z) of an EVT. Unlike Sm90SrcFetch,
// whether C (= Z) is loaded at all is a runtime argument: without a
// residual the producer issues no C loads and this returns zeros (reading C
// anyway would cost a full output's bytes and turn 0 * NaN garbage into NaN).
template <class ElementC> struct QResidual {
  struct SharedStorage {};
  struct Arguments {
    float scale = 0.f;
    int load = 0;
  };
  using Params = Arguments;

  template <class ProblemShape>
  static constexpr Params to_underlying_arguments(ProblemShape const&, Arguments const& a, void*) {
    return a;
  }
  template <class ProblemShape> static bool can_implement(ProblemShape const&, Arguments const&) { return true; }
  template <class ProblemShape> static size_t get_workspace_size(ProblemShape const&, Arguments const&) { return 0; }
  template <class ProblemShape>
  static cutlass::Status initialize_workspace(ProblemShape const&, Arguments const&, void*, cudaStream_t,
                                              cutlass::CudaHostAdapter* = nullptr) {
    return cutlass::Status::kSuccess;
  }

  CUTLASS_HOST_DEVICE QResidual() {}
  CUTLASS_HOST_DEVICE QResidual(Params const& p, SharedStorage const&) : params(p) {}
  Params params;

  CUTLASS_DEVICE bool is_producer_load_needed() const { return params.load != 0; }
  CUTLASS_DEVICE bool is_C_load_needed() const { return params.load != 0; }

  template <class... Args>
  CUTLASS_DEVICE auto get_producer_load_callbacks(cutlass::epilogue::fusion::ProducerLoadArgs<Args...> const&) {
    return cutlass::epilogue::fusion::EmptyProducerLoadCallbacks{};
  }

  template <class SrcTensor>
  struct ConsumerStoreCallbacks : cutlass::epilogue::fusion::EmptyConsumerStoreCallbacks {
    CUTLASS_DEVICE ConsumerStoreCallbacks(SrcTensor const& c, Params const& p) : tCrC(c), params(p) {}
    SrcTensor const& tCrC;  // (CPY, CPY_M, CPY_N): C registers, in C's or the compute type
    Params params;

    template <class ElementAccumulator, int FragmentSize>
    CUTLASS_DEVICE cutlass::Array<float, FragmentSize> visit(cutlass::Array<ElementAccumulator, FragmentSize> const&,
                                                             int epi_v, int, int) {
      using Reg = typename SrcTensor::value_type;
      cutlass::Array<float, FragmentSize> out;
      if (!params.load) {
        out.fill(0.f);  // the C registers were never written
        return out;
      }
      const cutlass::Array<Reg, FragmentSize> c = cute::recast<cutlass::Array<Reg, FragmentSize>>(tCrC)(epi_v);
      cutlass::NumericArrayConverter<float, Reg, FragmentSize> to_float;
      out = to_float(c);
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < FragmentSize; ++i) out[i] *= params.scale;
      return out;
    }
  };

  template <bool ReferenceSrc, class... Args>
  CUTLASS_DEVICE auto get_consumer_store_callbacks(cutlass::epilogue::fusion::ConsumerStoreArgs<Args...> const& args) {
    return ConsumerStoreCallbacks<cute::remove_cvref_t<decltype(args.tCrC)>>(args.tCrC, params);
  }
};

// The whole tree for a CTA tile TileShape (M x N x K), output ElementD,
// residual ElementC. Columns are output channels in both kernel families
// (conv: ((q, p, n), k); GEMM: (pixel, k)), so m and bias broadcast along
// the column mode with stride (0, 1, L).
template <class TileShape, class ElementD, class ElementC> struct QConvFusion {
  static constexpr auto kRound = cutlass::FloatRoundStyle::round_to_nearest;
  template <class... T> using EVT = cutlass::epilogue::fusion::Sm90EVT<T...>;
  template <template <class> class Fn, class Out>
  using Compute = cutlass::epilogue::fusion::Sm90Compute<Fn, Out, float, kRound>;
  // Per-output-channel vectors of floats, 16-byte loads (K % 4 == 0).
  using Column = cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, float, float,
                                                              cute::Stride<cute::_0, cute::_1, int64_t>, 4>;
  using Inner = EVT<Compute<cutlass::homogeneous_multiply_add, float>, cutlass::epilogue::fusion::Sm90AccFetch,
                    Column, Column>;
  using WithZ = EVT<Compute<cutlass::plus, float>, Inner, QResidual<ElementC>>;
  using Type = EVT<Compute<QConvFinish, ElementD>, WithZ>;

  // The tree's runtime arguments for operands `o`; has_z says whether C
  // holds a residual to load.
  static typename Type::Arguments arguments(const QConvOperands& o, bool has_z) {
    return typename Type::Arguments{
        {                                 // inner + z_scale * C
         {                                // acc * m + bias
          {},                             // acc
          {o.m, 0.f, {}},                 // m
          {o.bias, 0.f, {}},              // bias
          {}},
         {has_z ? o.z_scale : 0.f, has_z ? 1 : 0},  // z_scale * C
         {}},
        {o.act, o.act_a, o.act_b, o.inv_y_scale, std::is_same_v<ElementD, int8_t> ? 1 : 0}};
  }
};

}  // namespace kiln::cuda::cutlass_sm90
