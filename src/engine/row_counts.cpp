#include "engine/row_counts.h"

#include "engine/summary.h"
#include "kiln/error.h"

namespace kiln {

namespace {
const ir::Value* graph_output(const ir::Graph& g, const std::string& name) {
  for (const ir::Value* v : g.outputs)
    if (v->name == name) return v;
  return nullptr;
}
}  // namespace

RowCounts::RowCounts(const ir::Graph& g, const std::string& origin) {
  for (const auto& [key, count] : g.metadata) {
    if (key.rfind("rows/", 0) != 0) continue;
    const std::string data = key.substr(5);
    const ir::Value* d = graph_output(g, data);
    const ir::Value* c = graph_output(g, count);
    if (!d || !c || d == c || d->dims.empty() || c->dtype != DataType::kInt64 || c->dims != ir::Dims{1} ||
        counts_.count(data) || rows_.count(count))
      throw_bad_input("plan " + origin + " is inconsistent: output '" + data + "' has row count '" + count +
                      "', which is not an int64 [1] graph output: rebuild it with `kiln build`");
    rows_[data] = count;
    counts_.insert(count);
  }
}

std::vector<TensorInfo> RowCounts::outputs(const ir::Graph& g) const {
  std::vector<TensorInfo> out;
  for (const ir::Value* v : g.outputs) {
    if (is_count(v->name)) continue;
    out.push_back(tensor_info(*v));
    out.back().dynamic_rows = rows_.count(v->name) > 0;
  }
  return out;
}

void RowCounts::trim(std::map<std::string, HostTensor>& outs) const {
  for (const auto& [data, count] : rows_) {
    HostTensor& t = outs.at(data);
    const HostTensor& c = outs.at(count);
    const int64_t rows = c.as<int64_t>()[0];
    if (rows < 0 || rows > t.shape[0])
      throw_internal("output '" + data + "': its layer reported " + std::to_string(rows) + " rows of at most " +
                     std::to_string(t.shape[0]));
    const int64_t row_elems = t.shape[0] ? t.numel() / t.shape[0] : 0;
    t.shape[0] = rows;
    t.data.resize(size_t(rows * row_elems) * dtype_size(t.dtype));
  }
  for (const std::string& c : counts_) outs.erase(c);
}

}  // namespace kiln
