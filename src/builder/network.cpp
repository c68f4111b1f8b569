// parse_onnx / summarize / destroy: the Network half of the public API.
#include "builder/network.h"

#include "builder/prune.h"

#include "backends/cpu/kernel.h"
#include "engine/summary.h"
#include "ir/op_registry.h"
#include "onnx/importer.h"

namespace kiln {

namespace {
NetworkPtr finish(std::unique_ptr<ir::Graph> graph, std::string source) {
  // Folding constant subgraphs here (shape math in exported models) gives
  // every later stage static shapes and fewer nodes.
  cpu::ConstantEvaluator eval;
  ir::infer_shapes(*graph, &eval);
  prune_graph(*graph);
  NetworkPtr net(new Network);
  net->graph = std::move(graph);
  net->source = std::move(source);
  return net;
}

onnx_import::ImportOptions import_options(const ParseOptions& opts) {
  if (opts.batch < 0) throw_usage("batch size must be positive, got " + std::to_string(opts.batch));
  onnx_import::ImportOptions io;
  io.batch = opts.batch;
  io.input_shapes = opts.input_shapes;
  return io;
}
}  // namespace

NetworkPtr parse_onnx(const std::string& path, const ParseOptions& opts) {
  return finish(onnx_import::import_file(path, import_options(opts)), path);
}

NetworkPtr parse_onnx_bytes(const std::string& bytes, const std::string& base_dir, const ParseOptions& opts) {
  return finish(onnx_import::import_bytes(bytes, base_dir, import_options(opts)), "<memory>");
}

NetworkSummary summarize(const Network& network) { return summarize_graph(*network.graph); }

void destroy(Network* network) { delete network; }

}  // namespace kiln
