#include "onnx/input_shapes.h"

#include "kiln/error.h"

namespace kiln::onnx_import {

namespace {
std::string dims_text(const std::vector<int64_t>& d) {
  std::string s;
  for (size_t k = 0; k < d.size(); ++k) s += (k ? "x" : "") + std::to_string(d[k]);
  return s;
}
}  // namespace

ir::Dims resolve_input_dims(const std::string& name, const onnx::TypeProto_Tensor& type, const ImportOptions& opts,
                            int* batch_axis) {
  *batch_axis = -1;
  const auto given = opts.input_shapes.find(name);
  const std::vector<int64_t>* want = given == opts.input_shapes.end() ? nullptr : &given->second;
  if (!type.has_shape()) {
    if (!want)
      throw_unsupported("graph input '" + name + "' has no shape: give it (kiln build --input-shape " + name +
                        "=AxBx..., ParseOptions::input_shapes)");
    for (int64_t d : *want)
      if (d < 1) throw_bad_input("input shape " + name + "=" + dims_text(*want) + ": every size must be at least 1");
    return ir::Dims(want->begin(), want->end());
  }
  const onnx::TensorShapeProto& shape = type.shape();
  const int rank = shape.dim_size();
  if (want) {
    if (int(want->size()) != rank)
      throw_bad_input("input shape " + name + "=" + dims_text(*want) + " has rank " + std::to_string(want->size()) +
                      ", but the model's input '" + name + "' has rank " + std::to_string(rank));
    for (int64_t d : *want)
      if (d < 1)
        throw_bad_input("input shape " + name + "=" + dims_text(*want) + ": every size must be at least 1");
  }
  ir::Dims dims;
  for (int k = 0; k < rank; ++k) {
    const auto& d = shape.dim(k);
    if (d.has_dim_value() && d.dim_value() >= 0) {
      if (want && (*want)[size_t(k)] != d.dim_value())
        throw_bad_input("input shape " + name + "=" + dims_text(*want) + " gives axis " + std::to_string(k) +
                        " size " + std::to_string((*want)[size_t(k)]) + ", but the model fixes it at " +
                        std::to_string(d.dim_value()));
      dims.push_back(d.dim_value());
      continue;
    }
    if (k == 0) {
      *batch_axis = 0;
      dims.push_back(opts.batch > 0 ? opts.batch : want ? (*want)[0] : 1);
      continue;
    }
    if (want) {
      dims.push_back((*want)[size_t(k)]);
      continue;
    }
    const std::string param = d.has_dim_param() ? "'" + d.dim_param() + "'" : "(unknown)";
    throw_unsupported("graph input '" + name + "' axis " + std::to_string(k) + " has symbolic size " + param +
                      ": give its shape (kiln build --input-shape " + name + "=AxBx..., "
                      "ParseOptions::input_shapes) or re-export the model with a fixed size for this axis");
  }
  return dims;
}

void check_input_shape_names(const ImportOptions& opts, const std::vector<ir::Value*>& inputs) {
  for (const auto& [name, dims] : opts.input_shapes) {
    bool found = false;
    std::string names;
    for (const ir::Value* v : inputs) {
      found = found || v->name == name;
      names += (names.empty() ? "'" : ", '") + v->name + "'";
    }
    if (!found)
      throw_bad_input("input shape given for '" + name + "', which is not a graph input; the inputs are " +
                      (names.empty() ? std::string("none") : names));
  }
}

}  // namespace kiln::onnx_import
