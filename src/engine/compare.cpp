// compare_layers (kiln/compare.h): an engine's tensors against kiln's CPU
// FP32 run of the same model, tensor by tensor.
//
// Both sides keep every tensor by making it a graph output (the engine then
// gives it its own memory and returns it), as calibration does. Names line
// up because the builder keeps a fused layer's output name; what only the
// plan has (quantize / reformat layers) is listed as skipped.
#include "kiln/compare.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "backends/cpu/kernel.h"
#include "builder/clone.h"
#include "builder/network.h"
#include "builder/optimize.h"
#include "builder/prune.h"
#include "engine/cpu_engine.h"
#include "engine/logging.h"
#include "engine/plan.h"
#include "engine/plan_target.h"
#include "engine/profile_plan.h"
#include "ir/op_registry.h"
#ifdef KILN_WITH_CUDA
#include "backends/cuda/kernel.h"
#include "engine/cuda/cuda_engine.h"
#endif

namespace kiln {

namespace {

std::string type_str(DataType dt, const std::vector<int64_t>& dims) { return dtype_name(dt) + shape_str(dims); }

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

bool is_output(const ir::Graph& g, const ir::Value* v) {
  return std::find(g.outputs.begin(), g.outputs.end(), v) != g.outputs.end();
}

// The batch the inputs carry along the graph inputs' batch axis (0: none).
int inputs_batch(const ir::Graph& g, const std::map<std::string, HostTensor>& inputs) {
  for (const ir::Value* v : g.inputs) {
    auto it = inputs.find(v->name);
    if (v->batch_axis >= 0 && it != inputs.end() && int(it->second.shape.size()) > v->batch_axis)
      return int(it->second.shape[size_t(v->batch_axis)]);
  }
  return 0;
}

// Whether this process can run a plan for `device`; as Runtime::deserialize.
// The plan's graph: a single plan's, or the specialization of a profile
// plan at the inputs' batch.
std::unique_ptr<ir::Graph> plan_graph(const std::vector<uint8_t>& bytes, const std::string& origin,
                                      const std::map<std::string, HostTensor>& inputs, std::string* device) {
  if (plan::has_profile_magic(bytes.data(), bytes.size())) {
    plan::ProfilePlan p = plan::read_profile_plan(bytes.data(), bytes.size(), origin);
    check_plan_target(p.device, p.kiln_version, origin);
    *device = p.device;
    const int b = inputs_batch(*p.specs.back().graph, inputs);
    std::string list;
    for (auto& s : p.specs) {
      if (s.batch == b) return std::move(s.graph);
      list += (list.empty() ? "" : ", ") + std::to_string(s.batch);
    }
    throw_usage("plan " + origin + " is a batch-profile plan specialized for batch " + list + "; the inputs have batch " +
                std::to_string(b) + ": compare at one of those batches (--batch N)");
  }
  plan::Header h = plan::read_header(bytes.data(), bytes.size(), origin);
  check_plan_target(h.device, h.kiln_version, origin);
  *device = h.device;
  return plan::decode_graph(bytes.data() + h.payload_offset, h.payload_size, origin, h.payload_offset);
}

void check_same_inputs(const ir::Graph& model, const std::string& model_name, const ir::Graph& plan,
                       const std::string& origin) {
  auto list = [](const ir::Graph& g) {
    std::string s;
    for (const ir::Value* v : g.inputs) s += (s.empty() ? "'" : ", '") + v->name + "' " + type_str(v->dtype, v->dims);
    return s.empty() ? std::string("none") : s;
  };
  bool same = model.inputs.size() == plan.inputs.size();
  for (const ir::Value* p : plan.inputs) {
    const ir::Value* m = model.value(p->name);
    same = same && m && std::find(model.inputs.begin(), model.inputs.end(), m) != model.inputs.end() &&
           m->dtype == p->dtype && m->dims == p->dims;
  }
  if (!same)
    throw_bad_input("plan " + origin + " does not match model " + model_name + ": the plan's inputs are " + list(plan) +
                    ", the model's are " + list(model) +
                    " (compare a plan with the model it was built from, at the plan's batch)");
}

// The int8 step a value was written with: from the layer that quantized it,
// through layers that only move int8 data (pools, layout reformats, views).
float int8_scale(const ir::Value* v, const std::string& origin) {
  for (int depth = 0; v && depth < 1000; ++depth) {
    const ir::Node* p = v->producer;
    if (!p) break;
    if (p->op_type == "QConv" && p->has("y_scale")) return p->f("y_scale", 0.f);
    if (p->op_type == "Reformat" && p->has("scale")) return p->f("scale", 0.f);
    v = p->in(0);
    if (!v || v->dtype != DataType::kInt8) break;
  }
  throw_bad_input("plan " + origin + ": cannot tell the int8 scale of a tensor (no QConv or quantizing Reformat "
                  "writes it): rebuild the plan with `kiln build`");
}

// Every element as a double; int8 dequantized with `scale`.
std::vector<double> as_double(const HostTensor& t, float scale) {
  std::vector<double> out(size_t(t.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    switch (t.dtype) {
      case DataType::kFloat32: out[i] = t.as<float>()[i]; break;
      case DataType::kFloat16: out[i] = half_to_float(t.as<uint16_t>()[i]); break;
      case DataType::kInt8: out[i] = double(t.as<int8_t>()[i]) * double(scale); break;
      case DataType::kUInt8: out[i] = t.as<uint8_t>()[i]; break;
      case DataType::kInt32: out[i] = t.as<int32_t>()[i]; break;
      case DataType::kInt64: out[i] = double(t.as<int64_t>()[i]); break;
      case DataType::kBool: out[i] = t.as<uint8_t>()[i] ? 1 : 0; break;
    }
  }
  return out;
}

void measure(const std::vector<double>& a, const std::vector<double>& b, TensorError& e) {
  double dot = 0, aa = 0, bb = 0, diff = 0, ref = 0;
  bool nan = false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      nan = true;
      continue;
    }
    dot += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
    diff = std::max(diff, std::abs(a[i] - b[i]));
    ref = std::max(ref, std::abs(b[i]));
  }
  const double nan_v = std::numeric_limits<double>::quiet_NaN();
  e.ref_max = ref;
  if (nan) {
    e.cosine = e.max_abs = e.max_rel = nan_v;
    return;
  }
  if (aa == 0 && bb == 0) e.cosine = 1;
  else if (aa == 0 || bb == 0) e.cosine = 0;
  else e.cosine = std::clamp(dot / (std::sqrt(aa) * std::sqrt(bb)), -1.0, 1.0);
  e.max_abs = diff;
  e.max_rel = diff == 0 ? 0 : ref > 0 ? diff / ref : std::numeric_limits<double>::infinity();
}

// The reference: the model's graph as the builder optimizes it (or not,
// like the plan), lowered to the CPU FP32 kernels, every float tensor kept.
std::map<std::string, HostTensor> run_reference(const Network& model, bool optimized,
                                                const std::map<std::string, HostTensor>& inputs) {
  auto g = clone_graph(*model.graph);
  prune_graph(*g);
  if (optimized) {
    optimize_graph(*g);
    prune_graph(*g);
  }
  for (auto& n : g->nodes())
    for (ir::Value* v : n->outputs)
      if (v && !v->is_constant() && is_float(v->dtype) && !is_output(*g, v)) g->outputs.push_back(v);
  auto& kernels = cpu::KernelRegistry::global();
  for (auto& n : g->nodes()) n->tactic = kernels.create(*n)->tactic();
  auto engine = make_cpu_engine(std::move(g), "<compare reference>", "cpu");
  return engine->create_context()->run(inputs);
}

#ifdef KILN_WITH_CUDA
// CUDA engines return row-major tensors only: a channels-last value is
// copied out through a Reformat to the linear layout, same dtype.
ir::Value* linear_copy(ir::Graph& g, ir::Value* v) {
  ir::Value* y = g.add_value(g.unique_name(v->name + "/compare_linear"));
  ir::Node* r = g.add_node("Reformat", "compare:" + y->name, {v}, {y});
  r->domain = "kiln";
  r->attrs["to"].kind = ir::Attribute::Kind::kInt;
  r->attrs["to"].i = int64_t(v->dtype);
  r->precision = v->dtype;
  ir::OpRegistry::global().find("kiln", "Reformat")->infer(*r);
  y->batch_axis = v->batch_axis;
  y->layout = ir::Layout::kLinear;
  r->tactic = cuda::Registry::global().tactics(*r).front().name;
  return y;
}
#endif

// What the comparison needs to know of one exposed plan tensor.
struct Exposed {
  std::string name, layer, op_type;
  DataType dtype = DataType::kFloat32;
  std::vector<int64_t> shape;
  float scale = 1.f;
  bool network_output = false;
};

}  // namespace

LayerComparison compare_layers(const Network& model, const std::vector<uint8_t>& plan_bytes,
                               const std::map<std::string, HostTensor>& inputs, const std::string& origin) {
  if (!model.graph) throw_usage("compare_layers: the network holds no graph");
  LayerComparison out;
  auto g = plan_graph(plan_bytes, origin, inputs, &out.device);
  check_same_inputs(*model.graph, model.source, *g, origin);
  out.batch = inputs_batch(*g, inputs);
  const bool optimized = g->metadata.count("pass_notes") > 0;  // the builder's record that passes ran

  std::map<std::string, HostTensor> ref = run_reference(model, optimized, inputs);

  // Which plan tensors to return, and how to read them back.
  std::vector<Exposed> exposed;
  std::map<std::string, std::string> fetch;  // tensor -> the output that carries it
  std::vector<std::string> network_outputs;
  for (const ir::Value* v : g->outputs) network_outputs.push_back(v->name);
  // A snapshot: linear_copy appends nodes while the loop below runs.
  const std::vector<ir::Node*> nodes = [&] {
    std::vector<ir::Node*> ns;
    for (auto& n : g->nodes()) ns.push_back(n.get());
    return ns;
  }();
  for (ir::Node* n : nodes) {
    for (ir::Value* v : n->outputs) {
      if (!v || v->is_constant()) continue;
      auto r = ref.find(v->name);
      if (r == ref.end()) {
        out.skipped.push_back(v->name);
        continue;
      }
      const bool readable = is_float(v->dtype) || v->dtype == DataType::kInt8 || is_output(*g, v);
      if (!readable || r->second.shape != v->dims) {
        out.mismatched.push_back(v->name + ": plan " + type_str(v->dtype, v->dims) + ", reference " +
                                 type_str(r->second.dtype, r->second.shape));
        continue;
      }
      Exposed e{v->name, n->name, n->domain.empty() || n->path == "plugin" ? n->op_type : n->domain + "::" + n->op_type,
                v->dtype, v->dims, 1.f, is_output(*g, v)};
      if (v->dtype == DataType::kInt8) e.scale = int8_scale(v, origin);
      exposed.push_back(e);
      ir::Value* carrier = v;
#ifdef KILN_WITH_CUDA
      if (v->layout != ir::Layout::kLinear) carrier = linear_copy(*g, v);
#endif
      if (!is_output(*g, carrier)) g->outputs.push_back(carrier);
      fetch[v->name] = carrier->name;
    }
  }

  std::unique_ptr<Engine> engine;
  const std::string device = out.device;
#ifdef KILN_WITH_CUDA
  if (device != "cpu") engine = make_cuda_engine(std::move(g), origin, device);
#endif
  if (!engine) engine = make_cpu_engine(std::move(g), origin, device);
  std::map<std::string, HostTensor> got = engine->create_context()->run(inputs);

  std::map<std::string, TensorError> by_name;
  for (const Exposed& e : exposed) {
    auto a = got.find(fetch.at(e.name));
    const HostTensor& b = ref.at(e.name);
    if (a == got.end()) continue;  // a row-count output the engine keeps to itself
    if (a->second.shape != b.shape) {  // outputs whose row count the data decides
      out.mismatched.push_back(e.name + ": engine " + type_str(a->second.dtype, a->second.shape) + ", reference " +
                               type_str(b.dtype, b.shape));
      continue;
    }
    // Integer outputs (class ids, counts) are reported with the outputs but
    // not ranked: a cosine of ids says little.
    const bool ranked = is_float(e.dtype) || e.dtype == DataType::kInt8;
    TensorError t;
    t.tensor = e.name;
    t.layer = e.layer;
    t.op_type = e.op_type;
    t.precision = dtype_name(e.dtype);
    t.shape = e.shape;
    t.network_output = e.network_output;
    measure(as_double(a->second, e.scale), as_double(b, 1.f), t);
    by_name[e.name] = t;
    if (ranked) out.tensors.push_back(t);
  }
  for (const std::string& name : network_outputs)
    if (by_name.count(name)) out.outputs.push_back(by_name.at(name));
  // Worst first: lowest cosine (NaN lowest of all), then largest relative error.
  auto key = [](const TensorError& t) { return std::isnan(t.cosine) ? -2.0 : t.cosine; };
  std::stable_sort(out.tensors.begin(), out.tensors.end(), [&](const TensorError& x, const TensorError& y) {
    if (key(x) != key(y)) return key(x) < key(y);
    const double rx = std::isnan(x.max_rel) ? INFINITY : x.max_rel, ry = std::isnan(y.max_rel) ? INFINITY : y.max_rel;
    return rx > ry;
  });
  log_message(Severity::kInfo, "compare: " + std::to_string(out.tensors.size()) + " tensors compared, " +
                                   std::to_string(out.skipped.size()) + " plan tensors without a reference");
  return out;
}

}  // namespace kiln
