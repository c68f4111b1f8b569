// kiln_NonMaxSuppression: the standard ONNX NonMaxSuppression on the
// EfficientNMS_TRT kernels. The importer lowers an ONNX node to a Transpose
// of the scores ([N,C,B] -> [N,B,C]) and this plugin, whose fields are the
// node's constant inputs (see README.md, "ONNX NonMaxSuppression").
//
// Outputs: selected_indices int64 [R,3] with R = N * C * min(M, B), the most
// the op can select, and the number of rows it did select, int64 [1]. Rows
// are (image, class, box), ordered by image, then class, then selection
// order (score descending), as onnxruntime orders them; rows past the count
// are 0. The engine returns selected_indices cut to the count.
#include <algorithm>
#include <cmath>
#include <limits>

#include "plugins/efficient_nms/efficient_nms.h"
#include "plugins/efficient_nms/onnx_nms.h"

namespace kiln::plugins::efficient_nms {

namespace {

constexpr const char* kType = "kiln_NonMaxSuppression";
constexpr const char* kVersion = "1";

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// Where the detections the EfficientNMS stage writes live in the workspace,
// followed by that stage's own workspace.
struct Scratch {
  int32_t* num = nullptr;
  float* boxes = nullptr;
  float* scores = nullptr;
  int32_t* classes = nullptr;
  Extra extra;
  int32_t* class_start = nullptr;  // N * C, for the CUDA compaction
  void* nms = nullptr;
  size_t total = 0;
};

class OnnxNmsPlugin : public Plugin {
 public:
  explicit OnnxNmsPlugin(const OnnxNmsParams& p) : p_(p) {
    if (p_.max_per_class < 1) throw_bad_input("max_output_boxes_per_class must be >= 1 here, got " +
                                              std::to_string(p_.max_per_class));
    if (std::isnan(p_.score_threshold)) throw_bad_input("score_threshold is NaN");
    if (!(p_.iou_threshold >= 0.f && p_.iou_threshold <= 1.f))
      throw_bad_input("iou_threshold must be in [0, 1], got " + std::to_string(p_.iou_threshold));
    if (p_.center_point_box != 0 && p_.center_point_box != 1)
      throw_bad_input("center_point_box must be 0 or 1, got " + std::to_string(p_.center_point_box));
  }

  std::string type() const override { return kType; }
  std::string version() const override { return kVersion; }
  int num_outputs() const override { return 2; }
  std::vector<DataType> output_dtypes(const std::vector<DataType>&) const override {
    return {DataType::kInt64, DataType::kInt64};
  }
  std::vector<std::vector<int64_t>> output_shapes(const std::vector<std::vector<int64_t>>& in) const override {
    const Layout l = layout_of(in);
    return {{l.batch * per_image_rows(l), 3}, {1}};
  }
  bool supports_format(int pos, int num_inputs, DataType dtype, TensorFormat format) const override {
    if (format != TensorFormat::kLinear) return false;
    return dtype == (pos < num_inputs ? DataType::kFloat32 : DataType::kInt64);
  }
  std::vector<std::string> tactics() const override { return {"sorted_greedy"}; }

  void configure(const std::vector<PluginTensorDesc>& in, const std::vector<PluginTensorDesc>&) override {
    std::vector<std::vector<int64_t>> dims;
    for (auto& d : in) dims.push_back(d.dims);
    layout_ = layout_of(dims);
  }
  size_t workspace_size(const std::vector<PluginTensorDesc>&, const std::vector<PluginTensorDesc>&) const override {
    return carve(nullptr).total;
  }

  void execute(const std::vector<PluginTensorDesc>&, const std::vector<PluginTensorDesc>&, const void* const* in,
               void* const* out, void* workspace) const override {
    auto* sel = static_cast<int64_t*>(out[0]);
    auto* count = static_cast<int64_t*>(out[1]);
    const int64_t K = per_image_rows(layout_), rows = layout_.batch * K;
    std::fill(sel, sel + rows * 3, int64_t(0));
    *count = 0;
    if (K == 0) return;
    const Scratch s = carve(static_cast<uint8_t*>(workspace));
    run(core_params(layout_), layout_, static_cast<const float*>(in[0]), static_cast<const float*>(in[1]), nullptr,
        s.num, s.boxes, s.scores, s.classes, s.nms, s.extra);
    // Per image: order the detections by (class, rank within the class).
    int64_t total = 0;
    std::vector<int64_t> order;
    for (int64_t n = 0; n < layout_.batch; ++n) {
      const int32_t* cls = s.classes + n * K;
      const int32_t* rank = s.extra.class_rank + n * K;
      order.resize(size_t(s.num[n]));
      for (size_t j = 0; j < order.size(); ++j) order[j] = int64_t(j);
      std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return cls[a] != cls[b] ? cls[a] < cls[b] : rank[a] < rank[b];
      });
      for (int64_t j : order) {
        sel[total * 3 + 0] = n;
        sel[total * 3 + 1] = cls[j];
        sel[total * 3 + 2] = s.extra.box_index[n * K + j];
        ++total;
      }
    }
    *count = total;
  }

#ifdef KILN_WITH_CUDA
  void enqueue(const std::vector<PluginTensorDesc>&, const std::vector<PluginTensorDesc>&, const void* const* in,
               void* const* out, void* workspace, void* stream) const override {
    const int64_t K = per_image_rows(layout_);
    const Scratch s = carve(static_cast<uint8_t*>(workspace));
    if (K > 0)
      run_cuda(core_params(layout_), layout_, static_cast<const float*>(in[0]), static_cast<const float*>(in[1]),
               nullptr, s.num, s.boxes, s.scores, s.classes, s.nms, stream, s.extra);
    compact_onnx_cuda(layout_.batch, layout_.classes, K, s.num, s.classes, s.extra.box_index, s.extra.class_rank,
                      s.class_start, static_cast<int64_t*>(out[0]), static_cast<int64_t*>(out[1]), stream);
  }
#endif

  FieldCollection serialize_fields() const override {
    FieldCollection f;
    f.set_int("max_output_boxes_per_class", p_.max_per_class)
        .set_float("iou_threshold", p_.iou_threshold)
        .set_float("score_threshold", p_.score_threshold)
        .set_int("center_point_box", p_.center_point_box);
    return f;
  }
  std::unique_ptr<Plugin> clone() const override { return std::make_unique<OnnxNmsPlugin>(*this); }

 private:
  Params core_params(const Layout& l) const {
    Params p;
    p.score_threshold = p_.score_threshold;
    p.iou_threshold = p_.iou_threshold;
    p.max_output_boxes = std::max<int64_t>(per_image_rows(l), 1);
    p.box_coding = p_.center_point_box;
    p.max_per_class = p_.max_per_class;
    return p;
  }
  // Boxes [N,B,4] and scores [N,B,C] (the importer transposed them).
  Layout layout_of(const std::vector<std::vector<int64_t>>& in) const {
    if (in.size() != 2 || in[0].size() != 3)
      throw_bad_input("NonMaxSuppression takes boxes [N,B,4] and scores [N,C,B]");
    Params p;
    p.max_output_boxes = 1;
    return check_shapes(in, p);
  }
  // At most min(M, B) detections per class and image.
  int64_t per_image_rows(const Layout& l) const { return l.classes * std::min(p_.max_per_class, l.boxes); }

  Scratch carve(uint8_t* base) const {
    const Layout& l = layout_;
    const size_t n = size_t(l.batch), k = size_t(per_image_rows(l));
    Scratch s;
    size_t off = 0;
    auto take = [&](size_t bytes) {
      uint8_t* at = base ? base + off : nullptr;
      off += align256(bytes);
      return at;
    };
    s.num = reinterpret_cast<int32_t*>(take(n * 4));
    s.boxes = reinterpret_cast<float*>(take(n * k * 16));
    s.scores = reinterpret_cast<float*>(take(n * k * 4));
    s.classes = reinterpret_cast<int32_t*>(take(n * k * 4));
    s.extra.box_index = reinterpret_cast<int32_t*>(take(n * k * 4));
    s.extra.class_rank = reinterpret_cast<int32_t*>(take(n * k * 4));
    s.class_start = reinterpret_cast<int32_t*>(take(n * size_t(l.classes) * 4));
    size_t nms = 0;
    if (k > 0) {
      nms = workspace_bytes(l, core_params(l));
#ifdef KILN_WITH_CUDA
      nms = std::max(nms, cuda_workspace_bytes(l, core_params(l)));
#endif
    }
    s.nms = take(nms);
    s.total = off;
    return s;
  }

  OnnxNmsParams p_;
  Layout layout_;
};

class OnnxNmsCreator : public PluginCreator {
 public:
  std::string type() const override { return kType; }
  std::string version() const override { return kVersion; }
  std::vector<FieldDecl> field_decls() const override {
    return {{"max_output_boxes_per_class", FieldType::kInt, 1, true},
            {"iou_threshold", FieldType::kFloat, 1, true},
            {"score_threshold", FieldType::kFloat, 1, true},
            {"center_point_box", FieldType::kInt, 1, false}};
  }
  std::unique_ptr<Plugin> create(const std::string&, const FieldCollection& f) const override {
    OnnxNmsParams p;
    p.max_per_class = f.get_int("max_output_boxes_per_class", 0);
    p.iou_threshold = f.get_float("iou_threshold", 0.f);
    p.score_threshold = f.get_float("score_threshold", -std::numeric_limits<float>::infinity());
    p.center_point_box = f.get_int("center_point_box", 0);
    return std::make_unique<OnnxNmsPlugin>(p);
  }
};

}  // namespace

const char* onnx_nms_type() { return kType; }

void register_onnx_nms(PluginRegistry& registry) { registry.add(std::make_unique<OnnxNmsCreator>()); }

}  // namespace kiln::plugins::efficient_nms
