// Kernels for kiln-internal fused ops (domain "kiln").
//
// FusedElementwise runs a chain of element-wise ops in one pass over memory:
// the output is cut into blocks of up to kBlock floats, each block's chain
// value lives in a small buffer in L1 while every op of the chain is applied
// to it in a tight loop, and the result is stored once.
//
// Where the chain value is smaller than the output (the squeeze-excite tail:
// HardSigmoid on [N,C,1,1], then Mul by [N,C,H,W]), the ops before the
// broadcast run on the small shape first (a "stage"), so an expensive op is
// not recomputed for every output element; f(broadcast(v)) equals
// broadcast(f(v)) exactly. Within a stage each input is read in place when
// it has the stage's layout (full) or one value (scalar); other broadcasts
// are walked per contiguous row of the collapsed shape: rows of at least
// kRowMode elements are blocked along the row (every operand is then
// contiguous or constant in a block); shorter rows go a block of whole rows
// at a time, row-varying operands read per row (a per-channel scale is one
// value per row) and copied into a buffer only when rows are tiny.
#pragma GCC optimize("no-trapping-math", "no-math-errno")
#include <algorithm>
#include <cstring>

#include "backends/cpu/fused_eltwise_ops.h"

namespace kiln::cpu {

namespace {

using fused::Op;
using fused::Step;

constexpr int64_t kBlock = 1024;   // floats per block buffer (4 KiB)
constexpr int64_t kRowMode = 256;  // rows this long are blocked in place

enum class Kind : uint8_t { kUnused, kFull, kScalar, kGather };

struct Source {
  Kind kind = Kind::kUnused;
  std::vector<int64_t> strides;  // per collapsed axis, 0 along broadcast axes
  int64_t inner_stride = 0;      // 0 or 1
};

struct Stage {
  int first = 0, last = 0;  // ops [first, last)
  ir::Dims dims;
  int64_t numel = 0;
  std::vector<int64_t> out;   // collapsed dims
  int64_t inner = 1;
  bool row_mode = false;
  std::vector<Source> src;    // [0] chain value, [1 + k] node input k
};

struct Plan {
  std::vector<Stage> stages;
  int64_t numel = 0;
};

// Dims of the broadcast of a and b (shape inference has validated them; a
// mismatch here means run-time tensors disagree with the node).
ir::Dims bcast(const ir::Dims& a, const ir::Dims& b, const std::string& label) {
  size_t r = std::max(a.size(), b.size());
  ir::Dims out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1)
      throw_bad_input(label + ": shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Fills st.out and each used source's strides: size-1 axes dropped, then
// neighbouring axes merged where every used source moves across them as one.
void collapse(Stage& st, const std::vector<const ir::Dims*>& src_dims) {
  const size_t r = st.dims.size();
  std::vector<int64_t> out;
  std::vector<std::vector<int64_t>> strides(st.src.size());
  std::vector<std::vector<int64_t>> raw(st.src.size(), std::vector<int64_t>(r, 0));
  for (size_t k = 0; k < st.src.size(); ++k) {
    if (st.src[k].kind == Kind::kUnused) continue;
    const ir::Dims& d = *src_dims[k];
    int64_t s = 1;
    for (size_t i = r; i-- > 0;) {
      size_t from_end = r - 1 - i;
      int64_t di = from_end < d.size() ? d[d.size() - 1 - from_end] : 1;
      raw[k][i] = di == 1 ? 0 : s;
      s *= di;
    }
  }
  for (size_t i = 0; i < r; ++i) {
    if (st.dims[i] == 1) continue;
    bool merge = !out.empty();
    for (size_t k = 0; merge && k < st.src.size(); ++k)
      if (st.src[k].kind != Kind::kUnused) merge = strides[k].back() == raw[k][i] * st.dims[i];
    if (merge) {
      out.back() *= st.dims[i];
      for (size_t k = 0; k < st.src.size(); ++k)
        if (st.src[k].kind != Kind::kUnused) strides[k].back() = raw[k][i];
    } else {
      out.push_back(st.dims[i]);
      for (size_t k = 0; k < st.src.size(); ++k)
        if (st.src[k].kind != Kind::kUnused) strides[k].push_back(raw[k][i]);
    }
  }
  if (out.empty()) {
    out.push_back(1);
    for (size_t k = 0; k < st.src.size(); ++k)
      if (st.src[k].kind != Kind::kUnused) strides[k].push_back(0);
  }
  st.out = out;
  st.inner = out.back();
  st.row_mode = st.inner >= kRowMode;
  for (size_t k = 0; k < st.src.size(); ++k) {
    Source& s = st.src[k];
    if (s.kind == Kind::kUnused) continue;
    s.strides = std::move(strides[k]);
    s.inner_stride = s.strides.back();
  }
}

Plan make_plan(const std::vector<Step>& steps, const std::vector<const ir::Dims*>& in, const ir::Dims& out_dims,
               const std::string& label) {
  Plan p;
  p.numel = ir::numel_of(out_dims);
  // Shape of the chain value after each op; a new stage starts where it grows.
  ir::Dims cur = *in[0];
  for (int j = 0; j < int(steps.size()); ++j) {
    if (fused::is_binary(steps[j].op)) cur = bcast(cur, *in[size_t(steps[j].operand)], label);
    int64_t n = ir::numel_of(cur);
    if (p.stages.empty() || n != p.stages.back().numel) {
      Stage st;
      st.first = j;
      st.numel = n;
      p.stages.push_back(st);
    }
    p.stages.back().last = j + 1;
    p.stages.back().dims = cur;
  }
  // Inputs no op reads still widen the output: a last stage only broadcasts.
  if (p.stages.empty() || p.stages.back().numel != p.numel) {
    Stage st;
    st.first = st.last = int(steps.size());
    st.numel = p.numel;
    p.stages.push_back(st);
  }
  p.stages.back().dims = out_dims;

  for (size_t s = 0; s < p.stages.size(); ++s) {
    Stage& st = p.stages[s];
    st.src.assign(in.size() + 1, Source{});
    std::vector<const ir::Dims*> dims(in.size() + 1);
    dims[0] = s == 0 ? in[0] : &p.stages[s - 1].dims;
    for (size_t k = 0; k < in.size(); ++k) dims[k + 1] = in[k];
    auto use = [&](size_t k) {
      int64_t n = ir::numel_of(*dims[k]);
      st.src[k].kind = n == st.numel ? Kind::kFull : n == 1 ? Kind::kScalar : Kind::kGather;
    };
    use(0);
    for (int j = st.first; j < st.last; ++j)
      if (fused::is_binary(steps[j].op)) use(size_t(steps[j].operand) + 1);
    collapse(st, dims);
  }
  return p;
}

// An operand for one block of `rows` rows of `inner` elements: `vec` (all
// values, contiguous) or the block constant `sc`; or, for a source that
// varies from row to row, per-row offsets into `base` (a contiguous row when
// row_vec, else one value per row).
struct Operand {
  const float* vec = nullptr;
  float sc = 0.f;
  const float* base = nullptr;
  const int64_t* roff = nullptr;
  bool row_vec = false;
  float row_sc(int64_t i) const { return base[roff[i]]; }
};

void fill(float* d, int64_t n, float v) { std::fill(d, d + n, v); }

// Writes an operand's values for the whole block into d.
void materialize(const Operand& o, int64_t rows, int64_t inner, float* d) {
  if (o.vec) return (void)std::memcpy(d, o.vec, size_t(rows * inner) * sizeof(float));
  if (!o.roff) return fill(d, rows * inner, o.sc);
  for (int64_t i = 0; i < rows; ++i) {
    if (o.row_vec) std::memcpy(d + i * inner, o.base + o.roff[i], size_t(inner) * sizeof(float));
    else fill(d + i * inner, inner, o.row_sc(i));
  }
}

// Runs ops [first, last) over one block into dst; `buf` holds kBlock floats.
void run_block(const Stage& st, const std::vector<Step>& steps, const Operand* ops, int64_t rows, int64_t inner,
               float* buf, float* dst) {
  const int64_t n = rows * inner;
  if (st.first == st.last) return materialize(ops[0], rows, inner, dst);  // broadcast copy only
  const float* cur = ops[0].vec;
  int j = st.first;
  if (!cur) {
    const Step& s0 = steps[size_t(j)];
    const Operand& o = ops[s0.operand + 1];
    float* d = j + 1 == st.last ? dst : buf;
    if (fused::is_binary(s0.op) && o.vec && !ops[0].row_vec) {
      // A chain value constant per block or per row meets a contiguous
      // operand (the squeeze-excite Mul): swap the roles rather than
      // splatting the constant first.
      Step flipped = s0;
      flipped.swap = !s0.swap;
      if (!ops[0].roff) fused::apply_binary(flipped, o.vec, nullptr, ops[0].sc, d, n);
      else fused::apply_binary_rows(flipped, o.vec, ops[0].base, ops[0].roff, false, rows, inner, d);
      cur = d;
      ++j;
    } else {
      materialize(ops[0], rows, inner, buf);
      cur = buf;
    }
  }
  for (; j < st.last; ++j) {
    float* d = j + 1 == st.last ? dst : buf;
    const Step& s = steps[size_t(j)];
    if (!fused::is_binary(s.op)) {
      fused::apply_unary(s, cur, d, n);
    } else {
      const Operand& o = ops[s.operand + 1];
      if (!o.roff) fused::apply_binary(s, cur, o.vec, o.sc, d, n);
      else fused::apply_binary_rows(s, cur, o.base, o.roff, o.row_vec, rows, inner, d);
    }
    cur = d;
  }
}

// Walks the collapsed rows of a stage, keeping every source's offset at the
// start of the current row (0 for unused ones); stepping to the next row
// needs no division. Strides are copied into one flat table so the step is
// a few adds.
class RowCursor {
 public:
  explicit RowCursor(const Stage& st) : outer_(st.out), ns_(st.src.size()), off(ns_, 0) {
    outer_.pop_back();  // the inner axis is walked by the caller
    ix_.assign(outer_.size(), 0);
    str_.assign(outer_.size() * ns_, 0);
    for (size_t d = 0; d < outer_.size(); ++d)
      for (size_t k = 0; k < ns_; ++k)
        if (st.src[k].kind != Kind::kUnused) str_[d * ns_ + k] = st.src[k].strides[d];
  }
  void seek(int64_t row) {
    row_ = row;
    std::fill(off.begin(), off.end(), 0);
    for (size_t d = outer_.size(); d-- > 0;) {
      ix_[d] = row % outer_[d];
      row /= outer_[d];
      for (size_t k = 0; k < ns_; ++k) off[k] += ix_[d] * str_[d * ns_ + k];
    }
  }
  void next() {
    ++row_;
    for (size_t d = outer_.size(); d-- > 0;) {
      const int64_t* s = &str_[d * ns_];
      for (size_t k = 0; k < ns_; ++k) off[k] += s[k];
      if (++ix_[d] < outer_[d]) return;
      for (size_t k = 0; k < ns_; ++k) off[k] -= ix_[d] * s[k];
      ix_[d] = 0;
    }
  }
  // Moves to `row`, stepping when it is the next one.
  void go(int64_t row) {
    if (row == row_ + 1) next();
    else if (row != row_) seek(row);
  }

 private:
  std::vector<int64_t> outer_;
  size_t ns_;
  std::vector<int64_t> ix_, str_;
  int64_t row_ = -2;

 public:
  std::vector<int64_t> off;  // per source, at the start of the current row
};

// parallel_for over `tasks` of about `size` elements each; small stages run
// inline without touching the pool (its setup costs microseconds).
template <class F> void for_tasks(int64_t tasks, int64_t size, F&& fn) {
  if (tasks * size <= ew::kGrain) return fn(int64_t(0), tasks);
  parallel_for(tasks, [&](int64_t b, int64_t e) { fn(b, e); }, std::max<int64_t>(1, ew::kGrain / size));
}

void run_stage(const Stage& st, const std::vector<Step>& steps, const std::vector<const float*>& base, float* dst) {
  const size_t ns = st.src.size();
  const int64_t rows = st.numel / st.inner;
  if (st.row_mode) {
    // Long rows: blocks never cross a row, so every source is contiguous or
    // constant within a block.
    const int64_t pieces0 = (st.inner + kBlock - 1) / kBlock;
    const int64_t plen = std::min(kBlock, ((st.inner + pieces0 - 1) / pieces0 + 15) / 16 * 16);
    const int64_t pieces = (st.inner + plen - 1) / plen;
    for_tasks(rows * pieces, plen, [&](int64_t b, int64_t e) {
      alignas(64) float buf[kBlock];
      RowCursor cur(st);
      std::vector<Operand> ops(ns);
      for (int64_t t = b; t < e; ++t) {
        const int64_t row = t / pieces, c0 = (t % pieces) * plen, n = std::min(plen, st.inner - c0);
        cur.go(row);
        for (size_t k = 0; k < ns; ++k) {
          const Source& s = st.src[k];
          if (s.kind == Kind::kUnused) continue;
          if (s.inner_stride) ops[k].vec = base[k] + cur.off[k] + c0;
          else ops[k].vec = nullptr, ops[k].sc = base[k][cur.off[k]];
        }
        run_block(st, steps, ops.data(), 1, n, buf, dst + row * st.inner + c0);
      }
    });
    return;
  }
  // Short rows: blocks of whole rows. Full and scalar sources are read in
  // place; the others per row (offsets from the cursor), or gathered into a
  // buffer when rows are too short for per-row loops to pay.
  const int64_t rpb = std::max<int64_t>(1, kBlock / st.inner);
  const bool gather = st.inner < 16;
  std::vector<size_t> varying;
  for (size_t k = 0; k < ns; ++k)
    if (st.src[k].kind == Kind::kGather) varying.push_back(k);
  for_tasks((rows + rpb - 1) / rpb, rpb * st.inner, [&](int64_t b, int64_t e) {
    alignas(64) float buf[kBlock];
    std::vector<int64_t> roff(varying.size() * size_t(rpb));
    std::vector<float> gbuf(gather ? varying.size() * size_t(kBlock) : 0);
    RowCursor cur(st);
    std::vector<Operand> ops(ns);
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t r0 = blk * rpb, nr = std::min(rpb, rows - r0);
      for (size_t k = 0; k < ns; ++k) {
        const Source& s = st.src[k];
        if (s.kind == Kind::kFull) ops[k].vec = base[k] + r0 * st.inner;
        else if (s.kind == Kind::kScalar) ops[k].vec = nullptr, ops[k].sc = base[k][0];
      }
      if (!varying.empty()) {
        if (st.out.size() == 2) {  // [rows, inner]: offsets are row * stride
          for (size_t v = 0; v < varying.size(); ++v) {
            const int64_t stride = st.src[varying[v]].strides[0];
            int64_t* ro = roff.data() + v * size_t(rpb);
            for (int64_t i = 0; i < nr; ++i) ro[i] = (r0 + i) * stride;
          }
        } else {
          for (int64_t i = 0; i < nr; ++i) {
            cur.go(r0 + i);
            for (size_t v = 0; v < varying.size(); ++v) roff[v * size_t(rpb) + size_t(i)] = cur.off[varying[v]];
          }
        }
        for (size_t v = 0; v < varying.size(); ++v) {
          Operand& o = ops[varying[v]];
          o = Operand{};
          o.base = base[varying[v]];
          o.roff = roff.data() + v * size_t(rpb);
          o.row_vec = st.src[varying[v]].inner_stride != 0;
          if (gather) {
            float* g = gbuf.data() + v * size_t(kBlock);
            materialize(o, nr, st.inner, g);
            o = Operand{};
            o.vec = g;
          }
        }
      }
      run_block(st, steps, ops.data(), nr, st.inner, buf, dst + r0 * st.inner);
    }
  });
}

class FusedElementwiseKernel : public Kernel {
 public:
  explicit FusedElementwiseKernel(const ir::Node& n) : label_(n.label()) {
    parse(n);
    for (const ir::Value* v : n.inputs) {
      if (!v) throw_bad_input(label_ + ": an input is missing");
      require_dtype(n, "input", v->dtype, {DataType::kFloat32});
      key_.push_back(v->dims);
    }
    if (n.outputs.size() != 1 || !n.outputs[0]) throw_bad_input(label_ + ": needs exactly one output");
    out_dims_ = n.outputs[0]->dims;
    plan_ = make_plan(steps_, dims_ptrs(key_), out_dims_, label_);
  }
  std::string tactic() const override { return "cpu.fused_eltwise"; }

  void run(const std::vector<const ir::Tensor*>& in, const std::vector<ir::Tensor*>& out) override {
    ir::Tensor& o = *out[0];
    if (in.size() != key_.size())
      throw_bad_input(label_ + ": got " + std::to_string(in.size()) + " inputs, expected " +
                      std::to_string(key_.size()));
    bool same = o.dims() == out_dims_;
    for (size_t k = 0; same && k < in.size(); ++k) same = in[k]->dims() == key_[k];
    Plan local;
    if (!same) {
      std::vector<const ir::Dims*> d;
      for (const ir::Tensor* t : in) d.push_back(&t->dims());
      local = make_plan(steps_, d, o.dims(), label_);
    }
    const Plan& p = same ? plan_ : local;
    if (p.numel == 0) return;
    std::vector<const float*> base(in.size() + 1);
    for (size_t k = 0; k < in.size(); ++k) base[k + 1] = in[k]->data<float>();
    base[0] = base[1];
    std::vector<float> tmp[2];  // stage results, ping-pong
    for (size_t s = 0; s < p.stages.size(); ++s) {
      const Stage& st = p.stages[s];
      float* dst = o.data<float>();
      if (s + 1 < p.stages.size()) {
        tmp[s & 1].resize(size_t(st.numel));
        dst = tmp[s & 1].data();
      }
      run_stage(st, steps_, base, dst);
      base[0] = dst;
    }
  }

 private:
  static std::vector<const ir::Dims*> dims_ptrs(const std::vector<ir::Dims>& v) {
    std::vector<const ir::Dims*> p;
    for (const auto& d : v) p.push_back(&d);
    return p;
  }

  // Shape inference validated these; rechecked so a kernel never indexes
  // with a bad operand even when created directly.
  void parse(const ir::Node& n) {
    auto get = [&](const char* name, ir::Attribute::Kind kind) -> const ir::Attribute& {
      auto it = n.attrs.find(name);
      if (it == n.attrs.end() || it->second.kind != kind)
        throw_bad_input(label_ + ": attribute '" + name + "' is missing or has the wrong type");
      return it->second;
    };
    const auto& ops = get("ops", ir::Attribute::Kind::kStrings).strings;
    const auto& operand = get("operand", ir::Attribute::Kind::kInts).ints;
    const auto& swap = get("swap", ir::Attribute::Kind::kInts).ints;
    const auto& alpha = get("alpha", ir::Attribute::Kind::kFloats).floats;
    const auto& beta = get("beta", ir::Attribute::Kind::kFloats).floats;
    if (ops.empty() || operand.size() != ops.size() || swap.size() != ops.size() || alpha.size() != ops.size() ||
        beta.size() != ops.size())
      throw_bad_input(label_ + ": attributes ops/operand/swap/alpha/beta must have one entry per op");
    for (size_t j = 0; j < ops.size(); ++j) {
      Step s;
      if (!fused::parse_op(ops[j], &s.op)) throw_bad_input(label_ + ": op '" + ops[j] + "' cannot be fused");
      const bool bin = fused::is_binary(s.op);
      if (bin ? (operand[j] < 0 || operand[j] >= int64_t(n.inputs.size())) : operand[j] != -1)
        throw_bad_input(label_ + ": op " + std::to_string(j) + " '" + ops[j] + "' has a bad operand " +
                        std::to_string(operand[j]));
      if (swap[j] != 0 && (swap[j] != 1 || !bin))
        throw_bad_input(label_ + ": op " + std::to_string(j) + " '" + ops[j] + "' has a bad swap flag");
      s.operand = int(operand[j]);
      s.swap = swap[j] != 0;
      s.alpha = alpha[j];
      s.beta = beta[j];
      steps_.push_back(s);
    }
  }

  std::string label_;
  std::vector<Step> steps_;
  std::vector<ir::Dims> key_;
  ir::Dims out_dims_;
  Plan plan_;
};

}  // namespace

void register_fused_kernels(KernelRegistry& r) {
  r.add("FusedElementwise", [](const ir::Node& n) { return std::make_unique<FusedElementwiseKernel>(n); }, "kiln");
}

}  // namespace kiln::cpu
