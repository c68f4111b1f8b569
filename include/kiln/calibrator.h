// kiln public API: INT8 post-training calibration.
//
// A Calibrator streams representative input batches. calibrate() runs the
// optimized FP32 graph over them, keeps per-tensor statistics and turns them
// into INT8 scales (threshold / 127) for every float activation the built
// graph holds; BuilderConfig::int8 builds with those scales. The scales can
// be kept in a calibration cache (TensorRT's text format) and reused without
// data.
#pragma once

#include <map>
#include <string>

#include "kiln/types.h"

namespace kiln {

class Network;

class Calibrator {
 public:
  virtual ~Calibrator() = default;
  // Fills `inputs` with the next batch (every network input, with the dtype
  // and shape the network declares); returns false when the stream is done.
  virtual bool next_batch(std::map<std::string, HostTensor>& inputs) = 0;
  // Batches the stream will give, -1 if unknown (for the progress bar).
  virtual int batch_count() const { return -1; }
  // Restarts the stream at its first batch; false if it cannot (the INT8
  // sensitivity guard re-reads the batches and needs this).
  virtual bool rewind() { return false; }
};

enum class CalibrationMethod {
  kEntropy,     // TensorRT's Entropy2: smallest KL divergence over 2048 bins of |x|
  kMinMax,      // max |x| seen
  kPercentile,  // the percentile of |x| given by CalibrationConfig::percentile
};
const char* calibration_method_name(CalibrationMethod m);  // "entropy", "minmax", "percentile"

struct CalibrationConfig {
  CalibrationMethod method = CalibrationMethod::kEntropy;
  double percentile = 99.99;  // kPercentile only, in (0, 100]
  // Batch source. Null: the scales come from cache_path, which must exist
  // and match the network's tensors.
  Calibrator* calibrator = nullptr;
  // Calibration cache: read when there is no calibrator, written (atomically)
  // after a calibration run. "" = none.
  std::string cache_path;
  bool progress = false;  // progress bar on stderr while batches run
};

// Tensor name -> INT8 scale (finite, > 0) for every float activation of the
// network after graph optimization, network inputs included. Deterministic:
// the same network and batches give the same scales whatever the thread
// count. Throws kUsage when neither a calibrator nor a cache is given or the
// calibrator gives no batch, kBadInput for a batch with a missing input or
// the wrong dtype/shape, and for a cache that does not match the network
// (naming the tensors that differ).
std::map<std::string, float> calibrate(const Network& network, const CalibrationConfig& config);

// Writes `model_path`'s ONNX model to `output_path` with
// QuantizeLinear/DequantizeLinear pairs carrying `scales`: per tensor on the
// activations Conv/Gemm/MatMul read, per output channel on their weights.
// onnxruntime runs the result; kiln imports it as explicit quantization.
void export_qdq_onnx(const std::string& model_path, const std::map<std::string, float>& scales,
                     const std::string& output_path);

}  // namespace kiln
