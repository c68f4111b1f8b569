// kiln::export_qdq_onnx: the model rewritten with explicit quantization, the
// way TensorRT's quantization toolkits emit it:
//   * activations: x -> QuantizeLinear -> DequantizeLinear -> reader, int8,
//     zero point 0, the calibrated scalar scale; one pair per tensor, shared
//     by every quantized reader (Conv, Gemm, MatMul inputs; both inputs of a
//     residual Add that follows a Conv). Other readers keep reading x.
//   * weights of Conv / Gemm / MatMul: stored as int8 (symmetric, [-127, 127],
//     scales from quant::per_channel_weight_scales) behind a per-axis
//     DequantizeLinear; no QuantizeLinear, the int8 values are the weights.
// Tensors without a scale are left as they are. Per-axis DequantizeLinear
// needs ai.onnx opset 13: an older model is moved to 13 when none of its ops
// changed meaning in between, else refused.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>

#include "kiln/calibrator.h"
#include "kiln/kiln.h"
#include "onnx/export_qdq.h"
#include "onnx/tensor_proto.h"
#include "quant/weights.h"

namespace kiln {

namespace {

using TP = onnx::TensorProto;
constexpr int kQdqOpset = 13;  // first opset with per-axis QuantizeLinear/DequantizeLinear

std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void load_model(const std::string& path, onnx::ModelProto& m) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw_bad_input("cannot open model file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw_bad_input("cannot read model file '" + path + "': not a regular file");
  }
  google::protobuf::io::FileInputStream in(fd);
  in.SetCloseOnDelete(true);
  google::protobuf::io::CodedInputStream cis(&in);
  cis.SetTotalBytesLimit(INT_MAX);
  cis.SetRecursionLimit(1024);
  if (!m.ParseFromCodedStream(&cis) || !cis.ConsumedEntireMessage()) {
    if (in.GetErrno()) throw_bad_input("cannot read model file '" + path + "': " + std::strerror(in.GetErrno()));
    throw_bad_input("'" + path + "' is not a valid ONNX model (protobuf parsing failed)");
  }
  if (!m.has_graph()) throw_bad_input("'" + path + "' is not a valid ONNX model (it has no graph)");
}

bool default_domain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

// Every default-domain op type in `g` and its subgraphs.
void collect_ops(const onnx::GraphProto& g, std::set<std::string>& ops) {
  for (const auto& n : g.node()) {
    if (default_domain(n.domain())) ops.insert(n.op_type());
    for (const auto& a : n.attribute()) {
      if (a.has_g()) collect_ops(a.g(), ops);
      for (const auto& sg : a.graphs()) collect_ops(sg, ops);
    }
  }
}

// Whether a node valid under schema `a` means the same under the later `b`:
// the same inputs and outputs, every attribute of `a` kept with its default
// and no new required one, and type constraints only widened. That is how
// most ops changed up to opset 13 (bfloat16, negative axes). The softmax
// family kept its signature but changed what `axis` means at 13.
bool compatible(const onnx::OpSchema& a, const onnx::OpSchema& b) {
  if (a.SinceVersion() == b.SinceVersion()) return true;
  static const std::set<std::string> redefined = {"Softmax", "LogSoftmax", "Hardmax"};
  if (redefined.count(a.Name())) return false;
  auto same_params = [](const std::vector<onnx::OpSchema::FormalParameter>& x,
                        const std::vector<onnx::OpSchema::FormalParameter>& y) {
    if (x.size() != y.size()) return false;
    for (size_t k = 0; k < x.size(); ++k)
      if (x[k].GetName() != y[k].GetName() || x[k].GetTypeStr() != y[k].GetTypeStr() ||
          x[k].GetOption() != y[k].GetOption())
        return false;
    return true;
  };
  if (!same_params(a.inputs(), b.inputs()) || !same_params(a.outputs(), b.outputs())) return false;
  for (const auto& [name, attr] : a.attributes()) {
    auto it = b.attributes().find(name);
    if (it == b.attributes().end() || it->second.required != attr.required ||
        it->second.default_value.SerializeAsString() != attr.default_value.SerializeAsString())
      return false;
  }
  for (const auto& [name, attr] : b.attributes())
    if (!a.attributes().count(name) && attr.required) return false;
  for (const auto& ta : a.typeConstraintParams()) {
    const onnx::OpSchema::TypeConstraintParam* tb = nullptr;
    for (const auto& t : b.typeConstraintParams())
      if (t.type_param_str == ta.type_param_str) tb = &t;
    if (!tb) return false;
    for (const auto& ty : ta.allowed_type_strs)
      if (std::find(tb->allowed_type_strs.begin(), tb->allowed_type_strs.end(), ty) == tb->allowed_type_strs.end())
        return false;
  }
  return true;
}

// Raises the ai.onnx opset to 13 when every op the model uses keeps its
// meaning there (see compatible()); else kUnsupported naming the op.
void ensure_opset(onnx::ModelProto& m, const std::string& path) {
  onnx::OperatorSetIdProto* def = nullptr;
  for (auto& o : *m.mutable_opset_import())
    if (default_domain(o.domain())) def = &o;
  if (!def) throw_bad_input("'" + path + "' imports no opset for the default ONNX domain");
  const int old = int(def->version());
  if (old >= kQdqOpset) return;
  std::set<std::string> ops;
  collect_ops(m.graph(), ops);
  for (const auto& op : ops) {
    const auto* before = onnx::OpSchemaRegistry::Schema(op, old, "");
    const auto* after = onnx::OpSchemaRegistry::Schema(op, kQdqOpset, "");
    if (!before || !after || !compatible(*before, *after))
      throw_unsupported("'" + path + "' uses ai.onnx opset " + std::to_string(old) + "; per-channel " +
                        "DequantizeLinear needs opset " + std::to_string(kQdqOpset) + ", where op '" + op +
                        "' is defined differently. Convert the model first: "
                        "onnx.version_converter.convert_version(model, 13)");
  }
  def->set_version(kQdqOpset);
  if (m.ir_version() < 7) m.set_ir_version(7);  // opset 13 came with IR version 7
}

// Names in use anywhere in the main graph; fresh() avoids them.
class Names {
 public:
  explicit Names(const onnx::GraphProto& g) {
    for (const auto& i : g.input()) used_.insert(i.name());
    for (const auto& o : g.output()) used_.insert(o.name());
    for (const auto& v : g.value_info()) used_.insert(v.name());
    for (const auto& t : g.initializer()) used_.insert(t.name());
    for (const auto& n : g.node()) {
      used_.insert(n.name());
      used_.insert(n.input().begin(), n.input().end());
      used_.insert(n.output().begin(), n.output().end());
    }
  }
  std::string fresh(const std::string& base) {
    std::string cand = base;
    for (int k = 1; used_.count(cand); ++k) cand = base + "_" + std::to_string(k);
    used_.insert(cand);
    return cand;
  }

 private:
  std::set<std::string> used_;
};

TP* add_initializer(onnx::GraphProto& g, const std::string& name, int dtype, const std::vector<int64_t>& dims,
                    const void* data, size_t nbytes) {
  TP* t = g.add_initializer();
  t->set_name(name);
  t->set_data_type(dtype);
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(data, nbytes);
  return t;
}

onnx::NodeProto make_node(const std::string& op, const std::string& name, std::vector<std::string> ins,
                          const std::string& out) {
  onnx::NodeProto n;
  n.set_op_type(op);
  n.set_name(name);
  for (auto& i : ins) n.add_input(i);
  n.add_output(out);
  return n;
}

class Exporter {
 public:
  Exporter(onnx::ModelProto& m, const std::map<std::string, float>& scales, std::string base_dir)
      : g_(*m.mutable_graph()), scales_(scales), base_dir_(std::move(base_dir)), names_(g_) {
    for (int i = 0; i < g_.initializer_size(); ++i) init_index_[g_.initializer(i).name()] = i;
    for (const auto& n : g_.node())
      for (const auto& o : n.output()) producer_[o] = &n;
    for (const auto* list : {&g_.input(), &g_.value_info(), &g_.output()})
      for (const auto& vi : *list)
        if (vi.type().has_tensor_type() && vi.type().tensor_type().elem_type())
          declared_[vi.name()] = vi.type().tensor_type().elem_type();
  }

  void run() {
    // Decide every edge first (pointers into g_.node() stay valid until then).
    struct Edge { int node, input; std::string replacement; };
    std::vector<Edge> edges;
    for (int ni = 0; ni < g_.node_size(); ++ni) {
      const onnx::NodeProto& n = g_.node(ni);
      if (!default_domain(n.domain())) continue;
      const std::string& op = n.op_type();
      if (op == "Conv" || op == "Gemm" || op == "MatMul") {
        if (n.input_size() < 2) continue;
        const int axis = weight_axis(n);
        std::string w = weight_dq(n, axis);
        if (w == kSkipNode) continue;  // a non-float32 layer: nothing here is quantized
        if (!w.empty()) edges.push_back({ni, 1, w});
        for (int k = 0; k < 2; ++k) {
          if (k == 1 && init_index_.count(n.input(1))) continue;  // the weight
          std::string dq = activation_dq(n.input(k));
          if (!dq.empty()) edges.push_back({ni, k, dq});
        }
      } else if (op == "Add" && n.input_size() == 2 && (follows_conv(n.input(0)) || follows_conv(n.input(1)))) {
        for (int k = 0; k < 2; ++k) {
          std::string dq = activation_dq(n.input(k));
          if (!dq.empty()) edges.push_back({ni, k, dq});
        }
      }
    }
    for (const Edge& e : edges) g_.mutable_node(e.node)->set_input(e.input, e.replacement);
    drop_replaced_weights();
    emit_nodes();
  }

  int activation_pairs() const { return int(act_dq_.size()); }
  int weights() const { return int(weight_dq_.size()); }

 private:
  static constexpr const char* kSkipNode = "\x01skip";

  // Per-output-channel axis of the weight (input 1).
  static int weight_axis(const onnx::NodeProto& n) {
    if (n.op_type() == "Conv") return 0;
    if (n.op_type() == "MatMul") return 1;
    for (const auto& a : n.attribute())
      if (a.name() == "transB") return a.i() ? 0 : 1;
    return 1;
  }

  // The scale for activation `t`: its own, or (through ops that only move
  // values: a reshape keeps every value, so the same scale quantizes it
  // exactly as before) the scale of the tensor it was reshaped from; kiln's
  // graph may have fused such an op away, keeping only the source's name.
  const float* scale_of(const std::string& t) const {
    std::string cur = t;
    for (int hop = 0; hop < 4; ++hop) {
      auto it = scales_.find(cur);
      if (it != scales_.end()) return &it->second;
      auto p = producer_.find(cur);
      if (p == producer_.end() || !default_domain(p->second->domain())) return nullptr;
      static const std::set<std::string> moves = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity"};
      if (!moves.count(p->second->op_type()) || p->second->input_size() < 1) return nullptr;
      cur = p->second->input(0);
    }
    return nullptr;
  }

  // Whether `t` comes from a Conv (directly or through its BatchNormalization).
  bool follows_conv(const std::string& t) const {
    auto p = producer_.find(t);
    if (p == producer_.end() || !default_domain(p->second->domain())) return false;
    if (p->second->op_type() == "Conv") return true;
    if (p->second->op_type() == "BatchNormalization" && p->second->input_size() > 0) {
      auto q = producer_.find(p->second->input(0));
      return q != producer_.end() && default_domain(q->second->domain()) && q->second->op_type() == "Conv";
    }
    return false;
  }

  // The DequantizeLinear output replacing activation `t` ("" = not quantized).
  std::string activation_dq(const std::string& t) {
    if (t.empty() || init_index_.count(t)) return "";
    auto done = act_dq_.find(t);
    if (done != act_dq_.end()) return done->second.dq_out;
    const float* s = scale_of(t);
    if (!s) return "";
    auto d = declared_.find(t);
    if (d != declared_.end() && d->second != TP::FLOAT)
      throw_bad_input("tensor '" + t + "' has a scale but is of type " + onnx_import::onnx_type_name(d->second) +
                      "; only float32 tensors can be quantized");
    ActPair p;
    p.scale = names_.fresh(t + "_scale");
    p.zero_point = names_.fresh(t + "_zero_point");
    p.q_out = names_.fresh(t + "_quantized");
    p.dq_out = names_.fresh(t + "_dequantized");
    p.q_name = names_.fresh(t + "_QuantizeLinear");
    p.dq_name = names_.fresh(t + "_DequantizeLinear");
    const int8_t zero = 0;
    add_initializer(g_, p.scale, TP::FLOAT, {}, s, sizeof(float));
    add_initializer(g_, p.zero_point, TP::INT8, {}, &zero, 1);
    act_order_.push_back(t);
    return act_dq_.emplace(t, std::move(p)).first->second.dq_out;
  }

  // The DequantizeLinear output replacing weight input 1 of `n`: "" when the
  // input is no float32 initializer kiln can quantize per channel, kSkipNode
  // when the layer computes in another float type (fp16: no scales apply).
  std::string weight_dq(const onnx::NodeProto& n, int axis) {
    auto it = init_index_.find(n.input(1));
    if (it == init_index_.end()) return "";
    const TP& tp = g_.initializer(it->second);
    if (tp.data_type() != TP::FLOAT) return tp.data_type() == TP::FLOAT16 || tp.data_type() == TP::BFLOAT16 ||
                                            tp.data_type() == TP::DOUBLE ? kSkipNode : "";
    const int rank = tp.dims_size();
    if (n.op_type() == "Conv" ? rank < 3 : rank != 2) return "";  // batched MatMul weights stay float
    auto key = std::make_pair(tp.name(), axis);
    auto done = weight_dq_.find(key);
    if (done != weight_dq_.end()) return done->second;

    const std::string what = "initializer '" + tp.name() + "'";
    ir::Tensor w = onnx_import::tensor_from_proto(tp, base_dir_, what);
    std::vector<int64_t> dims = w.dims();
    for (int64_t d : dims)
      if (d <= 0) return "";  // an empty weight: nothing to quantize
    // Channel-major copy ([K, rest]) so per_channel_weight_scales sees axis 0.
    const float* src = w.data<float>();
    std::vector<float> cm;
    int64_t k_count = dims[size_t(axis)], rest = w.numel() / k_count;
    if (axis == 1) {
      cm.resize(size_t(w.numel()));
      for (int64_t r = 0; r < dims[0]; ++r)
        for (int64_t c = 0; c < dims[1]; ++c) cm[size_t(c * dims[0] + r)] = src[r * dims[1] + c];
      src = cm.data();
    }
    std::vector<float> sc = quant::per_channel_weight_scales(src, {k_count, rest}, tp.name());
    std::vector<int8_t> q(size_t(w.numel()));
    const float* wd = w.data<float>();
    for (int64_t i = 0; i < w.numel(); ++i) {
      const int64_t k = axis == 0 ? i / rest : i % dims[1];
      float v = std::nearbyint(wd[i] / sc[size_t(k)]);  // round half to even, as QuantizeLinear
      q[size_t(i)] = int8_t(std::fmin(std::fmax(v, -127.f), 127.f));
    }
    const std::vector<int8_t> zeros(size_t(k_count), 0);
    const std::string base = tp.name();
    const std::string qname = names_.fresh(base + "_quantized"), sname = names_.fresh(base + "_scale"),
                      zname = names_.fresh(base + "_zero_point"), out = names_.fresh(base + "_dequantized");
    add_initializer(g_, qname, TP::INT8, dims, q.data(), q.size());
    add_initializer(g_, sname, TP::FLOAT, {k_count}, sc.data(), sc.size() * sizeof(float));
    add_initializer(g_, zname, TP::INT8, {k_count}, zeros.data(), zeros.size());
    onnx::NodeProto dq = make_node("DequantizeLinear", names_.fresh(base + "_DequantizeLinear"), {qname, sname, zname}, out);
    auto* a = dq.add_attribute();
    a->set_name("axis");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(axis);
    weight_nodes_.push_back(std::move(dq));
    replaced_weights_.insert(tp.name());
    return weight_dq_[key] = out;
  }

  // Float weights nothing reads any more are dropped (the int8 copy replaces them).
  void drop_replaced_weights() {
    std::set<std::string> read;
    std::function<void(const onnx::GraphProto&)> scan = [&](const onnx::GraphProto& g) {
      for (const auto& n : g.node()) {
        read.insert(n.input().begin(), n.input().end());
        for (const auto& a : n.attribute()) {
          if (a.has_g()) scan(a.g());
          for (const auto& sg : a.graphs()) scan(sg);
        }
      }
    };
    scan(g_);
    for (const auto& o : g_.output()) read.insert(o.name());
    for (const auto& i : g_.input()) read.insert(i.name());  // an overridable initializer (IR < 4) stays
    auto* inits = g_.mutable_initializer();
    for (int i = inits->size() - 1; i >= 0; --i) {
      const std::string& name = inits->Get(i).name();
      if (replaced_weights_.count(name) && !read.count(name)) inits->DeleteSubrange(i, 1);
    }
  }

  // Rebuilds the node list in a valid order: weight DequantizeLinears and the
  // pairs on graph inputs first, each other pair right after its producer.
  void emit_nodes() {
    std::map<std::string, std::vector<const ActPair*>> after;  // producer output -> pairs
    std::vector<onnx::NodeProto> head = weight_nodes_;
    for (const std::string& t : act_order_) {
      const ActPair& p = act_dq_.at(t);
      if (producer_.count(t)) after[t].push_back(&p);
      else append_pair(head, t, p);
    }
    google::protobuf::RepeatedPtrField<onnx::NodeProto> old;
    old.Swap(g_.mutable_node());
    for (auto& n : head) *g_.add_node() = std::move(n);
    for (auto& n : old) {
      std::vector<onnx::NodeProto> tail;
      for (const auto& o : n.output()) {
        auto it = after.find(o);
        if (it != after.end())
          for (const ActPair* p : it->second) append_pair(tail, o, *p);
      }
      *g_.add_node() = std::move(n);
      for (auto& t : tail) *g_.add_node() = std::move(t);
    }
  }

  struct ActPair { std::string scale, zero_point, q_out, dq_out, q_name, dq_name; };

  static void append_pair(std::vector<onnx::NodeProto>& out, const std::string& t, const ActPair& p) {
    out.push_back(make_node("QuantizeLinear", p.q_name, {t, p.scale, p.zero_point}, p.q_out));
    out.push_back(make_node("DequantizeLinear", p.dq_name, {p.q_out, p.scale, p.zero_point}, p.dq_out));
  }

  onnx::GraphProto& g_;
  const std::map<std::string, float>& scales_;
  std::string base_dir_;
  Names names_;
  std::map<std::string, int> init_index_;
  std::map<std::string, const onnx::NodeProto*> producer_;
  std::map<std::string, int> declared_;
  std::map<std::string, ActPair> act_dq_;
  std::vector<std::string> act_order_;
  std::map<std::pair<std::string, int>, std::string> weight_dq_;
  std::vector<onnx::NodeProto> weight_nodes_;
  std::set<std::string> replaced_weights_;
};

// External data files are named relative to the model; written elsewhere,
// the model gets its remaining external tensors inlined.
void inline_external_data(onnx::GraphProto& g, const std::string& base_dir) {
  for (auto& tp : *g.mutable_initializer()) {
    if (tp.data_location() != TP::EXTERNAL) continue;
    const std::string what = "initializer '" + tp.name() + "'";
    DataType dt;
    if (!onnx_import::dtype_from_onnx(tp.data_type(), &dt))
      throw_unsupported(what + " is external data of type " + onnx_import::onnx_type_name(tp.data_type()) +
                        ", which kiln cannot copy; write the Q/DQ model into the model's own folder, where its "
                        "external data files stay valid");
    ir::Tensor t = onnx_import::tensor_from_proto(tp, base_dir, what);
    tp.clear_external_data();
    tp.set_data_location(TP::DEFAULT);
    tp.set_raw_data(t.raw(), t.nbytes());
  }
}

bool same_dir(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace

namespace onnx_export {

QdqCounts add_qdq(onnx::ModelProto& m, const std::map<std::string, float>& scales, const std::string& base_dir,
                  const std::string& origin) {
  for (const auto& [name, s] : scales)
    if (!std::isfinite(s) || !(s > 0.f))
      throw_bad_input("the INT8 scale of tensor '" + name + "' is " + std::to_string(s) +
                      "; a scale must be finite and > 0");
  ensure_opset(m, origin);
  Exporter e(m, scales, base_dir);
  e.run();
  return {e.activation_pairs(), e.weights()};
}

}  // namespace onnx_export

void export_qdq_onnx(const std::string& model_path, const std::map<std::string, float>& scales,
                     const std::string& output_path) {
  if (output_path.empty()) throw_usage("export_qdq_onnx: no output path given");
  onnx::ModelProto m;
  load_model(model_path, m);
  const std::string base = dir_of(model_path);
  onnx_export::add_qdq(m, scales, base, model_path);
  if (!same_dir(base, dir_of(output_path))) inline_external_data(*m.mutable_graph(), base);
  const size_t size = m.ByteSizeLong();
  if (size > size_t(INT_MAX))
    throw_unsupported("the Q/DQ model of '" + model_path + "' would be " + std::to_string(size) +
                      " bytes, over protobuf's 2 GB; keep the weights as external data and write it into '" + base +
                      "'");
  std::vector<uint8_t> bytes(size);
  if (!m.SerializeToArray(bytes.data(), int(size))) throw_internal("serializing the Q/DQ model failed");
  write_file_atomic(output_path, bytes);
}

}  // namespace kiln
