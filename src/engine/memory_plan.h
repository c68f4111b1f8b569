// Activation memory plan: where every runtime value of a graph lives.
//
// A value either owns a region of one arena (64-byte aligned; regions whose
// lifetimes do not overlap share bytes) or is a view of another value's bytes:
//   - Reshape / Flatten / Squeeze / Unsqueeze / Identity / Dropout (inference)
//     outputs are their input with new dims; the node is elided.
//   - A Concat whose inputs are contiguous chunks of its output (every dim
//     before the axis is 1) is elided when each input traces back, through
//     elided reshapes, to a kernel output used by no other concat: that kernel
//     writes straight into its slice of the concat's region.
// Lifetimes are counted in steps: graph inputs are written at step 0, node k
// runs at step k + 1, graph inputs and outputs are read at step nodes + 1
// (so no layer ever overwrites an input: an inference can run again on it). A region is
// busy from the first write to the last read of any value that lives in it,
// so a kernel's output never shares bytes with its own inputs (no in-place).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "ir/graph.h"

namespace kiln {

enum class NodeExec {
  kKernel,    // runs its kernel
  kAlias,     // elided: its output is a view of its input
  kInConcat,  // elided Concat: its inputs were written into its output
};

struct ValuePlace {
  int64_t offset = 0;  // from the arena's start
  int64_t bytes = 0;
  int region = -1;     // index into MemoryPlan::regions
  bool view = false;   // false: the value owns its region (offset is the region's)
};

struct MemoryRegion {
  const ir::Value* owner = nullptr;  // the value the region was made for
  int64_t offset = 0, bytes = 0;
  int first = 0, last = 0;           // busy steps, inclusive
};

struct MemoryPlan {
  std::unordered_map<const ir::Value*, ValuePlace> values;  // every non-constant value
  std::vector<MemoryRegion> regions;                        // in placement-independent value order
  std::vector<NodeExec> nodes;                              // follows g.nodes()
  int64_t peak_bytes = 0;                                   // arena size

  bool runs(size_t node) const { return nodes[node] == NodeExec::kKernel; }
  int64_t launches() const;
  const ValuePlace& at(const ir::Value* v) const;  // kInternal if v has no place
};

struct MemoryPlanOptions {
  bool reuse = true;  // false: every region gets its own bytes
  bool elide = true;  // false: every node runs and every value owns a region
};

// Options from the environment: KILN_NO_MEMORY_PLAN=1 turns reuse and elision
// off (every value its own buffer), to compare against the planned engine.
MemoryPlanOptions memory_plan_options_from_env();

// Throws kBadInput when a node reads a runtime value nothing produces or a
// value's shape is too large. Values without a known shape get 0 bytes and
// are never viewed (a summary of an unbuilt model may hold some).
MemoryPlan plan_memory(const ir::Graph& g, const MemoryPlanOptions& opts = {});

// No in-place kernels: throws kInternal if a layer that runs would write an
// output over one of its inputs or another of its outputs.
void check_no_overlap(const ir::Graph& g, const MemoryPlan& plan);

}  // namespace kiln
