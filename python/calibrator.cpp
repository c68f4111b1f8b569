// INT8 calibration in the Python bindings: kiln.Calibrator (subclassed in
// Python, as TensorRT's IInt8EntropyCalibrator2 is), kiln.calibrate and
// kiln.export_qdq_onnx, plus the INT8 side of kiln.Builder.
//
// GIL: calibrate() and Builder.build() drop the GIL for the C++ work (long
// stretches of convolutions between batches); every call back into Python
// (next_batch, batch_count, rewind) takes it again for just that call.
#include <nanobind/nanobind.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>
#include <nanobind/trampoline.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "bindings.h"
#include "kiln/calibrator.h"
#include "kiln/error.h"
#include "kiln/kiln.h"

namespace kiln {
namespace python {

using namespace nb::literals;

namespace {

std::string py_type_name(nb::handle h) { return nb::cast<std::string>(h.type().attr("__name__")); }

// Forwards the py_* virtuals to methods a Python subclass defines under the
// names Python users see (next_batch, batch_count, rewind).
class CalibratorTrampoline : public PyCalibrator {
 public:
#if NB_VERSION_MAJOR >= 3
  NB_TRAMPOLINE(PyCalibrator);
#else
  NB_TRAMPOLINE(PyCalibrator, 3);
#endif
  nb::object py_next_batch() override { NB_OVERRIDE_NAME("next_batch", py_next_batch); }
  int py_batch_count() const override { NB_OVERRIDE_NAME("batch_count", py_batch_count); }
  bool py_rewind() override { NB_OVERRIDE_NAME("rewind", py_rewind); }
};

// None -> "" (no file); str or os.PathLike -> the path.
std::string path_arg(nb::handle value, const char* what) {
  if (value.is_none()) return "";
  nb::object p = nb::module_::import_("os").attr("fspath")(value);
  if (!nb::isinstance<nb::str>(p))
    throw Error(ErrorCode::kUsage, std::string(what) + " must be a str path, got " + py_type_name(p));
  return nb::cast<std::string>(p);
}

}  // namespace

nb::object PyCalibrator::py_next_batch() {
  throw Error(ErrorCode::kUsage,
              "kiln.Calibrator subclasses must define next_batch(self) returning a dict {input name: numpy array} "
              "per batch and None after the last one");
}

bool PyCalibrator::next_batch(std::map<std::string, HostTensor>& inputs) {
  nb::gil_scoped_acquire gil;
  // Numbered as kiln's own batch checks number them (from 0).
  const std::string where = "calibration batch " + std::to_string(batches_) + " from Calibrator.next_batch()";
  nb::object batch = py_next_batch();
  if (batch.is_none()) return false;
  if (!nb::isinstance<nb::dict>(batch))
    throw Error(ErrorCode::kBadInput, where + " is a " + py_type_name(batch) +
                                          ": return a dict {input name: numpy array}, or None after the last batch");
  for (auto [key, value] : nb::borrow<nb::dict>(batch)) {
    if (!nb::isinstance<nb::str>(key))
      throw Error(ErrorCode::kBadInput, where + ": input names must be str, got " + py_type_name(key));
    const std::string name = nb::cast<std::string>(key);
    try {
      inputs[name] = to_host_tensor(name, value);
    } catch (const Error& e) {
      throw Error(e.code(), where + ": " + e.what());
    }
  }
  ++batches_;
  return true;
}

int PyCalibrator::batch_count() const {
  nb::gil_scoped_acquire gil;
  try {
    return py_batch_count();
  } catch (const nb::cast_error&) {
    throw Error(ErrorCode::kBadInput, "Calibrator.batch_count() must return an int (-1 if unknown)");
  }
}

bool PyCalibrator::rewind() {
  nb::gil_scoped_acquire gil;
  bool ok = false;
  try {
    ok = py_rewind();
  } catch (const nb::cast_error&) {
    throw Error(ErrorCode::kBadInput, "Calibrator.rewind() must return True (restarted) or False (cannot restart)");
  }
  if (ok) batches_ = 0;
  return ok;
}

CalibrationMethod parse_calibration_method(const std::string& method) {
  if (method == "entropy") return CalibrationMethod::kEntropy;
  if (method == "minmax") return CalibrationMethod::kMinMax;
  if (method == "percentile") return CalibrationMethod::kPercentile;
  throw Error(ErrorCode::kUsage,
              "unknown calibration method '" + method + "': use \"entropy\", \"minmax\" or \"percentile\"");
}

void set_int8_options(BuilderConfig& cfg, bool int8, PyCalibrator* calibrator, const std::string& calib_method,
                      double calib_percentile, const std::string& calib_cache,
                      std::vector<std::string> keep_float_layers, std::vector<std::string> int8_layers,
                      bool int8_guard, double int8_guard_bound) {
  cfg.int8 = int8;
  cfg.calibration.calibrator = calibrator;  // kept alive by the Builder (keep_alive in its __init__)
  cfg.calibration.method = parse_calibration_method(calib_method);
  cfg.calibration.percentile = calib_percentile;
  cfg.calibration.cache_path = calib_cache;
  cfg.keep_float_layers = std::move(keep_float_layers);
  cfg.int8_layers = std::move(int8_layers);
  cfg.int8_guard = int8_guard;
  cfg.int8_guard_bound = int8_guard_bound;
}

namespace {

int builder_traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));  // heap type instances own a reference to their type
  if (!nb::inst_ready(self)) return 0;  // __init__ has not run yet
  const BuilderConfig* c = nb::inst_ptr<BuilderConfig>(self);
  if (c->calibration.calibrator) {
    // The reference keep_alive holds on the Builder's behalf.
    nb::object cal = nb::find(static_cast<PyCalibrator*>(c->calibration.calibrator));
    Py_VISIT(cal.ptr());
  }
  return 0;
}

PyType_Slot g_builder_slots[] = {{Py_tp_traverse, reinterpret_cast<void*>(&builder_traverse)}, {0, nullptr}};

}  // namespace

const PyType_Slot* builder_type_slots() { return g_builder_slots; }

void bind_builder_int8(nb::class_<BuilderConfig>& builder) {
  builder.def_ro("int8", &BuilderConfig::int8)
      .def_prop_ro("calibrator",
                   [](const BuilderConfig& c) -> nb::object {
                     // Only kiln.Calibrator objects are ever stored from Python.
                     if (!c.calibration.calibrator) return nb::none();
                     return nb::find(static_cast<PyCalibrator*>(c.calibration.calibrator));
                   })
      .def_prop_ro("calib_method",
                   [](const BuilderConfig& c) { return std::string(calibration_method_name(c.calibration.method)); })
      .def_prop_ro("calib_percentile", [](const BuilderConfig& c) { return c.calibration.percentile; })
      .def_prop_ro("calib_cache", [](const BuilderConfig& c) { return c.calibration.cache_path; })
      .def_ro("keep_float_layers", &BuilderConfig::keep_float_layers)
      .def_ro("int8_layers", &BuilderConfig::int8_layers)
      .def_ro("int8_guard", &BuilderConfig::int8_guard)
      .def_ro("int8_guard_bound", &BuilderConfig::int8_guard_bound);
}

void bind_calibration(nb::module_& m) {
  nb::class_<PyCalibrator, CalibratorTrampoline>(
      m, "Calibrator",
      "Source of INT8 calibration batches. Subclass it, call super().__init__() in __init__, and define "
      "next_batch(); batch_count() and rewind() are optional.")
      .def(nb::init<>())
      .def("next_batch", &PyCalibrator::py_next_batch,
           "The next batch as {input name: numpy array} with every network input (the dtype and shape "
           "network.inputs gives), or None when there are no more batches.")
      .def("batch_count", &PyCalibrator::py_batch_count,
           "How many batches next_batch() gives, -1 if unknown (used for the progress bar). Default -1.")
      .def("rewind", &PyCalibrator::py_rewind,
           "Restarts the stream at its first batch and returns True, or returns False if it cannot "
           "(the default). Builder(int8_guard=True) needs a calibrator that can.");

  m.def(
      "calibrate",
      [](const PyNetwork& network, PyCalibrator* calibrator, const std::string& method, double percentile,
         nb::handle cache, bool progress) {
        CalibrationConfig cfg;
        cfg.method = parse_calibration_method(method);
        cfg.percentile = percentile;
        cfg.calibrator = calibrator;
        cfg.cache_path = path_arg(cache, "cache");
        cfg.progress = progress;
        std::map<std::string, float> scales;
        {
          nb::gil_scoped_release release;
          scales = calibrate(*network.net, cfg);
        }
        return scales;
      },
      "network"_a, nb::arg("calibrator").none() = nb::none(), "method"_a = "entropy", "percentile"_a = 99.99,
      nb::arg("cache").none() = nb::none(), "progress"_a = false,
      "INT8 calibration: runs the optimized FP32 network over the calibrator's batches and returns "
      "{tensor name: scale} (clipping threshold / 127) for every float activation, inputs included. "
      "method: \"entropy\" (TensorRT's Entropy2), \"minmax\" or \"percentile\" (of |x|, `percentile`). "
      "cache: a calibration cache file, written after a run, or read when calibrator is None. "
      "progress: a progress bar on stderr.");

  m.def(
      "export_qdq_onnx",
      [](nb::handle model_path, const std::map<std::string, float>& scales, nb::handle output_path) {
        const std::string in = path_arg(model_path, "model_path"), out = path_arg(output_path, "output_path");
        nb::gil_scoped_release release;
        export_qdq_onnx(in, scales, out);
      },
      "model_path"_a, "scales"_a, "output_path"_a,
      "Writes the ONNX model at model_path to output_path with QuantizeLinear/DequantizeLinear pairs "
      "carrying `scales` (kiln.calibrate's result): per tensor on the activations Conv/Gemm/MatMul read, "
      "per output channel on their weights.");
}

}  // namespace python
}  // namespace kiln
