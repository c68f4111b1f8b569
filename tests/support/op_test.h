// Test support: run one op through shape inference and its CPU kernel, and
// compare tensors. Kernel tests compare against an independent reference
// (float64 loops in the test, or data from the ONNX conformance suite).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/error.h"

namespace kiln::test {

struct OpInput {
  std::optional<ir::Tensor> tensor;  // nullopt = omitted optional input
  bool constant = false;             // constant inputs are visible to shape inference
};
inline OpInput in(ir::Tensor t) { return {std::move(t), false}; }
inline OpInput cin(ir::Tensor t) { return {std::move(t), true}; }
inline OpInput none() { return {std::nullopt, false}; }

ir::Attribute attr_i(int64_t v);
ir::Attribute attr_f(float v);
ir::Attribute attr_s(const std::string& v);
ir::Attribute attr_ints(std::vector<int64_t> v);
ir::Attribute attr_floats(std::vector<float> v);

// Builds a one-node graph, infers shapes, creates the CPU kernel and runs it.
// Returns the outputs; `tactic` (if given) receives the kernel's tactic name.
std::vector<ir::Tensor> run_op(const std::string& op_type, const std::vector<OpInput>& inputs,
                               const std::map<std::string, ir::Attribute>& attrs = {}, int num_outputs = 1,
                               std::string* tactic = nullptr);

// A tensor holding `values` (row-major) converted to `dtype`.
ir::Tensor tensor_of(DataType dtype, ir::Dims dims, const std::vector<double>& values);

// Uniform random values in [lo, hi) (ints are truncated), deterministic in `seed`.
ir::Tensor random_tensor(DataType dtype, ir::Dims dims, uint32_t seed, double lo = -1.0, double hi = 1.0);

// Row-major multi-index <-> flat index, independent of the kernels' stride code.
std::vector<int64_t> unravel(int64_t flat, const ir::Dims& dims);
int64_t ravel(const std::vector<int64_t>& idx, const ir::Dims& dims);

// The code of the kiln::Error `f` throws; kInternal if it throws none.
ErrorCode code_of(const std::function<void()>& f);

// tests/models/seed_cbr_ssd.onnx (under $KILN_SOURCE_DIR when set).
std::string seed_model_path();

// The example plugin library: $KILN_EXAMPLE_PLUGIN if set (tests run from a
// copied build), else the path the build wrote it to.
std::string example_plugin_path();

// max |a-b| / max(1, |b|) over all elements; +inf if shapes or dtypes differ.
double max_rel_error(const ir::Tensor& a, const ir::Tensor& b);

}  // namespace kiln::test
