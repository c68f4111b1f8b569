// CUDA kernels: one op family per file (conv_cudnn.cpp, elementwise.cu, ...).
//
// For each node the builder asks the registry for every implementation
// (tactic) that can run it, times them on the real shapes and keeps the
// fastest; the plan records the winner's name and the engine recreates it by
// that name at load. A kernel is made for one node: shapes, dtypes and layouts
// are fixed, so descriptors are built and weights uploaded once, in the
// constructor, and enqueue only launches.
//
// Values arrive in the dtype and layout the builder gave them (ir::Value::
// dtype / layout); `strides_of` turns a value into per-axis element strides so
// one generic kernel serves both layouts.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::cuda {

struct Libraries;  // cuDNN / cuBLASLt handles of one context (libraries.h)

// What enqueue gets besides the tensors.
struct Launch {
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;  // workspace_bytes() bytes, 256-byte aligned (nullptr if 0)
  Libraries* libs = nullptr;  // bound to `stream`
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual size_t workspace_bytes() const { return 0; }
  // `in` follows node.inputs, `out` node.outputs; device pointers (nullptr for
  // omitted optional ones). Constant inputs are passed too, as device copies
  // made at load; kernels that uploaded their own weights may ignore them.
  // Must only enqueue work on l.stream (no synchronization, no allocation):
  // the engine captures it into a CUDA graph. One kernel serves every context
  // of an engine, so enqueue must not mutate the kernel.
  virtual void enqueue(const std::vector<const void*>& in, const std::vector<void*>& out, const Launch& l) const = 0;
};

struct Tactic {
  std::string name;  // unique per op, stable across builds ("cudnn_fused:algo1")
  std::function<std::unique_ptr<Kernel>()> make;
};

// Lists the implementations that can run `n` as it stands (dtypes, layouts).
// Returns none if it cannot; `why` (may be null) then says what is missing.
using TacticFactory = std::function<std::vector<Tactic>(const ir::Node& n, std::string* why)>;

// What the builder may change about a node before asking for tactics.
struct OpTraits {
  // Inputs (by index) that may be FP16 when the node runs in FP16; outputs
  // follow. Empty: the op runs in FP32 only. Constant float inputs listed here
  // are converted to FP16 in the plan.
  std::vector<int> fp16_inputs;
  // The kernels accept any layout on every input (they index through
  // strides_of) and write `out_layout` outputs.
  bool any_layout = false;
  enum OutLayout { kLinearOut, kLikeInput0 } out_layout = kLinearOut;
  // Runs natively channels-last: inputs and outputs of rank 4 want kNHWC.
  bool prefers_nhwc = false;
};

class Registry {
 public:
  static Registry& global();  // built-in kernels, filled on first use
  void add(const std::string& op_type, TacticFactory f, OpTraits traits = {}, const std::string& domain = "");
  // Offers the tactics of `more` too, after those already registered for the op.
  void extend(const std::string& op_type, TacticFactory more, const std::string& domain = "");
  const OpTraits* traits(const ir::Node& n) const;  // nullptr: no CUDA kernel for this op
  // Every tactic for `n`; throws kUnsupported naming the node when there is none.
  std::vector<Tactic> tactics(const ir::Node& n) const;
  // The tactic called `name`; throws kBadInput (plan needs another kiln) if absent.
  Tactic find(const ir::Node& n, const std::string& name) const;

 private:
  struct Entry { std::string domain, op_type; TacticFactory make; OpTraits traits; };
  const Entry* entry(const ir::Node& n) const;
  std::vector<Entry> entries_;
};

// Element strides per logical axis of a value in its layout.
std::vector<int64_t> strides_of(const ir::Value& v);

// Up to 8 axes, passed to kernels by value.
constexpr int kMaxRank = 8;
struct TensorDesc {
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t strides[kMaxRank] = {};  // elements
};
// A value's dims and strides; throws kUnsupported naming `n` above kMaxRank.
TensorDesc desc_of(const ir::Node& n, const ir::Value& v);

// One registration function per op family file.
void register_conv_kernels(Registry&);
void register_conv_gemm_kernels(Registry&);  // 1x1 convolutions on cuBLASLt (extends Conv)
void register_conv_transpose_kernels(Registry&);
void register_gemm_kernels(Registry&);
void register_elementwise_kernels(Registry&);
void register_pool_kernels(Registry&);
void register_reduce_kernels(Registry&);
void register_tensor_kernels(Registry&);
void register_resize_kernels(Registry&);
void register_plugin_kernels(Registry&);

}  // namespace kiln::cuda
