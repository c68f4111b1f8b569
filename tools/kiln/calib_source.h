// INT8 calibration data for the CLI (`kiln calibrate`, `kiln build --int8`):
// the --calib* flags and batch streams read from a folder.
//
// --calib DIR holds one of:
//   * image files (.png .jpg .jpeg .bmp .ppm): for a network with one float32
//     [N,3,H,W] input. Sorted by file name, N images a batch, each resized
//     (bilinear) to H x W and normalized as `kiln detect` does:
//     (pixel * scale - mean[c]) / std[c]. A last partial batch is filled up
//     with the folder's first images again (so every image is used).
//   * .npy files: for a network with one input; each file is one batch with
//     exactly the input's dtype and shape. Sorted by file name.
//   * subfolders (any number of inputs): each subfolder is one batch, sorted
//     by name, holding <input name>.npy for every network input ('/' in an
//     input name is written '_').
// Other files (and names starting with '.') are ignored; a folder with none
// of these, or with more than one kind, is refused (kUsage).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "kiln/kiln.h"

namespace kiln::cli {

struct CalibArgs {
  std::string dir;               // --calib
  std::string method = "entropy";
  double percentile = 99.99;
  std::string cache;             // --calib-cache
  int max_batches = 0;           // --calib-batches, 0 = every batch
  std::vector<float> mean, std;  // image preprocessing, as `kiln detect`
  float scale = 1.0f / 255.0f;
  bool bgr = false;
  CLI::Option* percentile_opt = nullptr;
  CLI::Option* scale_opt = nullptr;
};

// Registers --calib, --calib-method, --calib-percentile, --calib-cache,
// --calib-batches, --mean, --std, --scale and --bgr on `app`.
void add_calib_options(CLI::App* app, CalibArgs& args);

// A batch stream over a --calib folder (see the top of this file).
class FolderCalibrator : public Calibrator {
 public:
  ~FolderCalibrator() override = default;
  // Batches handed out so far.
  virtual int batches_given() const = 0;
  // "12 images, batches of 4" / "5 .npy batches": for summaries.
  virtual std::string describe() const = 0;
};

// What calibrate() needs, with the calibrator it points at.
struct CalibSetup {
  std::unique_ptr<FolderCalibrator> calibrator;  // null when the scales come from --calib-cache alone
  CalibrationConfig config;                      // config.calibrator == calibrator.get()
};

// Checks the flags and opens --calib for `network`'s inputs. Needs --calib or
// --calib-cache (kUsage otherwise: callers that can do without calibration
// check `args.dir.empty() && args.cache.empty()` first). With both, the run
// writes the cache. config.progress is on when stderr is a terminal.
CalibSetup make_calibration(const CalibArgs& args, const Network& network);

}  // namespace kiln::cli
