// ExampleIdentity: the smallest useful kiln plugin. It copies its input to its
// output, any dtype and shape, and carries one optional string field ("note")
// to show how fields travel from the ONNX node to the plan and back.
// Depends on include/kiln/plugin.h only; load it with `kiln ... --plugins`.
#include <cstring>

#include "kiln/plugin.h"

namespace {

class IdentityPlugin : public kiln::Plugin {
 public:
  explicit IdentityPlugin(std::string note) : note_(std::move(note)) {}

  std::string type() const override { return "ExampleIdentity"; }
  std::string version() const override { return "1"; }

  int num_outputs() const override { return 1; }
  std::vector<kiln::DataType> output_dtypes(const std::vector<kiln::DataType>& in) const override {
    return {in.at(0)};
  }
  std::vector<std::vector<int64_t>> output_shapes(const std::vector<std::vector<int64_t>>& in) const override {
    if (in.size() != 1)
      throw kiln::Error(kiln::ErrorCode::kBadInput,
                        "ExampleIdentity takes exactly one input, got " + std::to_string(in.size()));
    // kiln gives shapes with the batch as the leading dim; a scalar has none.
    if (in[0].empty())
      throw kiln::Error(kiln::ErrorCode::kBadInput, "ExampleIdentity needs an input with a batch dimension");
    return {in[0]};
  }
  bool supports_format(int pos, int num_inputs, kiln::DataType dtype, kiln::TensorFormat format) const override {
    (void)pos, (void)num_inputs, (void)dtype;
    return format == kiln::TensorFormat::kLinear;  // every dtype, row-major
  }

  void configure(const std::vector<kiln::PluginTensorDesc>& in, const std::vector<kiln::PluginTensorDesc>&) override {
    // Element sizes come from the dtype; kiln's dtype_size() lives in the kiln
    // binary, which a plugin library does not link, so spell them out.
    static const size_t sizes[] = {4, 2, 1, 1, 4, 8, 1};  // kiln::DataType order
    bytes_ = sizes[static_cast<size_t>(in[0].dtype)];
    for (int64_t d : in[0].dims) bytes_ *= size_t(d);
  }

  void execute(const std::vector<kiln::PluginTensorDesc>&, const std::vector<kiln::PluginTensorDesc>&,
               const void* const* inputs, void* const* outputs, void*) const override {
    if (bytes_) std::memcpy(outputs[0], inputs[0], bytes_);
  }

  kiln::FieldCollection serialize_fields() const override {
    kiln::FieldCollection f;
    if (!note_.empty()) f.set_string("note", note_);
    return f;
  }
  std::unique_ptr<kiln::Plugin> clone() const override { return std::make_unique<IdentityPlugin>(*this); }

 private:
  std::string note_;
  size_t bytes_ = 0;
};

class IdentityCreator : public kiln::PluginCreator {
 public:
  std::string type() const override { return "ExampleIdentity"; }
  std::string version() const override { return "1"; }
  std::vector<kiln::FieldDecl> field_decls() const override {
    return {{"note", kiln::FieldType::kString, -1, false}};
  }
  std::unique_ptr<kiln::Plugin> create(const std::string&, const kiln::FieldCollection& fields) const override {
    return std::make_unique<IdentityPlugin>(fields.get_string("note", ""));
  }
};

}  // namespace

KILN_REGISTER_PLUGIN(IdentityCreator);
