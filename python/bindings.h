// What the kiln._kiln binding files share: the wrapped network, the numpy ->
// HostTensor conversion (kiln_module.cpp) and the INT8 calibration bindings
// (calibrator.cpp).
#pragma once

#include <nanobind/nanobind.h>

#include <map>
#include <string>
#include <vector>

#include "kiln/calibrator.h"
#include "kiln/kiln.h"
#include "kiln/types.h"

namespace kiln {
namespace python {

namespace nb = nanobind;

struct PyNetwork {
  NetworkPtr net;
};

// A numpy array (or anything numpy.ascontiguousarray takes) copied into a
// HostTensor; strided views are made contiguous first. Throws kBadInput
// naming `name` for a dtype kiln has no element type for, or a non-array.
HostTensor to_host_tensor(const std::string& name, nb::handle value);

// kiln.Calibrator: the class Python code subclasses. kiln calls the
// kiln::Calibrator methods without the GIL (calibration runs C++ for long
// stretches); each takes the GIL and calls the matching Python method
// (py_* here, overridden in Python through the trampoline in calibrator.cpp).
// Python exceptions raised there propagate out of calibrate()/build()
// unchanged.
class PyCalibrator : public Calibrator {
 public:
  // Python: next_batch() -> dict[str, numpy.ndarray] | None (None ends the stream).
  virtual nb::object py_next_batch() = 0;
  // Python: batch_count() -> int, -1 if unknown (progress bar only).
  virtual int py_batch_count() const { return -1; }
  // Python: rewind() -> bool; False: the stream cannot restart.
  virtual bool py_rewind() { return false; }

  bool next_batch(std::map<std::string, HostTensor>& inputs) final;
  int batch_count() const final;
  bool rewind() final;

 private:
  int batches_ = 0;  // batches given since the last rewind, for messages
};

// "entropy" | "minmax" | "percentile"; kUsage naming the choices otherwise.
CalibrationMethod parse_calibration_method(const std::string& method);

// Fills BuilderConfig's INT8 fields from kiln.Builder's keyword arguments.
void set_int8_options(BuilderConfig& cfg, bool int8, PyCalibrator* calibrator, const std::string& calib_method,
                      double calib_percentile, const std::string& calib_cache,
                      std::vector<std::string> keep_float_layers, std::vector<std::string> int8_layers,
                      bool int8_guard, double int8_guard_bound);

// Type slots of kiln.Builder: its tp_traverse shows the cyclic GC the
// calibrator it keeps alive, so a Builder -> calibrator -> ... -> Builder
// cycle (module globals in a script) is collected instead of leaked.
const PyType_Slot* builder_type_slots();

// Read-only INT8 attributes of kiln.Builder (int8, calib_method, ...).
void bind_builder_int8(nb::class_<BuilderConfig>& builder);

// kiln.Calibrator, kiln.calibrate, kiln.export_qdq_onnx.
void bind_calibration(nb::module_& m);

}  // namespace python
}  // namespace kiln
