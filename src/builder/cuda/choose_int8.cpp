// INT8 only where faster: every INT8 conv is timed against the same layer in
// float (FP16 where the build allows it), both on the real shapes with their
// fastest tactics, and the conv returns to float where float wins. A
// quantize layer that exists only for INT8 convs is charged to them.
#include <algorithm>
#include <cstdio>
#include <map>

#include "builder/clone.h"
#include "builder/cuda/cuda_build.h"
#include "engine/logging.h"

namespace kiln::cuda_build {

namespace {

// Node name -> median ms of its winning tactic, for a formatted copy.
std::map<std::string, double> layer_times(ir::Graph& g, const Options& t) {
  const TimingStats s = select_tactics(g, t);
  std::map<std::string, double> ms;
  for (size_t k = 0; k < s.layer_ms.size(); ++k)
    if (s.layer_ms[k] >= 0) ms[g.nodes()[k]->name] = s.layer_ms[k];
  return ms;
}

}  // namespace

std::set<std::string> int8_slower_layers(const ir::Graph& int8_graph, const ir::Graph& float_graph, const Options& o,
                                         std::map<std::string, std::string>* why) {
  Options t = o;
  t.cache = o.cache ? o.cache : open_timing_cache(o.timing_cache);
  t.time_single = true;  // a layer with one INT8 tactic still has a precision to choose
  auto gi = clone_graph(int8_graph);
  auto gf = clone_graph(float_graph);
  assign_formats(*gi, t);
  assign_formats(*gf, t);
  log_message(Severity::kVerbose, "int8: timing every layer in INT8, then in float");
  const auto ms_i = layer_times(*gi, t);
  const auto ms_f = layer_times(*gf, t);

  // Quantize layers (from assign_int8, named "quantize:<tensor>") are shared
  // by the INT8 convs that read them.
  std::map<std::string, double> charged;
  for (auto& n : gi->nodes()) {
    if (n->op_type != "Reformat" || n->name.rfind("quantize:", 0) != 0 || !ms_i.count(n->name)) continue;
    std::vector<const ir::Node*> readers;
    for (const ir::Node* c : gi->consumers(n->outputs[0]))
      if (c->op_type == "QConv") readers.push_back(c);
    for (const ir::Node* c : readers) charged[c->name] += ms_i.at(n->name) / double(readers.size());
  }

  std::set<std::string> slower;
  for (auto& n : gi->nodes()) {
    if (n->op_type != "QConv" || !ms_i.count(n->name) || !ms_f.count(n->name)) continue;
    const double i8 = ms_i.at(n->name) + charged[n->name], fl = ms_f.at(n->name);
    char buf[128];
    std::snprintf(buf, sizeof buf, "int8 %.4f ms vs %s %.4f ms", i8, o.fp16 ? "fp16" : "fp32", fl);
    if (fl < i8) {
      slower.insert(n->name);
      if (why) (*why)[n->name] = std::string(buf) + ": float";
    } else if (why) {
      (*why)[n->name] = std::string(buf) + ": int8";
    }
  }
  save_timing_cache(*t.cache);
  return slower;
}

}  // namespace kiln::cuda_build
