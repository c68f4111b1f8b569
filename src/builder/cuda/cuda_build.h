// Building for the CUDA backend: after the graph passes, give every value the
// dtype and layout its kernels want (inserting Reformat layers where they
// change), then time every tactic of every layer and keep the fastest. In
// FP16 builds the layers that run FP32 are chosen by timing both precisions
// first (choose_fp32_layers).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "builder/cuda/choose_precision.h"
#include "ir/graph.h"

namespace kiln::cuda_build {

// Tactic timings by layer signature, the GPU and the library versions; kept
// in memory across the timing rounds of one build and optionally in a file.
class TimingCache;
// Reads `path` ("" = memory only; a missing file is an empty cache).
std::shared_ptr<TimingCache> open_timing_cache(const std::string& path);
void save_timing_cache(const TimingCache& cache);  // no-op without a file or news

struct Options {
  bool fp16 = false;                  // FP16 allowed (assign_formats: wherever a layer has an FP16 kernel)
  std::set<std::string> fp32_layers;  // layer names kept in FP32 even with fp16
  std::set<std::string> fp16_layers;  // layer names run in FP16 whatever the timing ("*" = all)
  std::string timing_cache;           // file to read and update ("" = none)
  int timing_runs = 10;               // timed runs per tactic (median kept)
  // Shared by several select_tactics calls (null: select_tactics opens
  // timing_cache itself and saves it when done).
  std::shared_ptr<TimingCache> cache;
  // Time layers with a single candidate too (the precision choice needs
  // every layer's time; a plain build does not).
  bool time_single = false;
};

// True when `n` can run in FP16: its op has FP16 kernels and a float output.
bool runs_fp16(const ir::Node& n);

// Assigns dtypes and layouts; returns the number of Reformat layers inserted.
// Throws kUnsupported naming the first layer no CUDA kernel can run.
int assign_formats(ir::Graph& g, const Options& o);

struct TimingStats {
  int timed = 0, cached = 0, single = 0;
  // Per node (g.nodes() order): the chosen tactic's median ms; 0 for layers
  // that never run (views), -1 where nothing was timed (single candidate).
  std::vector<double> layer_ms;
};
// Picks every node's tactic, recording each candidate's median time in
// g.metadata["tactics/<node index>"] as "name=ms;name=ms" ("name=error").
TimingStats select_tactics(ir::Graph& g, const Options& o);

// FP16 builds (o.fp16), before assign_formats: which layers run FP32. Every
// layer with an FP16 kernel is timed in FP16 and in FP32 (two rounds of
// select_tactics on copies of g, plus the Reformat layers a switch would add
// or remove) and runs FP32 where that makes the plan faster; fp16_layers and
// fp32_layers pin layers. Returns o.fp32_layers plus the layers chosen FP32,
// and records why in g.metadata["precision/<layer>"]. With fp16_layers "*"
// nothing is timed: every layer with an FP16 kernel runs FP16 but
// fp32_layers. Throws kUsage for a layer forced to FP16 that has no FP16
// kernel, or named by both lists.
std::set<std::string> choose_fp32_layers(ir::Graph& g, const Options& o);

// Layers whose outputs a plugin reads (through view ops such as Reshape or
// Concat) and that could run FP16. Plugins read FP32, and a ranking plugin
// is sensitive to FP16 rounding: an NMS fed FP16 softmax scores sees its top
// scores rounded to exactly 1.0, and the ties reorder its detections (a
// detector lost 1.3 mAP that way). FP16 builds keep these layers FP32
// unless --fp16-layer names them.
std::set<std::string> plugin_input_layers(const ir::Graph& g);

// INT8 builds: the QConv layers of `int8_graph` to return to float. Both
// graphs (the same layers before and after quant::assign_int8) are formatted
// and timed on copies. An INT8 layer's worth depends on its neighbours (a
// float producer feeding an INT8 reader needs a quantize layer; ResNet's 3x3
// convs can lose in INT8 alone yet cost less than the two reformats their
// return to float creates), so the choice is choose_precision's over the
// whole network with INT8 in the FP32 role: per-layer times from the two
// copies, one reformat per tensor whose producer and quantized reader
// disagree (cost by bytes, at the bandwidth of the quantize layers timed),
// an INT8 producer with float readers writing float itself and an INT8
// layer reading a float residual (each charged its wider bytes). Layers in
// `pinned_int8` (or all, with "*") stay INT8.
// `why` receives "int8 X ms vs fp16 Y ms: int8|float" per compared layer.
std::set<std::string> int8_slower_layers(const ir::Graph& int8_graph, const ir::Graph& float_graph, const Options& o,
                                         const std::set<std::string>& pinned_int8,
                                         std::map<std::string, std::string>* why);

// The two halves of that choice, apart from the timing (tested without a GPU):
// a reformat between float and int8 priced by bytes moved (float read, int8
// written) plus a launch, and an INT8 layer's float output or float
// residual by the extra bytes it moves;
struct Int8ReformatCost {
  double ms_per_byte = 1.0 / 2.0e9, launch_ms = 0.003;
  double operator()(int64_t count, int float_bytes) const;
  double wider(int64_t count, int float_bytes) const;
};
// the problem on float_graph's structure: a layer per node timed in both
// maps (by name), a tensor per activation that a candidate produces or
// reads as its quantized input (input 0);
PrecisionProblem int8_problem(const ir::Graph& float_graph, const std::map<std::string, double>& int8_ms,
                              const std::map<std::string, double>& float_ms, const std::set<std::string>& pinned_int8,
                              const Int8ReformatCost& cost, int float_bytes);
// and its solution: the layers to keep float, with `why` filled as above.
std::set<std::string> int8_choice(const PrecisionProblem& p, bool fp16, std::map<std::string, std::string>* why);

}  // namespace kiln::cuda_build
