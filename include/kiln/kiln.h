// kiln public API: parse an ONNX model, build an engine, serialize it to a plan,
// load the plan and run it. Shaped like TensorRT's builder/runtime split:
//
//   auto net = kiln::parse_onnx("model.onnx");            // Network
//   kiln::BuilderConfig cfg;                               // device, batch, passes
//   std::vector<uint8_t> plan = kiln::Builder(cfg).build(*net);
//   auto engine = kiln::Runtime().deserialize(plan);       // needs no ONNX file
//   auto ctx = engine->create_context();
//   auto outputs = ctx->run({{"input", tensor}});
//
// All failures a caller can cause throw kiln::Error (see error.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/error.h"
#include "kiln/types.h"

namespace kiln {

const char* version();  // "MAJOR.MINOR.PATCH"

enum class Severity { kError = 0, kWarning = 1, kInfo = 2, kVerbose = 3 };
// Receives diagnostics from parse/build/run. The default logger prints
// warnings and errors to stderr.
class Logger {
 public:
  virtual ~Logger() = default;
  virtual void log(Severity severity, const std::string& message) = 0;
};
void set_logger(Logger* logger);  // nullptr restores the default

enum class Device { kCpu, kCuda };

struct TensorInfo {
  std::string name;
  DataType dtype = DataType::kFloat32;
  std::vector<int64_t> shape;
  int batch_axis = -1;  // axis that scales with the batch, -1 if none
  // The data decides axis 0's extent (ONNX NonMaxSuppression's
  // selected_indices): shape[0] is the most it can be, and run() returns the
  // rows actually produced.
  bool dynamic_rows = false;
};

// One layer as a user sees it in `kiln inspect`.
struct LayerInfo {
  std::string name;
  std::string op_type;
  std::string path;       // "kernel", "expanded:<OpType>", "plugin"
  std::string precision;  // "fp32", ...
  std::string tactic;     // kernel chosen for this layer ("" before build)
  std::vector<TensorInfo> inputs;   // constant inputs (weights) included
  std::vector<TensorInfo> outputs;
  std::vector<std::string> fused;   // source nodes merged into this layer
  std::string fusion;               // what the merge made, e.g. "CBR" (Conv+BN+ReLU), "" if none
  bool elided = false;  // runs no kernel: its outputs are views of other tensors' memory
  // Every tactic timed for this layer at build: name and median ms (< 0: it
  // failed on this layer). Empty when there was one candidate or none timed.
  std::vector<std::pair<std::string, double>> candidates;
  // GPU FP16 builds: why this layer runs in its precision, with the timed
  // FP16 and FP32 figures ("" when no choice was made).
  std::string precision_choice;
};

struct NetworkSummary {
  std::vector<TensorInfo> inputs, outputs;
  std::vector<LayerInfo> layers;
  int64_t launches = 0;        // kernel launches per inference
  int64_t launches_before = -1, layers_before = -1;  // before graph passes (plans; -1 unknown)
  std::vector<std::string> pass_notes;               // what the passes changed ("pass: change")
  int64_t weight_bytes = 0;
  int64_t activation_bytes = 0;  // one context's arena: inputs, intermediates, outputs (shared by lifetime)
  int64_t reformats = 0;         // layers that only convert precision or layout (GPU plans)
  std::string precision_choice;  // GPU FP16 builds: layers per precision, modelled time
};

class Network;  // a parsed model (graph IR + weights)

struct ParseOptions {
  int batch = 0;  // value for a symbolic batch dimension; 0 = model's or 1
};
// Network is opaque outside the library, so its owner deletes it through destroy().
void destroy(Network* network);
struct NetworkDeleter { void operator()(Network* n) const { destroy(n); } };
using NetworkPtr = std::unique_ptr<Network, NetworkDeleter>;
NetworkPtr parse_onnx(const std::string& path, const ParseOptions& opts = {});
NetworkPtr parse_onnx_bytes(const std::string& bytes, const std::string& base_dir, const ParseOptions& opts = {});
NetworkSummary summarize(const Network& network);

// What the graph optimizer did to a network (`kiln inspect` before/after).
struct PassInfo {
  std::string name;
  int64_t nodes_before = 0, nodes_after = 0;
  std::vector<std::string> changes;  // one line per rewrite, e.g. "Conv 'c1' + BatchNormalization 'bn1' -> Conv"
};
struct OptimizationReport {
  NetworkSummary before, after;  // launches_before = before.launches
  std::vector<PassInfo> passes;
};
// Runs kiln's graph passes on a copy of `network` (the network is unchanged).
OptimizationReport optimize_report(const Network& network);

struct BuilderConfig {
  Device device = Device::kCpu;
  bool optimize = true;  // run graph passes
  // CUDA: allow FP16. A layer runs in FP16 where it has an FP16 kernel and
  // its timed FP16 tactic beats FP32 (reformats counted); layers named in
  // fp16_layers ("*" = all) run in FP16 whatever the timing, those in
  // fp32_layers stay FP32. Outputs stay in the model's dtypes.
  bool fp16 = false;
  std::vector<std::string> fp32_layers, fp16_layers;
  // CUDA: file of tactic timings to reuse and extend ("" = time everything).
  std::string timing_cache;
};

class Builder {
 public:
  explicit Builder(BuilderConfig config = {});
  // Builds an engine for `network` and returns the serialized plan.
  std::vector<uint8_t> build(const Network& network) const;
  // Re-tunes a plan for this GPU (device kCuda) from the graph and weights it
  // embeds, without the model file: tactics are timed again here.
  std::vector<uint8_t> rebuild(const std::vector<uint8_t>& plan, const std::string& origin = "<memory>") const;

 private:
  BuilderConfig config_;
};

class ExecutionContext {
 public:
  virtual ~ExecutionContext() = default;
  // Runs one inference. Every network input must be given with its exact
  // dtype and shape; returns every network output by name.
  virtual std::map<std::string, HostTensor> run(const std::map<std::string, HostTensor>& inputs) = 0;

  // GPU engines. device_address(name) is the device buffer this context keeps
  // for an input or output tensor (row-major, the dtype and shape inputs() /
  // outputs() give; nullptr on the CPU or for an unknown name). enqueue runs
  // one inference on those buffers on `stream` (a cudaStream_t; nullptr = the
  // context's own) without waiting: write inputs and read outputs on the same
  // stream. CPU engines throw kUsage.
  virtual void* device_address(const std::string& name) { (void)name; return nullptr; }
  virtual void enqueue(void* stream);
  // Replays the whole inference as one CUDA graph (default on; GPU only).
  virtual void set_cuda_graph(bool on) { (void)on; }

  // Median time of every layer that runs, over `runs` timings on the current
  // inputs, one layer at a time (GPU: each layer replayed in a CUDA graph of
  // its own, so the time is the device's, without launch overhead).
  struct LayerTime { std::string name, op_type, tactic; double ms = 0; };
  virtual std::vector<LayerTime> profile(int runs);
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const std::vector<TensorInfo>& inputs() const = 0;
  virtual const std::vector<TensorInfo>& outputs() const = 0;
  virtual NetworkSummary summary() const = 0;
  virtual std::string device() const = 0;  // target the plan was built for
  virtual std::unique_ptr<ExecutionContext> create_context() const = 0;
};

class Runtime {
 public:
  // Refuses (kBadInput) a plan with bad magic/checksum, another format
  // version or another target device, naming what differs.
  std::unique_ptr<Engine> deserialize(const std::vector<uint8_t>& plan, const std::string& origin = "<memory>") const;
  std::unique_ptr<Engine> load(const std::string& plan_path) const;
  // What a plan holds, without loading it for a device: any target's plan
  // (checksum and format still checked). `device` receives its target.
  NetworkSummary summarize(const std::vector<uint8_t>& plan, const std::string& origin = "<memory>",
                           std::string* device = nullptr) const;
};

// Writes `bytes` to `path` atomically (temp file + rename).
void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes);
std::vector<uint8_t> read_file(const std::string& path);

}  // namespace kiln
