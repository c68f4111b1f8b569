// INT8 precision assignment; see assign_int8.h for the rules.
#include "quant/assign_int8.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "ir/attribute.h"
#include "ir/op_registry.h"
#include "kiln/error.h"
#include "quant/weights.h"

namespace kiln::quant {

namespace {

bool is_graph_output(const ir::Graph& g, const ir::Value* v) {
  for (const ir::Value* o : g.outputs)
    if (o == v) return true;
  return false;
}

void reinfer(ir::Node& n) {
  const ir::OpDef* def = ir::OpRegistry::global().find(n.domain, n.op_type);
  if (!def) throw_internal("assign_int8: no shape inference for " + n.label());
  def->infer(n);
}

class Assigner {
 public:
  Assigner(ir::Graph& g, const std::map<std::string, float>& scales, const Int8Options& o)
      : g_(g), scales_(scales), o_(o) {}

  Int8Assignment run() {
    for (const auto& [name, s] : scales_)
      if (!std::isfinite(s) || s <= 0.f)
        throw_bad_input("INT8 scale of tensor '" + name + "' is " + std::to_string(s) +
                        "; scales must be finite and > 0 (recalibrate or fix the cache)");
    for (auto& n : g_.nodes()) {
      std::string why;
      if (n->op_type == "Conv" && n->domain.empty()) {
        if (conv_eligible(*n, why)) qconvs_.insert(n.get());
        else r_.kept_float.push_back(n->name + ": " + why);
      } else if (n->op_type == "MaxPool" && n->domain.empty() && pool_eligible(*n)) {
        pools_.insert(n.get());
      }
    }
    mark_int8_readers();
    // Snapshot: the rewrite adds Reformat nodes.
    std::vector<ir::Node*> order;
    for (auto& n : g_.nodes()) order.push_back(n.get());
    for (ir::Node* n : order) {
      if (qconvs_.count(n)) to_qconv(*n);
      else if (pools_.count(n) && int8_.count(n->in(0))) to_int8_pool(*n);
    }
    g_.topo_sort();
    return r_;
  }

 private:
  bool conv_eligible(const ir::Node& n, std::string& why) const {
    const ir::Value* x = n.in(0);
    const ir::Value* w = n.in(1);
    const ir::Value* b = n.in(2);
    if (o_.keep_float.count(n.name)) {
      auto it = o_.keep_reason.find(n.name);
      return why = it != o_.keep_reason.end() ? it->second : "kept float by request", false;
    }
    if (n.path != "kernel") return why = "runs as " + n.path, false;
    if (!x || x->is_constant() || x->dtype != DataType::kFloat32 || x->dims.size() != 4)
      return why = "input is not a 4-D fp32 activation", false;
    if (!w || !w->is_constant() || w->dtype != DataType::kFloat32)
      return why = "weights are not constant fp32", false;
    if (b && (!b->is_constant() || b->dtype != DataType::kFloat32)) return why = "bias is not constant fp32", false;
    if (n.outputs.size() != 1 || !n.outputs[0] || n.outputs[0]->dtype != DataType::kFloat32)
      return why = "output is not fp32", false;
    if (w->dims.size() != 4) return why = "weights are not 4-D", false;
    // 127 * 127 * taps must fit int32 (QConv refuses longer reductions).
    if (w->dims[1] * w->dims[2] * w->dims[3] > 132104) return why = "reduction too long for int32 sums", false;
    if (!scales_.count(x->name)) return why = "no scale for input '" + x->name + "'", false;
    return true;
  }

  bool pool_eligible(const ir::Node& n) const {
    if (o_.keep_float.count(n.name) || n.path != "kernel") return false;
    const ir::Value* x = n.in(0);
    if (!x || x->dims.size() != 4) return false;
    for (size_t k = 1; k < n.outputs.size(); ++k)
      if (n.outputs[k]) return false;  // Indices output
    return n.outputs.size() >= 1 && n.outputs[0];
  }

  // accepts_[v]: every reader of v takes int8 (QConv input or residual, or
  // a MaxPool whose own output takes int8). Readers come later in
  // topological order, so a reverse walk sees them first.
  void mark_int8_readers() {
    const auto& nodes = g_.nodes();
    for (auto it = nodes.rbegin(); it != nodes.rend(); ++it)
      for (ir::Value* v : (*it)->outputs)
        if (v) accepts_[v] = takes_int8(v);
  }

  bool takes_int8(const ir::Value* v) const {
    if (is_graph_output(g_, v)) return false;
    const auto readers = g_.consumers(v);
    if (readers.empty()) return false;
    for (const ir::Node* c : readers)
      for (size_t k = 0; k < c->inputs.size(); ++k) {
        if (c->inputs[k] != v) continue;
        const bool ok = (qconvs_.count(c) && (k == 0 || k == 3)) ||
                        (pools_.count(c) && k == 0 && accepts_.count(c->outputs[0]) && accepts_.at(c->outputs[0]));
        if (!ok) return false;
      }
    return true;
  }

  float scale_of(const ir::Value* v) const {
    auto it = scales_.find(v->name);
    if (it == scales_.end()) throw_internal("assign_int8: no scale for '" + v->name + "'");
    return it->second;
  }

  // v as int8: itself when it already is, else through one shared
  // quantizing Reformat per tensor.
  ir::Value* quantized(ir::Value* v, float& scale) {
    if (int8_.count(v)) return scale = int8_.at(v), v;
    scale = scale_of(v);
    auto it = quantized_.find(v);
    if (it != quantized_.end()) return it->second;
    ir::Value* q = g_.add_value(g_.unique_name(v->name + "/int8"));
    ir::Node* r = g_.add_node("Reformat", "quantize:" + v->name, {v}, {q});
    r->domain = "kiln";
    r->attrs["to"] = ir::int_attr(int64_t(DataType::kInt8));
    r->attrs["scale"] = ir::float_attr(scale);
    r->precision = DataType::kInt8;
    reinfer(*r);
    q->batch_axis = v->batch_axis;
    ++r_.reformats;
    int8_[q] = scale;
    return quantized_[v] = q;
  }

  void to_qconv(ir::Node& n) {
    ir::Value* y = n.outputs[0];
    const bool int8_out = accepts_[y] && scales_.count(y->name);
    float x_scale = 0.f;
    n.inputs[0] = quantized(n.inputs[0], x_scale);

    const ir::Value* w = n.in(1);
    const ir::Tensor& wt = *w->constant;
    const std::vector<float> ws = per_channel_weight_scales(wt.data<float>(), wt.dims(), w->name);
    ir::Tensor wq(DataType::kInt8, wt.dims());
    const int64_t per = wt.numel() / wt.dims()[0];
    for (int64_t i = 0; i < wt.numel(); ++i) {
      const float q = std::nearbyint(wt.data<float>()[i] / ws[size_t(i / per)]);
      wq.data<int8_t>()[i] = int8_t(std::fmax(-127.f, std::fmin(127.f, q)));
    }
    n.inputs[1] = g_.add_constant(g_.unique_name(w->name + "/int8"), std::move(wq));

    ir::Value* z = n.in(3);
    if (z && int8_.count(z)) n.attrs["z_scale"] = ir::float_attr(int8_.at(z));
    n.op_type = "QConv";
    n.domain = "kiln";
    n.precision = DataType::kInt8;
    n.attrs["x_scale"] = ir::float_attr(x_scale);
    ir::Attribute wa;
    wa.kind = ir::Attribute::Kind::kFloats;
    wa.floats = ws;
    n.attrs["w_scales"] = wa;
    n.attrs["to"] = ir::int_attr(int64_t(int8_out ? DataType::kInt8 : DataType::kFloat32));
    if (int8_out) {
      n.attrs["y_scale"] = ir::float_attr(scale_of(y));
      int8_[y] = scale_of(y);
    }
    reinfer(n);
    ++r_.quantized;
  }

  void to_int8_pool(ir::Node& n) {
    n.precision = DataType::kInt8;
    reinfer(n);
    int8_[n.outputs[0]] = int8_.at(n.in(0));
    ++r_.int8_pools;
  }

  ir::Graph& g_;
  const std::map<std::string, float>& scales_;
  const Int8Options& o_;
  Int8Assignment r_;
  std::set<const ir::Node*> qconvs_, pools_;
  std::map<const ir::Value*, bool> accepts_;
  std::map<const ir::Value*, float> int8_;  // int8 values and their scales
  std::map<ir::Value*, ir::Value*> quantized_;
};

}  // namespace

Int8Assignment assign_int8(ir::Graph& g, const std::map<std::string, float>& scales, const Int8Options& opts) {
  return Assigner(g, scales, opts).run();
}

std::map<std::string, float> recorded_qdq_scales(const ir::Graph& g) {
  static const std::string prefix = "int8_scale/";
  std::map<std::string, float> out;
  for (const auto& [key, text] : g.metadata) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    uint32_t bits = 0;
    if (text.size() != 8 || std::sscanf(text.c_str(), "%8x", &bits) != 1)
      throw_bad_input("graph metadata '" + key + "' holds '" + text + "', not 8 hex digits of a float");
    float s;
    std::memcpy(&s, &bits, sizeof s);
    out[key.substr(prefix.size())] = s;
  }
  return out;
}

}  // namespace kiln::quant
