#include "calib_source.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <set>
#include <tuple>

#include "image.h"
#include "npy.h"

namespace kiln::cli {

namespace {
namespace fs = std::filesystem;

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_image_file(const fs::path& p) {
  static const std::set<std::string> exts = {".png", ".jpg", ".jpeg", ".bmp", ".ppm"};
  return exts.count(lower(p.extension().string())) > 0;
}

bool is_npy_file(const fs::path& p) { return lower(p.extension().string()) == ".npy"; }

std::string type_text(DataType dt, const std::vector<int64_t>& shape) { return dtype_name(dt) + shape_str(shape); }

std::string input_list(const std::vector<TensorInfo>& inputs) {
  std::string s;
  for (const TensorInfo& t : inputs) s += (s.empty() ? "'" : ", '") + t.name + "' " + type_text(t.dtype, t.shape);
  return s.empty() ? "none" : s;
}

// The file name an input's batch is stored under: '/' cannot be in one.
std::string input_file_name(const std::string& input) {
  std::string s = input;
  std::replace(s.begin(), s.end(), '/', '_');
  return s + ".npy";
}

int capped(size_t batches, int max_batches) {
  const size_t n = max_batches > 0 ? std::min(batches, size_t(max_batches)) : batches;
  return int(std::min<size_t>(n, size_t(1) << 30));
}

HostTensor load_checked(const fs::path& file, const TensorInfo& input) {
  HostTensor t = npy::load(file.string());
  if (t.dtype != input.dtype || t.shape != input.shape)
    throw_bad_input("calibration batch '" + file.string() + "' holds " + type_text(t.dtype, t.shape) +
                    " but the network's input '" + input.name + "' is " + type_text(input.dtype, input.shape) +
                    ": write batches of exactly that dtype and shape");
  return t;
}

// N images a batch into the single [N,3,H,W] input.
class ImageCalibrator : public FolderCalibrator {
 public:
  ImageCalibrator(std::vector<fs::path> files, const TensorInfo& input, const Normalization& norm, int max_batches)
      : files_(std::move(files)), input_(input), norm_(norm) {
    per_batch_ = size_t(input.shape[0]);
    batches_ = capped((files_.size() + per_batch_ - 1) / per_batch_, max_batches);
  }
  bool next_batch(std::map<std::string, HostTensor>& inputs) override {
    if (given_ >= batches_) return false;
    const int H = int(input_.shape[2]), W = int(input_.shape[3]);
    HostTensor x = HostTensor::zeros(DataType::kFloat32, input_.shape);
    const size_t plane = size_t(3) * size_t(H) * size_t(W);
    for (size_t s = 0; s < per_batch_; ++s) {
      // Past the last image the batch starts over at the first ones.
      const fs::path& f = files_[(size_t(given_) * per_batch_ + s) % files_.size()];
      to_chw_float(load_image(f.string()), W, H, norm_, x.as<float>() + s * plane);
    }
    inputs[input_.name] = std::move(x);
    ++given_;
    return true;
  }
  int batch_count() const override { return batches_; }
  int batches_given() const override { return given_; }
  bool rewind() override { return given_ = 0, true; }
  std::string describe() const override {
    return std::to_string(files_.size()) + " images, " + std::to_string(per_batch_) + " a batch";
  }

 private:
  std::vector<fs::path> files_;
  TensorInfo input_;
  Normalization norm_;
  size_t per_batch_ = 1;
  int batches_ = 0, given_ = 0;
};

// One .npy file per batch of the single input.
class NpyCalibrator : public FolderCalibrator {
 public:
  NpyCalibrator(std::vector<fs::path> files, const TensorInfo& input, int max_batches)
      : files_(std::move(files)), input_(input), batches_(capped(files_.size(), max_batches)) {}
  bool next_batch(std::map<std::string, HostTensor>& inputs) override {
    if (given_ >= batches_) return false;
    inputs[input_.name] = load_checked(files_[size_t(given_)], input_);
    ++given_;
    return true;
  }
  int batch_count() const override { return batches_; }
  int batches_given() const override { return given_; }
  bool rewind() override { return given_ = 0, true; }
  std::string describe() const override { return std::to_string(files_.size()) + " .npy batches"; }

 private:
  std::vector<fs::path> files_;
  TensorInfo input_;
  int batches_ = 0, given_ = 0;
};

// One subfolder per batch, <input>.npy for every input. The file names are
// checked up front, so a missing file fails before a long run.
class SubfolderCalibrator : public FolderCalibrator {
 public:
  SubfolderCalibrator(std::vector<fs::path> folders, std::vector<TensorInfo> inputs, int max_batches)
      : folders_(std::move(folders)), inputs_(std::move(inputs)), batches_(capped(folders_.size(), max_batches)) {
    std::set<std::string> expected;
    for (const TensorInfo& t : inputs_)
      if (!expected.insert(input_file_name(t.name)).second)
        throw_usage("two network inputs are both stored as '" + input_file_name(t.name) +
                    "' in a batch folder ('/' becomes '_'); calibrate this network from code");
    for (int b = 0; b < batches_; ++b) {
      const fs::path& dir = folders_[size_t(b)];
      for (const std::string& name : expected)
        if (!fs::is_regular_file(dir / name))
          throw_bad_input("calibration batch folder '" + dir.string() + "' lacks '" + name +
                          "': each batch folder holds one <input name>.npy per network input (" + input_list(inputs_) +
                          ")");
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string file = e.path().filename().string();
        if (is_npy_file(e.path()) && !expected.count(file))
          throw_bad_input("calibration batch folder '" + dir.string() + "' holds '" + file +
                          "', which names no network input (the inputs are " + input_list(inputs_) + ")");
      }
      if (ec) throw_bad_input("cannot read calibration batch folder '" + dir.string() + "': " + ec.message());
    }
  }
  bool next_batch(std::map<std::string, HostTensor>& inputs) override {
    if (given_ >= batches_) return false;
    const fs::path& dir = folders_[size_t(given_)];
    for (const TensorInfo& t : inputs_) inputs[t.name] = load_checked(dir / input_file_name(t.name), t);
    ++given_;
    return true;
  }
  int batch_count() const override { return batches_; }
  int batches_given() const override { return given_; }
  bool rewind() override { return given_ = 0, true; }
  std::string describe() const override { return std::to_string(folders_.size()) + " batch folders"; }

 private:
  std::vector<fs::path> folders_;
  std::vector<TensorInfo> inputs_;
  int batches_ = 0, given_ = 0;
};

Normalization normalization(const CalibArgs& a) {
  Normalization n;
  for (auto [vals, dst, name] : {std::tuple{&a.mean, n.mean, "--mean"}, std::tuple{&a.std, n.std, "--std"}}) {
    if (vals->empty()) continue;
    if (vals->size() != 3) throw_usage(std::string(name) + " takes 3 comma-separated values (R,G,B)");
    std::copy(vals->begin(), vals->end(), dst);
  }
  if (a.scale_opt && a.scale_opt->count()) n.scale = a.scale;
  n.bgr = a.bgr;
  for (float s : n.std)
    if (!(s != 0.0f) || !std::isfinite(s)) throw_usage("--std values must be finite and non-zero");
  if (!std::isfinite(n.scale)) throw_usage("--scale must be finite");
  return n;
}

bool has_normalization_flags(const CalibArgs& a) {
  return !a.mean.empty() || !a.std.empty() || (a.scale_opt && a.scale_opt->count()) || a.bgr;
}

std::unique_ptr<FolderCalibrator> open_folder(const CalibArgs& a, const std::vector<TensorInfo>& inputs) {
  const fs::path dir(a.dir);
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw_bad_input("calibration folder '" + a.dir + "' does not exist");
  if (!fs::is_directory(dir, ec))
    throw_usage("--calib '" + a.dir + "' is not a folder: give a folder of images, .npy batches or batch folders");
  std::vector<fs::path> images, npys, folders;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const fs::path& p = e.path();
    if (p.filename().string().rfind('.', 0) == 0) continue;  // hidden
    std::error_code ec2;
    if (e.is_directory(ec2)) folders.push_back(p);
    else if (is_image_file(p)) images.push_back(p);
    else if (is_npy_file(p)) npys.push_back(p);
  }
  if (ec) throw_bad_input("cannot read calibration folder '" + a.dir + "': " + ec.message());
  const int kinds = int(!images.empty()) + int(!npys.empty()) + int(!folders.empty());
  if (kinds == 0)
    throw_usage("calibration folder '" + a.dir + "' holds no image files (.png .jpg .jpeg .bmp .ppm), .npy files " +
                "or batch subfolders");
  if (kinds > 1)
    throw_usage("calibration folder '" + a.dir + "' mixes " + std::to_string(images.size()) + " image files, " +
                std::to_string(npys.size()) + " .npy files and " + std::to_string(folders.size()) +
                " subfolders: keep one kind of batch in it");
  auto by_name = [](const fs::path& x, const fs::path& y) { return x.filename().string() < y.filename().string(); };
  for (auto* v : {&images, &npys, &folders}) std::sort(v->begin(), v->end(), by_name);

  if (!images.empty()) {
    const bool fits = inputs.size() == 1 && inputs[0].dtype == DataType::kFloat32 && inputs[0].shape.size() == 4 &&
                      inputs[0].shape[0] >= 1 && inputs[0].shape[1] == 3 && inputs[0].shape[2] >= 1 &&
                      inputs[0].shape[3] >= 1;
    if (!fits)
      throw_usage("calibration folder '" + a.dir + "' holds images, which feed a network with one float32 " +
                  "[N,3,H,W] input; this network's inputs are " + input_list(inputs) +
                  ": give a folder of .npy batches instead");
    return std::make_unique<ImageCalibrator>(std::move(images), inputs[0], normalization(a), a.max_batches);
  }
  if (has_normalization_flags(a))
    throw_usage("--mean, --std, --scale and --bgr preprocess image files; calibration folder '" + a.dir +
                "' holds .npy batches, which are fed as they are");
  if (!npys.empty()) {
    if (inputs.size() != 1)
      throw_usage("calibration folder '" + a.dir + "' holds .npy files, one batch each for a single input, but the " +
                  "network has " + std::to_string(inputs.size()) + " inputs (" + input_list(inputs) +
                  "): put each batch in a subfolder holding <input name>.npy per input");
    return std::make_unique<NpyCalibrator>(std::move(npys), inputs[0], a.max_batches);
  }
  return std::make_unique<SubfolderCalibrator>(std::move(folders), inputs, a.max_batches);
}

}  // namespace

void add_calib_options(CLI::App* app, CalibArgs& a) {
  app->add_option("--calib", a.dir,
                  "calibration data: a folder of images (.png .jpg .bmp .ppm; sorted by name, N a batch, a last "
                  "partial batch filled up with the first images), of .npy files (one batch each, single-input "
                  "networks) or of batch subfolders holding <input>.npy per input")
      ->type_name("DIR");
  app->add_option("--calib-method", a.method, "threshold per tensor: KL-divergence search, max |x|, or a percentile of |x|")
      ->check(CLI::IsMember({"entropy", "minmax", "percentile"}))
      ->capture_default_str();
  a.percentile_opt = app->add_option("--calib-percentile", a.percentile, "percentile of |x| for --calib-method percentile")
                         ->type_name("P")
                         ->capture_default_str();
  app->add_option("--calib-cache", a.cache,
                  "calibration cache: written after calibrating from --calib, read instead of calibrating without it")
      ->type_name("FILE");
  app->add_option("--calib-batches", a.max_batches, "use at most N batches of --calib")
      ->type_name("N")
      ->check(CLI::PositiveNumber);
  app->add_option("--mean", a.mean, "image calibration: per-channel mean, after scaling")
      ->delimiter(',')
      ->expected(3)
      ->type_name("R,G,B");
  app->add_option("--std", a.std, "image calibration: per-channel std, after scaling")
      ->delimiter(',')
      ->expected(3)
      ->type_name("R,G,B");
  a.scale_opt = app->add_option("--scale", a.scale, "image calibration: multiplies 0..255 pixels first (default 1/255)");
  app->add_flag("--bgr", a.bgr, "image calibration: feed channels in BGR order");
}

CalibSetup make_calibration(const CalibArgs& a, const Network& network) {
  if (a.dir.empty() && a.cache.empty())
    throw_usage("INT8 needs calibration data: give --calib DIR (images or .npy batches) or --calib-cache FILE "
                "written by an earlier calibration");
  CalibSetup s;
  if (a.method == "entropy") s.config.method = CalibrationMethod::kEntropy;
  else if (a.method == "minmax") s.config.method = CalibrationMethod::kMinMax;
  else if (a.method == "percentile") s.config.method = CalibrationMethod::kPercentile;
  else throw_usage("--calib-method must be entropy, minmax or percentile, got '" + a.method + "'");
  const bool percentile_given = a.percentile_opt && a.percentile_opt->count();
  if (percentile_given && s.config.method != CalibrationMethod::kPercentile)
    throw_usage("--calib-percentile applies to --calib-method percentile");
  if (!(a.percentile > 0.0 && a.percentile <= 100.0))
    throw_usage("--calib-percentile must be in (0, 100], got " + std::to_string(a.percentile));
  s.config.percentile = a.percentile;
  s.config.cache_path = a.cache;
  s.config.progress = ::isatty(STDERR_FILENO) == 1;
  if (a.dir.empty()) {
    // The cache's scales were computed already: calibration flags would do nothing.
    if (a.max_batches > 0 || percentile_given || a.method != "entropy" || has_normalization_flags(a))
      throw_usage("--calib-method, --calib-percentile, --calib-batches and image preprocessing flags apply when "
                  "calibrating from --calib DIR; the scales in --calib-cache '" + a.cache + "' are used as they are");
    return s;
  }
  s.calibrator = open_folder(a, summarize(network).inputs);
  s.config.calibrator = s.calibrator.get();
  return s;
}

}  // namespace kiln::cli
