// Detector engine runs for `kiln detect` and `kiln eval`; see detector.h.
#include "detector.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <tuple>

#include <nlohmann/json.hpp>

namespace kiln::cli {

namespace {
namespace fs = std::filesystem;

const char* kDetOutputs[] = {"num_detections", "detection_boxes", "detection_scores", "detection_classes"};

void read_triple(const nlohmann::json& j, const char* key, float out[3], const std::string& file) {
  if (!j.contains(key)) return;
  const auto& v = j[key];
  if (!v.is_array() || v.size() != 3 || !v[0].is_number() || !v[1].is_number() || !v[2].is_number())
    throw_bad_input("preprocess file '" + file + "': \"" + key + "\" must be a list of 3 numbers");
  for (int c = 0; c < 3; ++c) out[c] = v[c].get<float>();
}

// The sidecar's values are in the engine's channel order.
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
}  // namespace

void add_preprocess_options(CLI::App* app, PreprocessArgs& args) {
  app->add_option("--preprocess", args.file, "JSON with mean/std/scale/channel_order (default: PLAN.json when it exists)")
      ->type_name("FILE.json");
  app->add_option("--mean", args.mean, "per-channel mean, after scaling")->delimiter(',')->expected(3)
      ->type_name("R,G,B");
  app->add_option("--std", args.std, "per-channel std, after scaling")->delimiter(',')->expected(3)
      ->type_name("R,G,B");
  args.scale_opt = app->add_option("--scale", args.scale, "multiplies 0..255 pixels first (default 1/255)");
  app->add_flag("--bgr", args.bgr, "feed channels in BGR order");
}

Normalization resolve_normalization(const PreprocessArgs& a, const std::string& plan_path) {
  Normalization n;
  const std::string sidecar = a.file.empty() ? plan_path + ".json" : a.file;
  if (!a.file.empty() || fs::exists(sidecar)) n = read_preprocess(sidecar);
  // Flags override the file.
  for (auto [vals, dst, name] : {std::tuple{&a.mean, n.mean, "--mean"}, std::tuple{&a.std, n.std, "--std"}}) {
    if (vals->empty()) continue;
    if (vals->size() != 3) throw_usage(std::string(name) + " takes 3 comma-separated values (R,G,B)");
    std::copy(vals->begin(), vals->end(), dst);
  }
  if (a.scale_opt && a.scale_opt->count()) n.scale = a.scale;
  if (a.bgr) n.bgr = true;
  for (float s : n.std)
    if (!(s != 0.0f)) throw_bad_input("preprocess std values must be non-zero");
  return n;
}

DetectorEngine::DetectorEngine(const std::string& plan_path) : plan_(plan_path) {
  engine_ = Runtime().load(plan_path);
  for (const char* name : kDetOutputs) {
    bool found = false;
    for (const TensorInfo& t : engine_->outputs()) found |= t.name == name;
    if (!found)
      throw_bad_input("engine " + plan_path + " has no detection outputs (num_detections, detection_boxes, "
                      "detection_scores, detection_classes): build it from a model that ends in EfficientNMS_TRT");
  }
  if (engine_->inputs().size() != 1)
    throw_bad_input("engine " + plan_path + " has " + std::to_string(engine_->inputs().size()) +
                    " inputs; a detector engine needs exactly one image input [N,3,H,W]");
  input_ = engine_->inputs()[0];
  const TensorInfo& in = input_;
  if (in.dtype != DataType::kFloat32 || in.shape.size() != 4 || in.shape[1] != 3 || in.shape[0] < 1)
    throw_bad_input("engine input '" + in.name + "' is " + dtype_name(in.dtype) + shape_str(in.shape) +
                    "; a detector engine needs a float32 [N,3,H,W] image input");
  batch_ = int(in.shape[0]);
  height_ = int(in.shape[2]);
  width_ = int(in.shape[3]);
  ctx_ = engine_->create_context();
}

std::vector<std::vector<Detection>> DetectorEngine::run(const std::vector<const Image*>& images,
                                                        const Normalization& norm, float threshold) {
  if (images.empty() || int(images.size()) > batch_)
    throw_internal("detector: " + std::to_string(images.size()) + " images for a batch of " + std::to_string(batch_));
  const int H = height_, W = width_;
  const size_t per_image = size_t(3) * H * W;
  HostTensor x = HostTensor::zeros(DataType::kFloat32, input_.shape);
  for (int s = 0; s < batch_; ++s)
    to_chw_float(*images[std::min(size_t(s), images.size() - 1)], W, H, norm, x.as<float>() + s * per_image);
  auto out = ctx_->run({{input_.name, x}});
  const HostTensor& num = out.at("num_detections");
  const HostTensor& boxes = out.at("detection_boxes");
  const HostTensor& scores = out.at("detection_scores");
  const HostTensor& classes = out.at("detection_classes");
  if (boxes.shape.size() != 3 || boxes.shape[2] != 4 || num.dtype != DataType::kInt32 ||
      classes.dtype != DataType::kInt32 || boxes.dtype != DataType::kFloat32 || scores.dtype != DataType::kFloat32)
    throw_bad_input("engine " + plan_ + ": detection outputs do not have EfficientNMS_TRT's dtypes and shapes");
  const int K = int(boxes.shape[1]);

  std::vector<std::vector<Detection>> result(images.size());
  for (size_t s = 0; s < images.size(); ++s) {
    const Image& img = *images[s];
    const int n = std::clamp(num.as<int32_t>()[s], 0, K);
    bool normalized = n > 0;
    for (int k = 0; k < n; ++k) {
      const float* b = boxes.as<float>() + (s * K + k) * 4;
      for (int c = 0; c < 4; ++c) normalized &= std::abs(b[c]) <= 1.5f;
    }
    // Input-pixel boxes scale by original/input size; normalized ones by the original size.
    const double fx = normalized ? img.width : double(img.width) / W;
    const double fy = normalized ? img.height : double(img.height) / H;
    for (int k = 0; k < n; ++k) {
      const float score = scores.as<float>()[s * K + k];
      if (!(score >= threshold)) continue;
      const float* b = boxes.as<float>() + (s * K + k) * 4;
      auto cl = [](double v, double hi) { return std::clamp(v, 0.0, hi); };
      result[s].push_back({cl(b[0] * fx, img.width), cl(b[1] * fy, img.height), cl(b[2] * fx, img.width),
                           cl(b[3] * fy, img.height), score, classes.as<int32_t>()[s * K + k]});
    }
  }
  return result;
}

}  // namespace kiln::cli
