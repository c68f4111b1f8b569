#include "engine/memory_plan.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kiln/error.h"

namespace kiln {

namespace {

constexpr int64_t kAlign = 64;  // SIMD-friendly start for every region
// Same bound as ir::Tensor: a hostile plan must fail here, not in malloc.
constexpr int64_t kMaxValueBytes = int64_t(16) << 30;

int64_t align_up(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Dropout is an identity at inference unless it must also write a mask or
// its mode is decided at run time (the kernel then rejects training mode).
// Training mode with a constant zero ratio drops nothing: a copy as well.
bool dropout_is_identity(const ir::Node& n) {
  if (n.outputs.size() > 1 && n.outputs[1]) return false;
  const ir::Value* mode = n.in(2);
  if (!mode) return true;
  if (!mode->is_constant()) return false;
  if (mode->constant->numel() == 0 || mode->constant->to_int64()[0] == 0) return true;
  const ir::Value* ratio = n.in(1);
  return ratio && ratio->is_constant() && ratio->constant->numel() > 0 && ratio->constant->to_double()[0] == 0.0;
}

bool is_view_op(const ir::Node& n) {
  if (!n.domain.empty() || n.outputs.empty() || !n.outputs[0] || !n.in(0)) return false;
  static const char* const kOps[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"};
  for (const char* op : kOps)
    if (n.op_type == op) return n.outputs.size() == 1;
  return n.op_type == "Dropout" && dropout_is_identity(n);
}

struct ValueInfo {
  const ir::Value* v = nullptr;
  int64_t bytes = 0;
  int def = 0, last = 0;    // steps
  int base = -1;            // value whose bytes this one views, -1 if it owns a region
  int64_t rel = 0;          // offset into base
};

class Planner {
 public:
  Planner(const ir::Graph& g, const MemoryPlanOptions& opts) : g_(g), opts_(opts) {}

  MemoryPlan run() {
    collect();
    plan_.nodes.assign(g_.nodes().size(), NodeExec::kKernel);
    if (opts_.elide) {
      plan_views();
      plan_concats();
    }
    make_regions();
    place_regions();
    publish();
    return std::move(plan_);
  }

 private:
  int add(const ir::Value* v, int step) {
    if (!v || v->is_constant()) return -1;
    if (index_.count(v))
      throw_bad_input("value '" + v->name + "' is written twice (by two nodes, or by a node and as a graph input)");
    int64_t bytes = 0;
    if (v->has_shape) {
      const int64_t n = ir::numel_of(v->dims);
      const int64_t es = int64_t(dtype_size(v->dtype));
      if (n > kMaxValueBytes / es)
        throw_bad_input("value '" + v->name + "' of shape " + shape_str(v->dims) +
                        " exceeds kiln's 16 GiB tensor limit");
      bytes = n * es;
    }
    index_[v] = int(vals_.size());
    vals_.push_back({v, bytes, step, step, -1, 0});
    return int(vals_.size()) - 1;
  }

  int find(const ir::Value* v, const std::string& reader) const {
    auto it = index_.find(v);
    if (it == index_.end())
      throw_bad_input(reader + " reads '" + v->name + "', which is neither a graph input nor written by an earlier node");
    return it->second;
  }

  void collect() {
    const auto& nodes = g_.nodes();
    end_step_ = int(nodes.size()) + 1;
    for (const ir::Value* v : g_.inputs) add(v, 0);
    for (size_t k = 0; k < nodes.size(); ++k) {
      const ir::Node& n = *nodes[k];
      const int step = int(k) + 1;
      for (const ir::Value* v : n.inputs)
        if (v && !v->is_constant()) {
          ValueInfo& i = vals_[size_t(find(v, n.label()))];
          i.last = std::max(i.last, step);
        }
      for (const ir::Value* v : n.outputs) add(v, step);
    }
    // Inputs stay intact for the whole inference: a caller may run it again
    // on the same device-resident inputs (enqueue, CUDA graph replay).
    for (const ir::Value* v : g_.inputs) vals_[size_t(find(v, "the graph's input list"))].last = end_step_;
    for (const ir::Value* v : g_.outputs)
      if (v && !v->is_constant()) vals_[size_t(find(v, "the graph's output list"))].last = end_step_;
  }

  // The value whose bytes `i` ends up in, following views; `rel` gets the offset.
  int root_of(int i, int64_t* rel = nullptr) const {
    int64_t off = 0;
    while (vals_[size_t(i)].base >= 0) {
      off += vals_[size_t(i)].rel;
      i = vals_[size_t(i)].base;
    }
    if (rel) *rel = off;
    return i;
  }

  int producer_node(int i) const { return vals_[size_t(i)].def - 1; }  // -1: graph input

  void plan_views() {
    const auto& nodes = g_.nodes();
    for (size_t k = 0; k < nodes.size(); ++k) {
      const ir::Node& n = *nodes[k];
      if (!is_view_op(n)) continue;
      const ir::Value* x = n.in(0);
      const ir::Value* y = n.outputs[0];
      // A constant input stays a copy: its bytes belong to the plan's weights.
      // Only row-major bytes reinterpret as new dims; a channels-last value needs a copy.
      if (x->is_constant() || !x->has_shape || !y->has_shape || x->dtype != y->dtype ||
          x->layout != ir::Layout::kLinear || y->layout != ir::Layout::kLinear)
        continue;
      ValueInfo& out = vals_[size_t(index_.at(y))];
      const int in = index_.at(x);
      if (out.bytes != vals_[size_t(in)].bytes) continue;
      // Graph inputs are copied into the arena before the first node, so a
      // view of one only ever reads bytes the engine owns.
      out.base = in;
      out.rel = 0;
      plan_.nodes[k] = NodeExec::kAlias;
    }
  }

  bool contiguous_concat(const ir::Node& n) const {
    if (!n.domain.empty() || n.op_type != "Concat" || n.outputs.size() != 1 || n.inputs.empty()) return false;
    const ir::Value* c = n.outputs[0];
    if (!c || c->is_constant() || !c->has_shape || c->dims.empty() || c->layout != ir::Layout::kLinear) return false;
    int64_t axis = n.i("axis", 0);
    const int64_t r = int64_t(c->dims.size());
    if (axis < 0) axis += r;
    if (axis < 0 || axis >= r) return false;
    for (int64_t d = 0; d < axis; ++d)
      if (c->dims[size_t(d)] != 1) return false;
    int64_t sum = 0;
    for (const ir::Value* x : n.inputs) {
      if (!x || x->is_constant() || !x->has_shape || x->dtype != c->dtype || x->layout != ir::Layout::kLinear)
        return false;
      sum += vals_[size_t(index_.at(x))].bytes;
    }
    return sum == vals_[size_t(index_.at(c))].bytes;
  }

  void plan_concats() {
    const auto& nodes = g_.nodes();
    // How many concat input positions each (view-resolved) value fills: a
    // value written into one concat's slice cannot also be another's.
    std::vector<int> concat_uses(vals_.size(), 0);
    for (auto& np : nodes)
      if (np->domain.empty() && np->op_type == "Concat")
        for (const ir::Value* x : np->inputs)
          if (x && !x->is_constant()) ++concat_uses[size_t(root_of(find(x, np->label())))];
    for (size_t k = 0; k < nodes.size(); ++k) {
      const ir::Node& n = *nodes[k];
      if (!contiguous_concat(n)) continue;
      std::vector<int> roots;
      bool ok = true;
      for (const ir::Value* x : n.inputs) {
        int64_t rel = 0;
        const int y = root_of(index_.at(x), &rel);
        const int p = producer_node(y);
        // The root must be written by a kernel that runs: not a graph input,
        // not an elided concat, and not claimed by a second concat position.
        ok = ok && rel == 0 && p >= 0 && vals_[size_t(y)].v->layout == ir::Layout::kLinear && plan_.nodes[size_t(p)] == NodeExec::kKernel && concat_uses[size_t(y)] == 1 &&
             vals_[size_t(y)].bytes == vals_[size_t(index_.at(x))].bytes;
        roots.push_back(y);
      }
      if (!ok) continue;
      const int c = index_.at(n.outputs[0]);
      int64_t off = 0;
      for (int y : roots) {
        vals_[size_t(y)].base = c;
        vals_[size_t(y)].rel = off;
        off += vals_[size_t(y)].bytes;
      }
      plan_.nodes[k] = NodeExec::kInConcat;
    }
  }

  void make_regions() {
    region_of_.assign(vals_.size(), -1);
    for (size_t i = 0; i < vals_.size(); ++i)
      if (vals_[i].base < 0) {
        region_of_[i] = int(plan_.regions.size());
        plan_.regions.push_back({vals_[i].v, 0, vals_[i].bytes, vals_[i].def, vals_[i].last});
      }
    // A region is busy while any value viewing it is.
    for (size_t i = 0; i < vals_.size(); ++i) {
      MemoryRegion& r = plan_.regions[size_t(region_of_[size_t(root_of(int(i)))])];
      r.first = std::min(r.first, vals_[i].def);
      r.last = std::max(r.last, vals_[i].last);
    }
  }

  // Greedy by size: largest regions first, each into the smallest gap left
  // by the already placed regions whose lifetimes overlap it.
  void place_regions() {
    auto& regs = plan_.regions;
    std::vector<size_t> order(regs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (regs[a].bytes != regs[b].bytes) return regs[a].bytes > regs[b].bytes;
      return regs[a].first < regs[b].first;
    });
    std::vector<size_t> placed;
    int64_t end = 0;
    for (size_t r : order) {
      MemoryRegion& reg = regs[r];
      if (reg.bytes == 0) continue;  // no bytes, no conflicts: offset 0
      if (!opts_.reuse) {
        reg.offset = end;
        end = align_up(end + reg.bytes);
        continue;
      }
      std::vector<size_t> busy;
      for (size_t p : placed)
        if (regs[p].first <= reg.last && reg.first <= regs[p].last) busy.push_back(p);
      std::sort(busy.begin(), busy.end(), [&](size_t a, size_t b) {
        return regs[a].offset != regs[b].offset ? regs[a].offset < regs[b].offset : a < b;
      });
      int64_t cursor = 0, best = -1, best_gap = 0;
      for (size_t p : busy) {
        const int64_t gap = regs[p].offset - cursor;
        if (gap >= reg.bytes && (best < 0 || gap < best_gap)) {
          best = cursor;
          best_gap = gap;
        }
        cursor = std::max(cursor, align_up(regs[p].offset + regs[p].bytes));
      }
      reg.offset = best >= 0 ? best : cursor;
      placed.push_back(r);
    }
  }

  void publish() {
    for (size_t i = 0; i < vals_.size(); ++i) {
      int64_t rel = 0;
      const int root = root_of(int(i), &rel);
      const int r = region_of_[size_t(root)];
      const MemoryRegion& reg = plan_.regions[size_t(r)];
      plan_.values[vals_[i].v] = {reg.offset + rel, vals_[i].bytes, r, vals_[i].base >= 0};
      plan_.peak_bytes = std::max(plan_.peak_bytes, reg.offset + reg.bytes);
    }
  }

  const ir::Graph& g_;
  MemoryPlanOptions opts_;
  MemoryPlan plan_;
  std::vector<ValueInfo> vals_;  // graph inputs, then node outputs in node order
  std::unordered_map<const ir::Value*, int> index_;
  std::vector<int> region_of_;
  int end_step_ = 0;
};

}  // namespace

int64_t MemoryPlan::launches() const {
  return int64_t(std::count(nodes.begin(), nodes.end(), NodeExec::kKernel));
}

const ValuePlace& MemoryPlan::at(const ir::Value* v) const {
  auto it = values.find(v);
  if (it == values.end()) throw_internal("memory plan: value '" + (v ? v->name : std::string("?")) + "' has no place");
  return it->second;
}

MemoryPlanOptions memory_plan_options_from_env() {
  MemoryPlanOptions o;
  const char* e = std::getenv("KILN_NO_MEMORY_PLAN");
  if (e && *e && std::strcmp(e, "0") != 0) o.reuse = o.elide = false;
  return o;
}

MemoryPlan plan_memory(const ir::Graph& g, const MemoryPlanOptions& opts) { return Planner(g, opts).run(); }

// No in-place kernels yet: a kernel's outputs must not share a byte with its
// inputs or with each other, or it would overwrite what it is still reading.
void check_no_overlap(const ir::Graph& g, const MemoryPlan& plan) {
  for (size_t k = 0; k < g.nodes().size(); ++k) {
    if (!plan.runs(k)) continue;
    const ir::Node& n = *g.nodes()[k];
    std::vector<const ir::Value*> touched;
    for (const ir::Value* v : n.outputs)
      if (v) touched.push_back(v);
    const size_t nout = touched.size();
    for (const ir::Value* v : n.inputs)
      if (v && !v->is_constant()) touched.push_back(v);
    for (size_t a = 0; a < nout; ++a) {
      const ValuePlace& pa = plan.at(touched[a]);
      for (size_t b = a + 1; b < touched.size(); ++b) {
        const ValuePlace& pb = plan.at(touched[b]);
        if (touched[a] == touched[b] || pa.bytes == 0 || pb.bytes == 0) continue;
        if (pa.offset < pb.offset + pb.bytes && pb.offset < pa.offset + pa.bytes)
          throw_internal("memory plan: " + n.label() + " writes '" + touched[a]->name + "' over '" +
                         touched[b]->name + "'");
      }
    }
  }
}

}  // namespace kiln
