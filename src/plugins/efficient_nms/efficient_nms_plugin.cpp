// The EfficientNMS_TRT plugin and its creator (version "1", namespace "").
// Field names and meanings follow TensorRT's plugin of the same name, so
// models exported for TensorRT import unchanged. One tactic serves both
// devices: execute runs the CPU reference, enqueue (CUDA builds) the CUDA
// kernels, which select the same boxes.
#include <algorithm>

#include "plugins/efficient_nms/efficient_nms.h"
#include "plugins/efficient_nms/onnx_nms.h"

namespace kiln::plugins::efficient_nms {

namespace {

constexpr const char* kType = "EfficientNMS_TRT";
constexpr const char* kVersion = "1";

int64_t flag(const FieldCollection& f, const char* name) {
  const int64_t v = f.get_int(name, 0);
  if (v != 0 && v != 1) throw_bad_input(std::string(name) + " must be 0 or 1, got " + std::to_string(v));
  return v;
}

class EfficientNmsPlugin : public Plugin {
 public:
  explicit EfficientNmsPlugin(const Params& p) : p_(p) { check_params(p_); }

  std::string type() const override { return kType; }
  std::string version() const override { return kVersion; }

  int num_outputs() const override { return 4; }
  std::vector<DataType> output_dtypes(const std::vector<DataType>&) const override {
    return {DataType::kInt32, DataType::kFloat32, DataType::kFloat32, DataType::kInt32};
  }
  std::vector<std::vector<int64_t>> output_shapes(const std::vector<std::vector<int64_t>>& in) const override {
    return efficient_nms::output_shapes(check_shapes(in, p_), p_);
  }
  bool supports_format(int pos, int num_inputs, DataType dtype, TensorFormat format) const override {
    if (format != TensorFormat::kLinear) return false;
    if (pos < num_inputs) return dtype == DataType::kFloat32;
    const int out = pos - num_inputs;
    return dtype == ((out == 0 || out == 3) ? DataType::kInt32 : DataType::kFloat32);
  }

  std::vector<std::string> tactics() const override { return {"sorted_greedy"}; }

  void configure(const std::vector<PluginTensorDesc>& in, const std::vector<PluginTensorDesc>&) override {
    std::vector<std::vector<int64_t>> dims;
    for (auto& d : in) dims.push_back(d.dims);
    layout_ = check_shapes(dims, p_);
  }
  // The plugin cannot tell which device will run it, so it asks for enough for either.
  size_t workspace_size(const std::vector<PluginTensorDesc>&, const std::vector<PluginTensorDesc>&) const override {
#ifdef KILN_WITH_CUDA
    return std::max(workspace_bytes(layout_, p_), cuda_workspace_bytes(layout_, p_));
#else
    return workspace_bytes(layout_, p_);
#endif
  }

  void execute(const std::vector<PluginTensorDesc>&, const std::vector<PluginTensorDesc>&, const void* const* in,
               void* const* out, void* workspace) const override {
    run(p_, layout_, static_cast<const float*>(in[0]), static_cast<const float*>(in[1]),
        layout_.anchors ? static_cast<const float*>(in[2]) : nullptr, static_cast<int32_t*>(out[0]),
        static_cast<float*>(out[1]), static_cast<float*>(out[2]), static_cast<int32_t*>(out[3]), workspace);
  }

#ifdef KILN_WITH_CUDA
  void enqueue(const std::vector<PluginTensorDesc>&, const std::vector<PluginTensorDesc>&, const void* const* in,
               void* const* out, void* workspace, void* stream) const override {
    run_cuda(p_, layout_, static_cast<const float*>(in[0]), static_cast<const float*>(in[1]),
             layout_.anchors ? static_cast<const float*>(in[2]) : nullptr, static_cast<int32_t*>(out[0]),
             static_cast<float*>(out[1]), static_cast<float*>(out[2]), static_cast<int32_t*>(out[3]), workspace,
             stream);
  }
#endif

  FieldCollection serialize_fields() const override {
    FieldCollection f;
    f.set_float("score_threshold", p_.score_threshold)
        .set_float("iou_threshold", p_.iou_threshold)
        .set_int("max_output_boxes", p_.max_output_boxes)
        .set_int("background_class", p_.background_class)
        .set_int("score_activation", p_.score_activation ? 1 : 0)
        .set_int("class_agnostic", p_.class_agnostic ? 1 : 0)
        .set_int("box_coding", p_.box_coding);
    return f;
  }
  std::unique_ptr<Plugin> clone() const override { return std::make_unique<EfficientNmsPlugin>(*this); }

 private:
  Params p_;
  Layout layout_;
};

class EfficientNmsCreator : public PluginCreator {
 public:
  std::string type() const override { return kType; }
  std::string version() const override { return kVersion; }
  std::vector<FieldDecl> field_decls() const override {
    return {{"score_threshold", FieldType::kFloat, 1, true},  {"iou_threshold", FieldType::kFloat, 1, true},
            {"max_output_boxes", FieldType::kInt, 1, true},   {"background_class", FieldType::kInt, 1, false},
            {"score_activation", FieldType::kInt, 1, false},  {"class_agnostic", FieldType::kInt, 1, false},
            {"box_coding", FieldType::kInt, 1, false}};
  }
  std::unique_ptr<Plugin> create(const std::string&, const FieldCollection& f) const override {
    Params p;
    p.score_threshold = f.get_float("score_threshold", 0.f);
    p.iou_threshold = f.get_float("iou_threshold", 0.5f);
    p.max_output_boxes = f.get_int("max_output_boxes", 100);
    p.background_class = f.get_int("background_class", -1);
    p.score_activation = flag(f, "score_activation") != 0;
    p.class_agnostic = flag(f, "class_agnostic") != 0;
    p.box_coding = f.get_int("box_coding", 0);
    return std::make_unique<EfficientNmsPlugin>(p);
  }
};

}  // namespace

void register_plugin(PluginRegistry& registry) {
  registry.add(std::make_unique<EfficientNmsCreator>());
  register_onnx_nms(registry);
}

}  // namespace kiln::plugins::efficient_nms
