// Running a detector engine (one that ends in EfficientNMS_TRT) on images:
// the preprocessing flags and the box mapping shared by `kiln detect` and
// `kiln eval`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "image.h"
#include "kiln/kiln.h"

namespace kiln::cli {

// --preprocess FILE.json, --mean, --std, --scale, --bgr.
struct PreprocessArgs {
  std::string file;
  std::vector<float> mean, std;
  float scale = 0.0f;
  bool bgr = false;
  CLI::Option* scale_opt = nullptr;
};
void add_preprocess_options(CLI::App* app, PreprocessArgs& args);

// Values from --preprocess FILE.json, else PLAN.json next to the plan when it
// exists ({"mean": [..3], "std": [..3], "scale": s, "channel_order":
// "RGB"|"BGR"}, every key optional), then the flags; defaults RGB, scale
// 1/255, mean 0, std 1.
Normalization resolve_normalization(const PreprocessArgs& args, const std::string& plan_path);

// One detection in original image pixels, clipped to the image.
struct Detection {
  double x0, y0, x1, y1;
  float score;
  int cls;  // detection_classes as the NMS layer wrote it
};

class DetectorEngine {
 public:
  // Loads the plan and checks it has one float32 [N,3,H,W] input and the
  // four EfficientNMS_TRT outputs (kBadInput naming the plan otherwise).
  explicit DetectorEngine(const std::string& plan_path);
  int batch() const { return batch_; }
  // Runs up to batch() images at once (the slots past the last image repeat
  // it; their results are dropped) and returns each image's detections
  // scoring at least `threshold`, in the NMS layer's order (highest first).
  // Boxes are [x1,y1,x2,y2] in the resized input's pixels, or normalized to
  // 0..1 when every coordinate of the image's detections is within
  // [-1.5, 1.5]; either way they are mapped to the original image.
  std::vector<std::vector<Detection>> run(const std::vector<const Image*>& images, const Normalization& norm,
                                          float threshold);

 private:
  std::string plan_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<ExecutionContext> ctx_;
  TensorInfo input_;
  int batch_ = 1, height_ = 0, width_ = 0;
};

}  // namespace kiln::cli
