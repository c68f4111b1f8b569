// kiln detect ENGINE.plan IMAGE... [--out DIR] [--threshold T] [--preprocess FILE.json]
//   [--mean R,G,B] [--std R,G,B] [--scale S] [--bgr] [--plugins LIB.so ...]
//
// Runs a detector engine (one that ends in EfficientNMS_TRT) on image files and
// writes, per image, DIR/<stem>.json (COCO-style detections in original image
// pixels) and DIR/<stem>.png (the image with the boxes drawn).
//
// Preprocessing: bilinear resize to the input's H x W, then
// (pixel * scale - mean[c]) / std[c] per channel, NCHW float32. Values come from
// --preprocess FILE.json, else PLAN.json next to the plan when it exists
// ({"mean": [..3], "std": [..3], "scale": s, "channel_order": "RGB"|"BGR"}),
// then --mean/--std/--scale/--bgr; defaults RGB, scale 1/255, mean 0, std 1.
// Boxes: detection_boxes are [x1,y1,x2,y2] in the resized input's pixels, or
// normalized to 0..1 when every coordinate of the image's detections is within
// [-1.5, 1.5]; either way they are mapped to the original image and clipped to it.
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "detector.h"

namespace kiln::cli {

namespace {
namespace fs = std::filesystem;

struct DetectArgs {
  std::vector<std::string> plugins;
  std::string plan, outdir = "detections";
  std::vector<std::string> images;
  float threshold = 0.0f;
  PreprocessArgs pre;
};

// A distinct, stable colour for each class.
void class_color(int cls, uint8_t out[3]) {
  static const uint8_t palette[][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                       {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230},
                                       {210, 245, 60}, {250, 190, 212}, {0, 128, 128}, {170, 110, 40}};
  const int n = int(sizeof palette / sizeof palette[0]);
  const uint8_t* p = palette[((cls % n) + n) % n];
  out[0] = p[0], out[1] = p[1], out[2] = p[2];
}

std::vector<uint8_t> text_bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

int run_detect(const DetectArgs& a) {
  load_plugins(a.plugins);
  DetectorEngine detector(a.plan);
  const Normalization norm = resolve_normalization(a.pre, a.plan);

  // Decode every image first: a bad one fails before any output is written.
  std::vector<Image> images;
  for (const std::string& path : a.images) images.push_back(load_image(path));

  std::error_code ec;
  fs::create_directories(a.outdir, ec);
  if (ec) throw_bad_input("cannot create output directory '" + a.outdir + "': " + ec.message());

  const size_t batch = size_t(detector.batch());
  for (size_t first = 0; first < images.size(); first += batch) {
    std::vector<const Image*> group;
    for (size_t s = first; s < images.size() && s < first + batch; ++s) group.push_back(&images[s]);
    const std::vector<std::vector<Detection>> found = detector.run(group, norm, a.threshold);
    for (size_t s = 0; s < group.size(); ++s) {
      const Image& img = *group[s];
      const std::vector<Detection>& dets = found[s];
      const fs::path src(a.images[first + s]);
      nlohmann::json list = nlohmann::json::array();
      Image drawn = img;
      for (const Detection& d : dets) {
        list.push_back({{"image", src.filename().string()},
                        {"bbox", {d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0}},
                        {"score", d.score},
                        {"category_id", d.cls}});
        uint8_t color[3];
        class_color(d.cls, color);
        draw_rect(drawn, d.x0, d.y0, d.x1, d.y1, color, 2);
      }
      const std::string stem = src.stem().string().empty() ? "image" : src.stem().string();
      const std::string json_path = (fs::path(a.outdir) / (stem + ".json")).string();
      const std::string png_path = (fs::path(a.outdir) / (stem + ".png")).string();
      write_file_atomic(json_path, text_bytes(list.dump(1) + "\n"));
      write_file_atomic(png_path, encode_png(drawn));
      std::printf("%s: %zu detection%s (%dx%d) -> %s, %s\n", src.string().c_str(), dets.size(),
                  dets.size() == 1 ? "" : "s", img.width, img.height, json_path.c_str(), png_path.c_str());
    }
  }
  return 0;
}
}  // namespace

Command add_detect_command(CLI::App& root) {
  auto args = std::make_shared<DetectArgs>();
  CLI::App* app = root.add_subcommand(
      "detect", "Run a detector engine (ending in EfficientNMS_TRT) on images; write COCO-style JSON and boxed PNGs");
  app->add_option("plan", args->plan, "plan file written by `kiln build`")->required();
  app->add_option("images", args->images, "image files (PNG, JPEG, BMP, ...)")->required();
  app->add_option("--out", args->outdir, "directory for <image>.json and <image>.png (created if needed)")
      ->capture_default_str();
  app->add_option("--threshold", args->threshold, "drop detections scoring below this")->capture_default_str();
  add_preprocess_options(app, args->pre);
  add_plugins_option(app, args->plugins);
  return {app, [args] { return run_detect(*args); }};
}

}  // namespace kiln::cli
