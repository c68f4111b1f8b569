// Outputs whose row count the data decides (ONNX NonMaxSuppression). The
// graph holds such an output at its largest size plus an int64 [1] output
// with the rows written (graph metadata "rows/<output>" = "<count output>").
// Users see neither the count outputs nor the padding: outputs() lists the
// data outputs with dynamic_rows set, and run() returns them cut to size.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/kiln.h"

namespace kiln {

class RowCounts {
 public:
  // Checks that every entry names a graph output of rank >= 1 and an int64
  // [1] graph output; kBadInput naming `origin` otherwise (a damaged plan).
  RowCounts(const ir::Graph& g, const std::string& origin);
  bool is_count(const std::string& name) const { return counts_.count(name) > 0; }
  // Graph outputs as users see them.
  std::vector<TensorInfo> outputs(const ir::Graph& g) const;
  // Cuts each data output to its count and drops the count outputs.
  void trim(std::map<std::string, HostTensor>& outs) const;

 private:
  std::map<std::string, std::string> rows_;  // data output -> count output
  std::set<std::string> counts_;
};

}  // namespace kiln
