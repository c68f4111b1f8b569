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
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "image.h"

namespace kiln::cli {

namespace {
namespace fs = std::filesystem;

const char* kDetOutputs[] = {"num_detections", "detection_boxes", "detection_scores", "detection_classes"};

struct DetectArgs {
  std::vector<std::string> plugins;
  std::string plan, outdir = "detections", preprocess;
  std::vector<std::string> images;
  float threshold = 0.0f;
  std::vector<float> mean, std;
  float scale = 0.0f;
  bool bgr = false;
  CLI::Option* scale_opt = nullptr;
};

void read_triple(const nlohmann::json& j, const char* key, float out[3], const std::string& file) {
  if (!j.contains(key)) return;
  const auto& v = j[key];
  if (!v.is_array() || v.size() != 3 || !v[0].is_number() || !v[1].is_number() || !v[2].is_number())
    throw_bad_input("preprocess file '" + file + "': \"" + key + "\" must be a list of 3 numbers");
  for (int c = 0; c < 3; ++c) out[c] = v[c].get<float>();
}

// The sidecar: {"mean": [r,g,b], "std": [r,g,b], "scale": s, "channel_order": "RGB"|"BGR"};
// every key optional. Values are in the engine's channel order.
Normalization read_preprocess(const std::string& file) {
  Normalization n;
  std::ifstream in(file);
  if (!in) throw_bad_input("cannot open preprocess file '" + file + "'");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw_bad_input("preprocess file '" + file + "' is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw_bad_input("preprocess file '" + file + "' must hold a JSON object");
  read_triple(j, "mean", n.mean, file);
  read_triple(j, "std", n.std, file);
  if (j.contains("scale")) {
    if (!j["scale"].is_number()) throw_bad_input("preprocess file '" + file + "': \"scale\" must be a number");
    n.scale = j["scale"].get<float>();
  }
  if (j.contains("channel_order")) {
    std::string order = j["channel_order"].is_string() ? j["channel_order"].get<std::string>() : "";
    if (order != "RGB" && order != "BGR")
      throw_bad_input("preprocess file '" + file + "': \"channel_order\" must be \"RGB\" or \"BGR\"");
    n.bgr = order == "BGR";
  }
  return n;
}

Normalization normalization(const DetectArgs& a) {
  Normalization n;
  std::string sidecar = a.preprocess.empty() ? a.plan + ".json" : a.preprocess;
  if (!a.preprocess.empty() || fs::exists(sidecar)) n = read_preprocess(sidecar);
  // Flags override the file.
  for (auto [vals, dst, name] : {std::tuple{&a.mean, n.mean, "--mean"}, std::tuple{&a.std, n.std, "--std"}}) {
    if (vals->empty()) continue;
    if (vals->size() != 3) throw_usage(std::string(name) + " takes 3 comma-separated values (R,G,B)");
    std::copy(vals->begin(), vals->end(), dst);
  }
  if (a.scale_opt->count()) n.scale = a.scale;
  if (a.bgr) n.bgr = true;
  for (float s : n.std)
    if (!(s != 0.0f)) throw_bad_input("preprocess std values must be non-zero");
  return n;
}

// A distinct, stable colour for each class.
void class_color(int cls, uint8_t out[3]) {
  static const uint8_t palette[][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                       {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230},
                                       {210, 245, 60}, {250, 190, 212}, {0, 128, 128}, {170, 110, 40}};
  const int n = int(sizeof palette / sizeof palette[0]);
  const uint8_t* p = palette[((cls % n) + n) % n];
  out[0] = p[0], out[1] = p[1], out[2] = p[2];
}

struct Detection {
  double x0, y0, x1, y1;
  float score;
  int cls;
};

std::vector<uint8_t> text_bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

int run_detect(const DetectArgs& a) {
  load_plugins(a.plugins);
  auto engine = Runtime().load(a.plan);
  for (const char* name : kDetOutputs) {
    bool found = false;
    for (const TensorInfo& t : engine->outputs()) found |= t.name == name;
    if (!found)
      throw_bad_input("engine " + a.plan + " has no detection outputs (num_detections, detection_boxes, "
                      "detection_scores, detection_classes): build it from a model that ends in EfficientNMS_TRT");
  }
  if (engine->inputs().size() != 1)
    throw_bad_input("engine " + a.plan + " has " + std::to_string(engine->inputs().size()) +
                    " inputs; `kiln detect` needs exactly one image input [N,3,H,W]");
  const TensorInfo& in = engine->inputs()[0];
  if (in.dtype != DataType::kFloat32 || in.shape.size() != 4 || in.shape[1] != 3 || in.shape[0] < 1)
    throw_bad_input("engine input '" + in.name + "' is " + dtype_name(in.dtype) + shape_str(in.shape) +
                    "; `kiln detect` needs a float32 [N,3,H,W] image input");
  const int batch = int(in.shape[0]), H = int(in.shape[2]), W = int(in.shape[3]);
  const Normalization norm = normalization(a);

  // Decode every image first: a bad one fails before any output is written.
  std::vector<Image> images;
  for (const std::string& path : a.images) images.push_back(load_image(path));

  std::error_code ec;
  fs::create_directories(a.outdir, ec);
  if (ec) throw_bad_input("cannot create output directory '" + a.outdir + "': " + ec.message());

  auto ctx = engine->create_context();
  const size_t per_image = size_t(3) * H * W;
  for (size_t first = 0; first < images.size(); first += batch) {
    HostTensor x = HostTensor::zeros(DataType::kFloat32, in.shape);
    // Slots past the last image repeat it; their results are ignored.
    for (int s = 0; s < batch; ++s)
      to_chw_float(images[std::min(first + s, images.size() - 1)], W, H, norm, x.as<float>() + s * per_image);
    auto out = ctx->run({{in.name, x}});
    const HostTensor& num = out.at("num_detections");
    const HostTensor& boxes = out.at("detection_boxes");
    const HostTensor& scores = out.at("detection_scores");
    const HostTensor& classes = out.at("detection_classes");
    if (boxes.shape.size() != 3 || boxes.shape[2] != 4 || num.dtype != DataType::kInt32 ||
        classes.dtype != DataType::kInt32 || boxes.dtype != DataType::kFloat32 || scores.dtype != DataType::kFloat32)
      throw_bad_input("engine " + a.plan + ": detection outputs do not have EfficientNMS_TRT's dtypes and shapes");
    const int K = int(boxes.shape[1]);

    for (int s = 0; s < batch && first + s < images.size(); ++s) {
      const Image& img = images[first + s];
      const int n = std::clamp(num.as<int32_t>()[s], 0, K);
      std::vector<Detection> dets;
      bool normalized = n > 0;
      for (int k = 0; k < n; ++k) {
        const float* b = boxes.as<float>() + (size_t(s) * K + k) * 4;
        for (int c = 0; c < 4; ++c) normalized &= std::abs(b[c]) <= 1.5f;
      }
      // Input-pixel boxes scale by original/input size; normalized ones by the original size.
      const double fx = normalized ? img.width : double(img.width) / W;
      const double fy = normalized ? img.height : double(img.height) / H;
      for (int k = 0; k < n; ++k) {
        const float score = scores.as<float>()[size_t(s) * K + k];
        if (!(score >= a.threshold)) continue;
        const float* b = boxes.as<float>() + (size_t(s) * K + k) * 4;
        auto cl = [](double v, double hi) { return std::clamp(v, 0.0, hi); };
        dets.push_back({cl(b[0] * fx, img.width), cl(b[1] * fy, img.height), cl(b[2] * fx, img.width),
                        cl(b[3] * fy, img.height), score, classes.as<int32_t>()[size_t(s) * K + k]});
      }

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
  app->add_option("--preprocess", args->preprocess,
                  "JSON with mean/std/scale/channel_order (default: PLAN.json when it exists)")
      ->type_name("FILE.json");
  app->add_option("--mean", args->mean, "per-channel mean, after scaling")->delimiter(',')->expected(3)
      ->type_name("R,G,B");
  app->add_option("--std", args->std, "per-channel std, after scaling")->delimiter(',')->expected(3)
      ->type_name("R,G,B");
  args->scale_opt = app->add_option("--scale", args->scale, "multiplies 0..255 pixels first (default 1/255)");
  app->add_flag("--bgr", args->bgr, "feed channels in BGR order");
  add_plugins_option(app, args->plugins);
  return {app, [args] { return run_detect(*args); }};
}

}  // namespace kiln::cli
