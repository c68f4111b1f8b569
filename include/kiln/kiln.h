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

#include "kiln/calibrator.h"
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

// Dynamic batch, as TensorRT's optimization profiles give it: a plan built
// with Builder::build_profile runs any batch in [min, max]. kiln's graphs have
// a fixed batch, so such a plan holds one specialization per batch in
// profile_batches() (each tuned at its batch, constants stored once) and a run
// with batch b uses the smallest specialization >= b: extra rows are
// zero-filled and cut from the outputs, so the model's batch rows must be
// independent (as inference models' are). {0, 0, 0}: a single-batch plan.
struct BatchProfile {
  int min = 0, opt = 0, max = 0;
};
// The batches a profile plan specializes: min, opt, max and every power of two
// strictly between min and max, ascending (1/4/8 -> 1,2,4,8; 3/6/20 ->
// 3,4,6,8,16,20). opt is one of them, so it runs at full speed.
std::vector<int> profile_batches(const BatchProfile& profile);

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
  // INT8 layers: the scales they quantize with ("x 0.0123, y 0.0456, w 64
  // per-channel 0.0011..0.0042"; "scale 0.0123" for a quantize layer).
  std::string int8_scales;
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
  std::string int8;              // INT8 builds: layers quantized and where the scales came from
  // Profile plans: the profile ({0,0,0} otherwise); the rest of the summary
  // describes the max-batch specialization, weight_bytes the constants all
  // specializations share (stored once).
  BatchProfile profile;
};

class Network;  // a parsed model (graph IR + weights)

struct ParseOptions {
  int batch = 0;  // value for a symbolic batch dimension; 0 = model's or 1
  // Full shapes for inputs with symbolic dimensions (trtexec's --shapes):
  // their symbolic axes take these values (axis 0: `batch` first when set);
  // the static axes must agree. kBadInput for an unknown input name, another
  // rank or a disagreeing static axis.
  std::map<std::string, std::vector<int64_t>> input_shapes;
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
  // fp32_layers stay FP32. Outputs stay in the model's dtypes, and layers
  // whose outputs a plugin reads stay FP32 unless named in fp16_layers (an
  // NMS fed FP16 scores sees the top ones tie at 1.0).
  bool fp16 = false;
  std::vector<std::string> fp32_layers, fp16_layers;
  // CUDA: file of tactic timings to reuse and extend ("" = time everything).
  std::string timing_cache;
  // INT8: Conv layers whose input and output have a scale run in INT8 with
  // per-output-channel weight scales; the scales come from `calibration`
  // (calibrate() is run by build) or, for a model carrying
  // QuantizeLinear/DequantizeLinear pairs, from the model itself. Layers named
  // in keep_float_layers stay in FP32/FP16. On the GPU a layer runs INT8 only
  // where its timed INT8 tactic wins, unless named in int8_layers ("*" = all
  // with scales), which run INT8 whatever the timing.
  bool int8 = false;
  CalibrationConfig calibration;
  std::vector<std::string> keep_float_layers, int8_layers;
  // INT8 sensitivity guard: after quantizing, layers whose INT8 output error
  // against FP32 on the calibration batches is worst return to float, one at
  // a time, until the network outputs' relative error is at most
  // int8_guard_bound. Needs a calibrator.
  bool int8_guard = false;
  double int8_guard_bound = 0.02;
};

class Builder {
 public:
  explicit Builder(BuilderConfig config = {});
  // Builds an engine for `network` and returns the serialized plan.
  std::vector<uint8_t> build(const Network& network) const;
  // Re-tunes a plan for this GPU (device kCuda) from the graph and weights it
  // embeds, without the model file: tactics are timed again here.
  std::vector<uint8_t> rebuild(const std::vector<uint8_t>& plan, const std::string& origin = "<memory>") const;
  // Builds one plan that runs any batch in [profile.min, profile.max] (see
  // BatchProfile): the model is parsed at each batch of profile_batches() and
  // built with this config (GPU: tactics timed per batch). Needs a model with
  // a symbolic leading batch dimension (kUsage otherwise) whose every output
  // has a batch axis and no data-dependent row count (kUnsupported naming the
  // output otherwise); opts.batch must be 0. INT8: calibration runs once, at
  // the opt batch (config.calibration's batches must have that batch), and
  // every specialization uses its scales and the layers the guard kept float.
  std::vector<uint8_t> build_profile(const std::string& model_path, const ParseOptions& opts,
                                     const BatchProfile& profile) const;

 private:
  BuilderConfig config_;
};

class ExecutionContext {
 public:
  virtual ~ExecutionContext() = default;
  // Runs one inference. Every network input must be given with its exact
  // dtype and shape; returns every network output by name. Profile engines
  // (Engine::profile()) take any batch b in [min, max] along each input's
  // batch axis (the same b for all; other axes exact) and return outputs of
  // b rows.
  virtual std::map<std::string, HostTensor> run(const std::map<std::string, HostTensor>& inputs) = 0;

  // GPU engines. device_address(name) is the device buffer this context keeps
  // for an input or output tensor (row-major, the dtype and shape inputs() /
  // outputs() give; nullptr on the CPU or for an unknown name). enqueue runs
  // one inference on those buffers on `stream` (a cudaStream_t; nullptr = the
  // context's own) without waiting: write inputs and read outputs on the same
  // stream. CPU engines throw kUsage.
  virtual void* device_address(const std::string& name) { (void)name; return nullptr; }
  virtual void enqueue(void* stream);
  // Profile engines (like TensorRT's setInputShape): picks the batch b in
  // [min, max] that device_address() and enqueue() serve; until called, the
  // max. Returns B, the batch of the specialization that runs it (the
  // smallest >= b): the buffers then have B rows along each tensor's batch
  // axis, rows [0, b) are the caller's and rows [b, B) run too but touch no
  // other row, so their outputs are to be ignored. kBadInput outside
  // [min, max]; kUsage on an engine without a batch profile.
  virtual int64_t set_batch(int64_t b);
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
  // Profile plans: the batches run() accepts; inputs() / outputs() then give
  // the max-batch shapes with batch_axis set, and a context's device_address /
  // enqueue serve the batch of its set_batch (max until then). {0,0,0} for
  // single-batch plans.
  virtual BatchProfile profile() const { return {}; }
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
