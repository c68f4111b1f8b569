// kiln eval ENGINE.plan --dataset DIR [--out FILE.json] [--threshold T] [--preprocess FILE.json]
//           [--mean R,G,B] [--std R,G,B] [--scale S] [--bgr] [--plugins LIB.so ...]
//
// Runs a detector engine (ending in EfficientNMS_TRT, as `kiln detect`) on
// every image a COCO data set lists and writes the COCO results file that
// pycocotools' loadRes reads: [{"image_id", "category_id", "bbox": [x,y,w,h],
// "score"}], boxes in original image pixels. category_id is the NMS layer's
// class index as is (kiln's SSD exports keep class 0 for the background, so
// the indices are the data set's category ids). mAP itself is left to
// pycocotools (bench/accuracy.py score).
//
// DIR holds annotations.json ("images": [{"id", "file_name", "width",
// "height"}, ...]) and the images, under DIR/images/ or DIR itself. Images
// run in the annotations' order, batch() at a time; preprocessing as `kiln
// detect`.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "detector.h"

namespace kiln::cli {

namespace {
namespace fs = std::filesystem;

struct EvalArgs {
  std::vector<std::string> plugins;
  std::string plan, dataset, out = "detections.json";
  float threshold = 0.0f;
  PreprocessArgs pre;
};

struct Entry {
  int64_t id = 0;
  std::string path;
  int width = -1, height = -1;  // -1: the annotations do not say
};

struct DataSet {
  std::vector<Entry> images;
  std::set<int64_t> categories;
};

DataSet read_dataset(const std::string& dir) {
  const std::string file = (fs::path(dir) / "annotations.json").string();
  std::ifstream in(file);
  if (!in) throw_bad_input("cannot open '" + file + "': --dataset DIR needs DIR/annotations.json (COCO format)");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw_bad_input("'" + file + "' is not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("images") || !j["images"].is_array())
    throw_bad_input("'" + file + "' has no \"images\" list: give a COCO annotations file");
  DataSet d;
  std::set<int64_t> ids;
  const fs::path sub = fs::path(dir) / "images";
  for (size_t k = 0; k < j["images"].size(); ++k) {
    const auto& im = j["images"][k];
    const std::string where = "'" + file + "': images[" + std::to_string(k) + "]";
    if (!im.is_object() || !im.contains("id") || !im["id"].is_number_integer() || !im.contains("file_name") ||
        !im["file_name"].is_string())
      throw_bad_input(where + " needs an integer \"id\" and a string \"file_name\"");
    Entry e;
    e.id = im["id"].get<int64_t>();
    if (!ids.insert(e.id).second) throw_bad_input(where + ": image id " + std::to_string(e.id) + " is listed twice");
    const std::string name = im["file_name"].get<std::string>();
    e.path = fs::exists(sub / name) ? (sub / name).string() : (fs::path(dir) / name).string();
    for (auto [key, dst] : {std::pair{"width", &e.width}, std::pair{"height", &e.height}})
      if (im.contains(key)) {
        if (!im[key].is_number_integer() || im[key].get<int64_t>() < 1 || im[key].get<int64_t>() > (1 << 30))
          throw_bad_input(where + ": \"" + key + "\" must be a positive integer");
        *dst = int(im[key].get<int64_t>());
      }
    d.images.push_back(e);
  }
  if (d.images.empty()) throw_bad_input("'" + file + "' lists no images");
  if (j.contains("categories") && j["categories"].is_array())
    for (const auto& c : j["categories"])
      if (c.is_object() && c.contains("id") && c["id"].is_number_integer()) d.categories.insert(c["id"].get<int64_t>());
  return d;
}

int run_eval(const EvalArgs& a) {
  load_plugins(a.plugins);
  const DataSet data = read_dataset(a.dataset);
  DetectorEngine detector(a.plan);
  const Normalization norm = resolve_normalization(a.pre, a.plan);

  const auto start = std::chrono::steady_clock::now();
  double decode_ms = 0, detect_ms = 0;
  nlohmann::json results = nlohmann::json::array();
  std::map<int, int64_t> unknown;  // classes the annotations do not list -> detections
  const size_t batch = size_t(detector.batch());
  for (size_t first = 0; first < data.images.size(); first += batch) {
    // Decoded a batch at a time: a data set of thousands never sits in memory.
    auto t0 = std::chrono::steady_clock::now();
    std::vector<Image> images;
    for (size_t s = first; s < data.images.size() && s < first + batch; ++s) {
      const Entry& e = data.images[s];
      images.push_back(load_image(e.path));
      const Image& img = images.back();
      if ((e.width >= 0 && e.width != img.width) || (e.height >= 0 && e.height != img.height))
        throw_bad_input("image " + e.path + " is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                        " but the annotations say " + std::to_string(e.width) + "x" + std::to_string(e.height) +
                        ": boxes would land in the wrong place; regenerate the data set");
    }
    decode_ms += ms_since(t0);
    t0 = std::chrono::steady_clock::now();
    std::vector<const Image*> group;
    for (const Image& img : images) group.push_back(&img);
    const std::vector<std::vector<Detection>> found = detector.run(group, norm, a.threshold);
    detect_ms += ms_since(t0);
    for (size_t s = 0; s < group.size(); ++s)
      for (const Detection& d : found[s]) {
        results.push_back({{"image_id", data.images[first + s].id},
                           {"category_id", d.cls},
                           {"bbox", {d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0}},
                           {"score", d.score}});
        if (!data.categories.empty() && !data.categories.count(d.cls)) ++unknown[d.cls];
      }
  }
  const std::string text = results.dump() + "\n";
  write_file_atomic(a.out, std::vector<uint8_t>(text.begin(), text.end()));
  const double total_ms = ms_since(start);
  std::printf("%zu images, %zu detections (batch %zu) -> %s\n", data.images.size(), results.size(), batch,
              a.out.c_str());
  std::printf("time: %.1f ms total, %.1f ms decoding images, %.1f ms detector (preprocess + engine), %.2f ms/image\n",
              total_ms, decode_ms, detect_ms, detect_ms / double(data.images.size()));
  for (auto [cls, count] : unknown)
    std::fprintf(stderr,
                 "kiln: warning: %lld detections have class %d, which is not a category id of %s/annotations.json\n",
                 static_cast<long long>(count), cls, a.dataset.c_str());
  return 0;
}
}  // namespace

Command add_eval_command(CLI::App& root) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* app = root.add_subcommand(
      "eval", "Run a detector engine (ending in EfficientNMS_TRT) over a COCO data set; write COCO results JSON");
  app->add_option("plan", args->plan, "plan file written by `kiln build`")->required();
  app->add_option("--dataset", args->dataset, "folder with annotations.json and the images (in images/ or beside it)")
      ->required()
      ->type_name("DIR");
  app->add_option("--out", args->out, "COCO results file to write")->capture_default_str()->type_name("FILE.json");
  app->add_option("--threshold", args->threshold, "drop detections scoring below this")->capture_default_str();
  add_preprocess_options(app, args->pre);
  add_plugins_option(app, args->plugins);
  return {app, [args] { return run_eval(*args); }};
}

}  // namespace kiln::cli
