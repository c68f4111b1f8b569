// kiln calibrate MODEL.onnx --calib DIR [--calib-method entropy|minmax|percentile] [--calib-percentile P]
//       [--calib-batches N] [--mean R,G,B] [--std R,G,B] [--scale S] [--bgr] [--calib-cache FILE]
//       [-o MODEL.qdq.onnx] [--batch N] [--plugins LIB.so ...]
// kiln calibrate MODEL.onnx --calib-cache FILE [-o MODEL.qdq.onnx]   (check a cache, export it)
//
// Runs INT8 calibration on the optimized FP32 graph (see calib_source.h for
// what --calib holds), writes the scales to --calib-cache, and with -o writes
// the model with QuantizeLinear/DequantizeLinear pairs carrying them.
#include <chrono>
#include <cstdio>

#include "calib_source.h"
#include "cli.h"

namespace kiln::cli {

namespace {
struct CalibrateArgs {
  std::vector<std::string> plugins, input_shapes;
  std::string model, output;
  int batch = 0;
  CalibArgs calib;
};

int run_calibrate(const CalibrateArgs& a) {
  load_plugins(a.plugins);
  const auto start = std::chrono::steady_clock::now();
  ParseOptions popts;
  popts.batch = a.batch;
  popts.input_shapes = parse_input_shapes(a.input_shapes);
  NetworkPtr net = parse_onnx(a.model, popts);
  CalibSetup setup = make_calibration(a.calib, *net);
  const std::map<std::string, float> scales = calibrate(*net, setup.config);
  const double ms = ms_since(start);
  if (setup.calibrator) {
    std::printf("calibrated %zu tensors of %s over %d batches (%s; %s) in %.1f ms\n", scales.size(), a.model.c_str(),
                setup.calibrator->batches_given(), calibration_method_name(setup.config.method),
                setup.calibrator->describe().c_str(), ms);
    if (!a.calib.cache.empty()) std::printf("wrote %s\n", a.calib.cache.c_str());
  } else {
    std::printf("calibration cache %s matches %s: %zu tensors\n", a.calib.cache.c_str(), a.model.c_str(),
                scales.size());
  }
  if (!a.output.empty()) {
    export_qdq_onnx(a.model, scales, a.output);
    std::printf("wrote %s\n", a.output.c_str());
  }
  return 0;
}
}  // namespace

Command add_calibrate_command(CLI::App& root) {
  auto args = std::make_shared<CalibrateArgs>();
  CLI::App* app = root.add_subcommand(
      "calibrate", "INT8 calibration: per-tensor scales from sample inputs, as a calibration cache and/or a Q/DQ model");
  app->add_option("model", args->model, "ONNX model file")->required();
  add_calib_options(app, args->calib);
  app->add_option("-o,--output", args->output, "also write the model with QuantizeLinear/DequantizeLinear pairs")
      ->type_name("MODEL.qdq.onnx");
  app->add_option("--batch", args->batch, "value for a symbolic batch dimension")->check(CLI::PositiveNumber);
  add_input_shape_option(app, args->input_shapes);
  add_plugins_option(app, args->plugins);
  return {app, [args] {
            if (args->calib.cache.empty() && args->output.empty())
              throw_usage("kiln calibrate writes its scales to --calib-cache FILE and/or a Q/DQ model (-o "
                          "MODEL.qdq.onnx): give at least one");
            return run_calibrate(*args);
          }};
}

}  // namespace kiln::cli
