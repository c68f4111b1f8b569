// Dynamic-batch ONNX models for the batch-profile tests, and a float64
// reference of the main one: x[N,3,6,6] -> Conv 3x3 (8 channels, pad 1) ->
// Relu -> GlobalAveragePool -> Flatten -> Gemm (K outputs) -> y[N,K].
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "onnx/import_test_util.h"
#include "support/op_test.h"

namespace kiln::profile_test {

constexpr int kC = 3, kH = 6, kW = 6, kF = 8;

struct ConvGemmWeights {
  int k = 0;  // Gemm outputs
  std::vector<float> w, b, g, gb;
};

inline std::vector<float> values(size_t n, uint32_t seed) {
  ir::Tensor t = test::random_tensor(DataType::kFloat32, {int64_t(n)}, seed);
  return std::vector<float>(t.data<float>(), t.data<float>() + n);
}

inline ConvGemmWeights conv_gemm_weights(int k) {
  return {k, values(size_t(kF * kC * 9), 1), values(kF, 2), values(size_t(k) * kF, 3), values(size_t(k), 4)};
}

inline std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/kiln_profile_" + std::to_string(::getpid()) + "_" + name;
}

inline void save(const onnx_test::ModelBuilder& mb, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  out << mb.m.SerializeAsString();
}

// batch < 0: symbolic "N". extra: "batchless" adds output s = ReduceMean(y,
// axes 0); "second_input" adds input z[N,8] to the pooled features.
inline onnx_test::ModelBuilder conv_gemm_model(const ConvGemmWeights& wt, int batch = -1,
                                               const std::string& extra = "") {
  using onnx::TensorProto;
  onnx_test::ModelBuilder mb(17);
  mb.input("x", TensorProto::FLOAT, {batch, kC, kH, kW}, {"N"});
  *mb.g->add_initializer() = onnx_test::float_tensor("W", {kF, kC, 3, 3}, wt.w);
  *mb.g->add_initializer() = onnx_test::float_tensor("B", {kF}, wt.b);
  *mb.g->add_initializer() = onnx_test::float_tensor("G", {wt.k, kF}, wt.g);
  *mb.g->add_initializer() = onnx_test::float_tensor("GB", {wt.k}, wt.gb);
  onnx_test::attr_ints(mb.node("Conv", {"x", "W", "B"}, {"c"}, "conv"), "pads", {1, 1, 1, 1});
  mb.node("Relu", {"c"}, {"r"}, "relu");
  mb.node("GlobalAveragePool", {"r"}, {"p"}, "pool");
  mb.node("Flatten", {"p"}, {"f"}, "flatten");
  std::string feat = "f";
  if (extra == "second_input") {
    mb.input("z", TensorProto::FLOAT, {batch, kF}, {"N"});
    mb.node("Add", {"f", "z"}, {"fz"}, "add");
    feat = "fz";
  }
  onnx_test::attr_int(mb.node("Gemm", {feat, "G", "GB"}, {"y"}, "gemm"), "transB", 1);
  mb.output("y");
  if (extra == "batchless") {
    auto* n = mb.node("ReduceMean", {"y"}, {"s"}, "mean_over_batch");
    onnx_test::attr_ints(n, "axes", {0});
    onnx_test::attr_int(n, "keepdims", 0);
    mb.output("s");
  }
  return mb;
}

// float64 reference of y for x [n,3,6,6] (and z [n,8] when given).
inline std::vector<double> conv_gemm_reference(const ConvGemmWeights& wt, const std::vector<float>& x, int n,
                                               const std::vector<float>* z = nullptr) {
  std::vector<double> y(size_t(n) * size_t(wt.k));
  for (int b = 0; b < n; ++b) {
    double feat[kF];
    for (int f = 0; f < kF; ++f) {
      double sum = 0;
      for (int i = 0; i < kH; ++i)
        for (int j = 0; j < kW; ++j) {
          double acc = wt.b[size_t(f)];
          for (int c = 0; c < kC; ++c)
            for (int di = -1; di <= 1; ++di)
              for (int dj = -1; dj <= 1; ++dj) {
                const int ii = i + di, jj = j + dj;
                if (ii < 0 || ii >= kH || jj < 0 || jj >= kW) continue;
                acc += double(wt.w[size_t(((f * kC + c) * 3 + di + 1) * 3 + dj + 1)]) *
                       double(x[size_t(((b * kC + c) * kH + ii) * kW + jj)]);
              }
          sum += acc > 0 ? acc : 0;
        }
      feat[f] = sum / (kH * kW) + (z ? double((*z)[size_t(b * kF + f)]) : 0.0);
    }
    for (int k = 0; k < wt.k; ++k) {
      double acc = wt.gb[size_t(k)];
      for (int f = 0; f < kF; ++f) acc += double(wt.g[size_t(k) * kF + size_t(f)]) * feat[f];
      y[size_t(b) * size_t(wt.k) + size_t(k)] = acc;
    }
  }
  return y;
}

inline HostTensor host_floats(std::vector<int64_t> shape, const std::vector<float>& v) {
  HostTensor t = HostTensor::zeros(DataType::kFloat32, std::move(shape));
  std::copy(v.begin(), v.end(), t.as<float>());
  return t;
}

}  // namespace kiln::profile_test
