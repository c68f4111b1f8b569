// kiln._kiln: Python bindings over kiln's public API (include/kiln/*.h).
//
// Tensors cross the boundary as numpy arrays and are copied: inputs into
// HostTensors, outputs into arrays that own the HostTensor bytes (moved, not
// copied again). kiln::Error becomes a Python exception whose class follows
// the error code, so callers can catch ValueError / NotImplementedError /
// RuntimeError as well as kiln.Error. Build and run drop the GIL.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bindings.h"
#include "kiln/error.h"
#include "kiln/kiln.h"
#include "kiln/plugin.h"
#include "kiln/types.h"

#ifdef KILN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace nb = nanobind;
using namespace nb::literals;

namespace kiln {
namespace python {
namespace {

// ---- errors ----------------------------------------------------------------------

// Created once at import; live as long as the interpreter (module attributes
// hold a reference too).
PyObject* g_error = nullptr;
PyObject* g_bad_input = nullptr;
PyObject* g_unsupported = nullptr;
PyObject* g_usage = nullptr;
PyObject* g_internal = nullptr;

PyObject* make_exception(nb::module_& m, const char* name, PyObject* python_base, const char* doc) {
  // Two bases: kiln.Error for "anything kiln refused", and the builtin class
  // a Python caller would expect for this kind of failure.
  PyObject* bases = python_base ? PyTuple_Pack(2, g_error, python_base) : PyTuple_Pack(1, PyExc_Exception);
  if (!bases) throw nb::python_error();
  std::string qualified = std::string("kiln.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases, nullptr);
  Py_DECREF(bases);
  if (!cls) throw nb::python_error();
  m.attr(name) = nb::handle(cls);
  return cls;
}

void raise_kiln_error(const Error& e) {
  PyObject* cls = g_internal;
  const char* code = "internal";
  switch (e.code()) {
    case ErrorCode::kBadInput: cls = g_bad_input; code = "bad_input"; break;
    case ErrorCode::kUnsupported: cls = g_unsupported; code = "unsupported"; break;
    case ErrorCode::kUsage: cls = g_usage; code = "usage"; break;
    case ErrorCode::kInternal: cls = g_internal; code = "internal"; break;
  }
  // Messages may quote file names that are not valid UTF-8.
  const char* what = e.what();
  PyObject* msg = PyUnicode_DecodeUTF8(what, Py_ssize_t(std::strlen(what)), "replace");
  if (!msg) return;  // leaves the decoding error set
  PyObject* inst = PyObject_CallOneArg(cls, msg);
  Py_DECREF(msg);
  if (!inst) return;
  PyObject* code_str = PyUnicode_FromString(code);
  if (code_str) {
    PyObject_SetAttrString(inst, "code", code_str);
    Py_DECREF(code_str);
  }
  PyErr_SetObject(cls, inst);
  Py_DECREF(inst);
}

// ---- dtypes ----------------------------------------------------------------------

const char* numpy_name(DataType t) {
  switch (t) {
    case DataType::kFloat32: return "float32";
    case DataType::kFloat16: return "float16";
    case DataType::kInt8: return "int8";
    case DataType::kUInt8: return "uint8";
    case DataType::kInt32: return "int32";
    case DataType::kInt64: return "int64";
    case DataType::kBool: return "bool";
  }
  return "float32";
}

nb::object numpy_dtype(DataType t) { return nb::module_::import_("numpy").attr("dtype")(numpy_name(t)); }

nb::dlpack::dtype dlpack_dtype(DataType t) {
  using nb::dlpack::dtype_code;
  switch (t) {
    case DataType::kFloat32: return {uint8_t(dtype_code::Float), 32, 1};
    case DataType::kFloat16: return {uint8_t(dtype_code::Float), 16, 1};
    case DataType::kInt8: return {uint8_t(dtype_code::Int), 8, 1};
    case DataType::kUInt8: return {uint8_t(dtype_code::UInt), 8, 1};
    case DataType::kInt32: return {uint8_t(dtype_code::Int), 32, 1};
    case DataType::kInt64: return {uint8_t(dtype_code::Int), 64, 1};
    case DataType::kBool: return {uint8_t(dtype_code::Bool), 8, 1};
  }
  return {uint8_t(dtype_code::Float), 32, 1};
}

// false when kiln has no element type for this array's dtype (float64, ...).
bool kiln_dtype(const nb::dlpack::dtype& d, DataType* out) {
  using nb::dlpack::dtype_code;
  if (d.lanes != 1) return false;
  const auto code = dtype_code(d.code);
  if (code == dtype_code::Float && d.bits == 32) *out = DataType::kFloat32;
  else if (code == dtype_code::Float && d.bits == 16) *out = DataType::kFloat16;
  else if (code == dtype_code::Int && d.bits == 8) *out = DataType::kInt8;
  else if (code == dtype_code::UInt && d.bits == 8) *out = DataType::kUInt8;
  else if (code == dtype_code::Int && d.bits == 32) *out = DataType::kInt32;
  else if (code == dtype_code::Int && d.bits == 64) *out = DataType::kInt64;
  else if (code == dtype_code::Bool && d.bits == 8) *out = DataType::kBool;
  else return false;
  return true;
}

nb::tuple shape_tuple(const std::vector<int64_t>& shape) {
  nb::list l;
  for (int64_t d : shape) l.append(d);
  return nb::tuple(l);
}

// ---- tensors in and out ----------------------------------------------------------

using HostArray = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;

}  // namespace

HostTensor to_host_tensor(const std::string& name, nb::handle value) {
  // ascontiguousarray accepts lists and strided views and keeps the dtype,
  // so dtype and shape mistakes are reported by the engine, which names the
  // expected type.
  nb::object arr_obj = nb::module_::import_("numpy").attr("ascontiguousarray")(value);
  HostArray arr;
  if (!nb::try_cast(arr_obj, arr))
    throw Error(ErrorCode::kBadInput, "input '" + name + "': expected a numpy array, got " +
                                          nb::cast<std::string>(value.type().attr("__name__")));
  HostTensor t;
  if (!kiln_dtype(arr.dtype(), &t.dtype))
    throw Error(ErrorCode::kBadInput, "input '" + name + "': numpy dtype " +
                                          nb::cast<std::string>(arr_obj.attr("dtype").attr("name")) +
                                          " has no kiln element type; convert it with .astype(...) to the "
                                          "dtype engine.inputs gives");
  for (size_t i = 0; i < arr.ndim(); ++i) t.shape.push_back(int64_t(arr.shape(i)));
  t.data.resize(arr.nbytes());
  if (arr.nbytes()) std::memcpy(t.data.data(), arr.data(), arr.nbytes());
  return t;
}

namespace {

nb::object to_numpy(HostTensor&& t) {
  // The array owns the tensor's bytes through a capsule: no second copy.
  auto* bytes = new std::vector<uint8_t>(std::move(t.data));
  if (bytes->empty()) bytes->reserve(1);  // a non-null data pointer for empty outputs
  nb::capsule owner(bytes, [](void* p) noexcept { delete static_cast<std::vector<uint8_t>*>(p); });
  std::vector<size_t> shape(t.shape.begin(), t.shape.end());
  nb::ndarray<nb::numpy> arr(bytes->data(), shape.size(), shape.data(), owner, nullptr, dlpack_dtype(t.dtype));
  return arr.cast();
}

// ---- wrapped objects -------------------------------------------------------------

struct PyEngine {
  std::shared_ptr<Engine> engine;
};

// A context is used by one thread at a time; the lock keeps two Python
// threads (the GIL is released while running) off the same context.
struct PyContext {
  std::shared_ptr<Engine> engine;  // the context reads the engine's weights
  std::unique_ptr<ExecutionContext> ctx;
  std::mutex lock;
  int64_t rows = 0;  // profile engines: the batch set_batch's buffers hold (0: the max)
};

Device parse_device(const std::string& device) {
  if (device == "cpu") return Device::kCpu;
  if (device == "cuda" || device == "gpu") return Device::kCuda;
  throw Error(ErrorCode::kUsage, "unknown device '" + device + "': use \"cpu\" or \"cuda\"");
}

std::vector<uint8_t> bytes_vec(const nb::bytes& b) {
  const auto* p = reinterpret_cast<const uint8_t*>(b.c_str());
  return std::vector<uint8_t>(p, p + b.size());
}

nb::bytes to_bytes(const std::vector<uint8_t>& v) {
  return nb::bytes(reinterpret_cast<const char*>(v.data()), v.size());
}

// The GPU that holds `ptr` (kiln runs on the current device; 0 when unknown).
int device_of(const void* ptr) {
#ifdef KILN_WITH_CUDA
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, ptr) == cudaSuccess) return attr.device;
  cudaGetLastError();  // clear the sticky-free error this query may leave
#endif
  (void)ptr;
  return 0;
}

// A DLPack view of a context's device buffer; the Python context object is
// its owner, so the buffer lives as long as the view.
nb::ndarray<nb::array_api> device_view(nb::handle self, const std::string& name) {
  PyContext& c = nb::cast<PyContext&>(self);
  const TensorInfo* info = nullptr;
  for (auto* list : {&c.engine->inputs(), &c.engine->outputs()})
    for (const TensorInfo& t : *list)
      if (t.name == name) info = &t;
  if (!info) throw Error(ErrorCode::kBadInput, "no engine input or output is named '" + name + "'");
  void* ptr = c.ctx->device_address(name);
  if (!ptr)
    throw Error(ErrorCode::kUsage, "tensor '" + name + "' has no device buffer: device_tensor needs a GPU engine");
  std::vector<size_t> shape(info->shape.begin(), info->shape.end());
  if (c.rows > 0 && info->batch_axis >= 0) shape[size_t(info->batch_axis)] = size_t(c.rows);
  return nb::ndarray<nb::array_api>(ptr, shape.size(), shape.data(), self, nullptr, dlpack_dtype(info->dtype),
                       nb::device::cuda::value, device_of(ptr));
}

std::string tensor_repr(const TensorInfo& t) {
  std::string s = "TensorInfo(name='" + t.name + "', dtype=" + numpy_name(t.dtype) + ", shape=(";
  for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  if (t.shape.size() == 1) s += ",";
  s += ")";
  if (t.dynamic_rows) s += ", dynamic_rows=True";
  return s + ")";
}

}  // namespace

void bind(nb::module_& m) {
  m.doc() = "kiln: parse ONNX models, build engines, serialize plans and run them";

  g_error = make_exception(m, "Error", nullptr, "Base class of every error kiln reports.");
  g_bad_input = make_exception(m, "BadInputError", PyExc_ValueError,
                               "Corrupt or inconsistent model, plan, tensor or file.");
  g_unsupported = make_exception(m, "UnsupportedError", PyExc_NotImplementedError,
                                 "Valid input that kiln cannot handle (op, dtype, attribute).");
  g_usage = make_exception(m, "UsageError", PyExc_RuntimeError, "Wrong arguments or API misuse.");
  g_internal = make_exception(m, "InternalError", PyExc_RuntimeError, "A bug in kiln; please report it.");
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      raise_kiln_error(e);
    }
  });

  m.def("version", [] { return std::string(version()); }, "kiln's version, \"MAJOR.MINOR.PATCH\".");

  nb::class_<TensorInfo>(m, "TensorInfo", "Name, dtype and shape of an engine input or output.")
      .def_ro("name", &TensorInfo::name)
      .def_prop_ro("dtype", [](const TensorInfo& t) { return numpy_dtype(t.dtype); }, "numpy dtype")
      .def_prop_ro("shape", [](const TensorInfo& t) { return shape_tuple(t.shape); })
      .def_ro("batch_axis", &TensorInfo::batch_axis, "axis that scales with the batch, -1 if none")
      .def_ro("dynamic_rows", &TensorInfo::dynamic_rows,
              "axis 0 is data-dependent: shape[0] is its maximum, run() returns the rows produced")
      .def("__repr__", &tensor_repr);

  nb::class_<LayerInfo>(m, "LayerInfo", "One layer of a network or engine.")
      .def_ro("name", &LayerInfo::name)
      .def_ro("op_type", &LayerInfo::op_type)
      .def_ro("path", &LayerInfo::path)
      .def_ro("precision", &LayerInfo::precision)
      .def_ro("tactic", &LayerInfo::tactic)
      .def_ro("inputs", &LayerInfo::inputs)
      .def_ro("outputs", &LayerInfo::outputs)
      .def_ro("fused", &LayerInfo::fused)
      .def_ro("fusion", &LayerInfo::fusion)
      .def_ro("elided", &LayerInfo::elided)
      .def_ro("candidates", &LayerInfo::candidates)
      .def_ro("precision_choice", &LayerInfo::precision_choice)
      .def_ro("int8_scales", &LayerInfo::int8_scales)
      .def("__repr__", [](const LayerInfo& l) {
        return "LayerInfo(name='" + l.name + "', op_type='" + l.op_type + "', tactic='" + l.tactic +
               "', precision='" + l.precision + "')";
      });

  nb::class_<NetworkSummary>(m, "Summary", "What a network or engine holds (`kiln inspect`).")
      .def_ro("inputs", &NetworkSummary::inputs)
      .def_ro("outputs", &NetworkSummary::outputs)
      .def_ro("layers", &NetworkSummary::layers)
      .def_prop_ro("num_layers", [](const NetworkSummary& s) { return s.layers.size(); })
      .def_ro("launches", &NetworkSummary::launches, "kernel launches per inference")
      .def_ro("launches_before", &NetworkSummary::launches_before)
      .def_ro("layers_before", &NetworkSummary::layers_before)
      .def_ro("pass_notes", &NetworkSummary::pass_notes)
      .def_ro("weight_bytes", &NetworkSummary::weight_bytes)
      .def_ro("activation_bytes", &NetworkSummary::activation_bytes)
      .def_ro("reformats", &NetworkSummary::reformats)
      .def_ro("precision_choice", &NetworkSummary::precision_choice)
      .def_ro("int8", &NetworkSummary::int8)
      .def("__repr__", [](const NetworkSummary& s) {
        return "Summary(layers=" + std::to_string(s.layers.size()) + ", launches=" + std::to_string(s.launches) +
               ", weight_bytes=" + std::to_string(s.weight_bytes) + ")";
      });

  nb::class_<PyNetwork>(m, "Network", "A parsed model (graph and weights); made by parse_onnx.")
      .def_prop_ro("inputs", [](const PyNetwork& n) { return summarize(*n.net).inputs; })
      .def_prop_ro("outputs", [](const PyNetwork& n) { return summarize(*n.net).outputs; })
      .def("summary", [](const PyNetwork& n) { return summarize(*n.net); });

  m.def(
      "parse_onnx",
      [](const std::string& path, int batch, std::map<std::string, std::vector<int64_t>> input_shapes) {
        ParseOptions opts;
        opts.batch = batch;
        opts.input_shapes = std::move(input_shapes);
        PyNetwork n;
        {
          nb::gil_scoped_release release;
          n.net = parse_onnx(path, opts);
        }
        return n;
      },
      "path"_a, "batch"_a = 0, "input_shapes"_a = std::map<std::string, std::vector<int64_t>>(),
      "Parses an ONNX model file. `batch` sets a symbolic batch dimension (0: the model's, or 1); "
      "`input_shapes` ({name: shape}) gives inputs with other symbolic dimensions their shape.");

  nb::class_<BuilderConfig> builder(m, "Builder", "Builds an engine for a network and returns its plan (bytes).",
                                    nb::type_slots(builder_type_slots()));
  builder
      .def(
          "__init__",
          [](BuilderConfig* cfg, const std::string& device, bool fp16, std::vector<std::string> fp32_layers,
             std::vector<std::string> fp16_layers, const std::string& timing_cache, bool optimize, bool int8,
             PyCalibrator* calibrator, const std::string& calib_method, double calib_percentile,
             const std::string& calib_cache, std::vector<std::string> keep_float_layers,
             std::vector<std::string> int8_layers, bool int8_guard, double int8_guard_bound) {
            new (cfg) BuilderConfig();
            cfg->device = parse_device(device);
            cfg->fp16 = fp16;
            cfg->fp32_layers = std::move(fp32_layers);
            cfg->fp16_layers = std::move(fp16_layers);
            cfg->timing_cache = timing_cache;
            cfg->optimize = optimize;
            set_int8_options(*cfg, int8, calibrator, calib_method, calib_percentile, calib_cache,
                             std::move(keep_float_layers), std::move(int8_layers), int8_guard, int8_guard_bound);
          },
          "device"_a = "cpu", "fp16"_a = false, "fp32_layers"_a = std::vector<std::string>(),
          "fp16_layers"_a = std::vector<std::string>(), "timing_cache"_a = "", "optimize"_a = true,
          "int8"_a = false, nb::arg("calibrator").none() = nb::none(), "calib_method"_a = "entropy",
          "calib_percentile"_a = 99.99, "calib_cache"_a = "", "keep_float_layers"_a = std::vector<std::string>(),
          "int8_layers"_a = std::vector<std::string>(), "int8_guard"_a = false, "int8_guard_bound"_a = 0.02,
          // The config keeps a raw pointer to the calibrator (argument 9).
          nb::keep_alive<1, 9>())
      .def_prop_ro("device", [](const BuilderConfig& c) { return c.device == Device::kCuda ? "cuda" : "cpu"; })
      .def_ro("fp16", &BuilderConfig::fp16)
      .def_ro("fp32_layers", &BuilderConfig::fp32_layers)
      .def_ro("fp16_layers", &BuilderConfig::fp16_layers)
      .def_ro("timing_cache", &BuilderConfig::timing_cache)
      .def_ro("optimize", &BuilderConfig::optimize)
      .def(
          "build",
          [](const BuilderConfig& cfg, const PyNetwork& n) {
            std::vector<uint8_t> plan;
            {
              nb::gil_scoped_release release;
              plan = Builder(cfg).build(*n.net);
            }
            return to_bytes(plan);
          },
          "network"_a, "Builds an engine and returns the serialized plan.")
      .def(
          "build_profile",
          [](const BuilderConfig& cfg, const std::string& path, int min_batch, int opt_batch, int max_batch) {
            std::vector<uint8_t> plan;
            {
              nb::gil_scoped_release release;
              plan = Builder(cfg).build_profile(path, {}, {min_batch, opt_batch, max_batch});
            }
            return to_bytes(plan);
          },
          "model_path"_a, "min_batch"_a, "opt_batch"_a, "max_batch"_a,
          "Builds one plan that runs any batch in [min_batch, max_batch] of a model with a symbolic batch "
          "dimension (one specialization per batch of the profile, tuned at its batch).")
      .def(
          "rebuild",
          [](const BuilderConfig& cfg, const nb::bytes& plan) {
            std::vector<uint8_t> in = bytes_vec(plan), out;
            {
              nb::gil_scoped_release release;
              out = Builder(cfg).rebuild(in);
            }
            return to_bytes(out);
          },
          "plan"_a, "Re-tunes a plan for this GPU from the graph and weights it embeds.");
  bind_builder_int8(builder);

  nb::class_<PyContext>(m, "Context", "Per-inference state of an engine; made by Engine.create_context().")
      .def(
          "run",
          [](PyContext& c, const nb::dict& feeds) {
            std::map<std::string, HostTensor> inputs;
            for (auto [k, v] : feeds) {
              if (!nb::isinstance<nb::str>(k))
                throw Error(ErrorCode::kBadInput, "input names must be str, got " +
                                                      nb::cast<std::string>(k.type().attr("__name__")));
              std::string name = nb::cast<std::string>(k);
              inputs.emplace(name, to_host_tensor(name, v));
            }
            std::map<std::string, HostTensor> outputs;
            {
              nb::gil_scoped_release release;
              std::lock_guard<std::mutex> guard(c.lock);
              outputs = c.ctx->run(inputs);
            }
            nb::dict result;
            for (auto& [name, t] : outputs) result[name.c_str()] = to_numpy(std::move(t));
            return result;
          },
          "inputs"_a,
          "Runs one inference: {input name: array} -> {output name: array}. Every input must have the "
          "dtype and shape engine.inputs gives.")
      .def(
          "device_address",
          [](PyContext& c, const std::string& name) { return uintptr_t(c.ctx->device_address(name)); }, "name"_a,
          "GPU engines: address of this context's device buffer for an input or output (0 on the CPU or "
          "for an unknown name).")
      .def("device_tensor", &device_view, "name"_a,
           "GPU engines: this context's device buffer for an input or output as a DLPack-capable array "
           "(torch.from_dlpack / cupy.from_dlpack), no copy. It shows the buffer's current contents: "
           "synchronize the stream after enqueue before reading; the next run overwrites it. For a "
           "dynamic_rows output it spans the maximum rows.")
      .def(
          "enqueue",
          [](PyContext& c, uintptr_t stream_ptr) {
            nb::gil_scoped_release release;
            std::lock_guard<std::mutex> guard(c.lock);
            c.ctx->enqueue(reinterpret_cast<void*>(stream_ptr));
          },
          "stream_ptr"_a = 0,
          "GPU engines: runs one inference on the device buffers on a cudaStream_t (0: the context's own) "
          "without waiting.")
      .def(
          "set_batch",
          [](PyContext& c, int64_t batch) {
            std::lock_guard<std::mutex> guard(c.lock);
            c.rows = c.ctx->set_batch(batch);
            return c.rows;
          },
          "batch"_a,
          "Batch-profile engines: the batch device_address/device_tensor/enqueue serve (max until called). "
          "Returns the rows the device buffers then hold along the batch axis (the smallest specialization "
          ">= batch); rows past `batch` run too and are to be ignored.")
      .def(
          "set_cuda_graph", [](PyContext& c, bool on) { c.ctx->set_cuda_graph(on); }, "on"_a,
          "GPU engines: replay the inference as one CUDA graph (default on).")
      .def(
          "profile",
          [](PyContext& c, int runs) {
            std::vector<ExecutionContext::LayerTime> times;
            {
              nb::gil_scoped_release release;
              std::lock_guard<std::mutex> guard(c.lock);
              times = c.ctx->profile(runs);
            }
            nb::list out;
            for (auto& t : times) {
              nb::dict d;
              d["name"] = t.name;
              d["op_type"] = t.op_type;
              d["tactic"] = t.tactic;
              d["ms"] = t.ms;
              out.append(d);
            }
            return out;
          },
          "runs"_a = 10, "Median ms of every layer over `runs` timings on the last inputs given.");

  nb::class_<PyEngine>(m, "Engine", "A built engine; made by Runtime.deserialize / Runtime.load.")
      .def_prop_ro("inputs", [](const PyEngine& e) { return e.engine->inputs(); })
      .def_prop_ro("outputs", [](const PyEngine& e) { return e.engine->outputs(); })
      .def_prop_ro("device", [](const PyEngine& e) { return e.engine->device(); })
      .def_prop_ro(
          "profile",
          [](const PyEngine& e) {
            const BatchProfile p = e.engine->profile();
            return p.max ? nb::make_tuple(p.min, p.opt, p.max) : nb::make_tuple();
          },
          "(min, opt, max) batches of a batch-profile engine; () for a single-batch one")
      .def("summary", [](const PyEngine& e) { return e.engine->summary(); })
      .def("create_context", [](const PyEngine& e) {
        auto c = std::make_unique<PyContext>();
        c->engine = e.engine;
        c->ctx = e.engine->create_context();
        return c;
      });

  nb::class_<Runtime>(m, "Runtime", "Loads plans.")
      .def(nb::init<>())
      .def(
          "deserialize",
          [](const Runtime& r, const nb::bytes& plan, const std::string& origin) {
            std::vector<uint8_t> bytes = bytes_vec(plan);
            PyEngine e;
            {
              nb::gil_scoped_release release;
              e.engine = r.deserialize(bytes, origin);
            }
            return e;
          },
          "plan"_a, "origin"_a = "<memory>", "Loads an engine from plan bytes (Builder.build's result).")
      .def(
          "load",
          [](const Runtime& r, const std::string& path) {
            PyEngine e;
            {
              nb::gil_scoped_release release;
              e.engine = r.load(path);
            }
            return e;
          },
          "path"_a, "Loads an engine from a plan file.");

  m.def(
      "write_plan",
      [](const std::string& path, const nb::bytes& plan) { write_file_atomic(path, bytes_vec(plan)); }, "path"_a,
      "plan"_a, "Writes plan bytes to `path` atomically.");
  m.def(
      "load_plugin_library", [](const std::string& path) { return load_plugin_library(path); }, "path"_a,
      "Loads a plugin library (KILN_REGISTER_PLUGIN) and returns how many creators it registered.");

  bind_calibration(m);
}

}  // namespace python
}  // namespace kiln

NB_MODULE(_kiln, m) { kiln::python::bind(m); }
