// Concat, Split, Slice, Gather*, Pad, Tile, DepthToSpace/SpaceToDepth against
// references written here with explicit multi-index loops.
#include <gtest/gtest.h>

#include <climits>
#include <functional>

#include "kiln/error.h"
#include "support/op_test.h"

using namespace kiln;
using namespace kiln::test;
using ir::Dims;
using ir::Tensor;

namespace {

Tensor ints(std::vector<int64_t> v) { return Tensor::from_int64(v, {int64_t(v.size())}); }
Tensor ints32(std::vector<int32_t> v, Dims d) {
  Tensor t(DataType::kInt32, d);
  for (size_t i = 0; i < v.size(); ++i) t.data<int32_t>()[i] = v[i];
  return t;
}



// out[o] = x[src(o)] for every output index; src returns the input multi-index.
void expect_gathered(const Tensor& out, const Tensor& x, const Dims& want,
                     const std::function<std::vector<int64_t>(const std::vector<int64_t>&)>& src) {
  ASSERT_EQ(out.dims(), want);
  ASSERT_EQ(out.dtype(), x.dtype());
  auto xv = x.to_double(), yv = out.to_double();
  for (int64_t f = 0; f < out.numel(); ++f)
    ASSERT_EQ(yv[size_t(f)], xv[size_t(ravel(src(unravel(f, want)), x.dims()))]) << "at flat " << f;
}

}  // namespace

TEST(TensorOps, ConcatAlongEveryAxis) {
  for (DataType dt : {DataType::kFloat32, DataType::kInt64, DataType::kFloat16, DataType::kBool}) {
    for (int64_t axis : {0, 1, 2, -1}) {
      const int64_t a = axis < 0 ? axis + 3 : axis;
      std::vector<Tensor> parts;
      const std::vector<int64_t> lens = {2, 0, 3};  // includes an empty part
      for (size_t k = 0; k < lens.size(); ++k) {
        Dims d = {2, 3, 4};
        d[size_t(a)] = lens[k];
        parts.push_back(random_tensor(dt, d, uint32_t(100 + k), -50, 50));
      }
      auto out = run_op("Concat", {in(parts[0]), in(parts[1]), in(parts[2])}, {{"axis", attr_i(axis)}});
      Dims want = {2, 3, 4};
      want[size_t(a)] = 5;
      ASSERT_EQ(out[0].dims(), want);
      auto yv = out[0].to_double();
      auto p0 = parts[0].to_double(), p2 = parts[2].to_double();
      for (int64_t f = 0; f < out[0].numel(); ++f) {
        auto idx = unravel(f, want);
        const bool first = idx[size_t(a)] < 2;
        if (!first) idx[size_t(a)] -= 2;
        const double expect = first ? p0[size_t(ravel(idx, parts[0].dims()))] : p2[size_t(ravel(idx, parts[2].dims()))];
        ASSERT_EQ(yv[size_t(f)], expect);
      }
    }
  }
  Tensor a = random_tensor(DataType::kFloat32, {2, 3}, 1), b = random_tensor(DataType::kFloat32, {3, 3}, 2);
  EXPECT_EQ(code_of([&] { run_op("Concat", {in(a), in(b)}, {{"axis", attr_i(1)}}); }), ErrorCode::kBadInput);
}

TEST(TensorOps, SplitBySizesAndEvenParts) {
  Tensor x = random_tensor(DataType::kInt32, {3, 7, 2}, 5, -100, 100);
  auto check = [&](const std::vector<Tensor>& outs, const std::vector<int64_t>& sizes) {
    ASSERT_EQ(outs.size(), sizes.size());
    int64_t base = 0;
    for (size_t k = 0; k < outs.size(); ++k) {
      expect_gathered(outs[k], x, {3, sizes[k], 2}, [&](std::vector<int64_t> i) {
        i[1] += base;
        return i;
      });
      base += sizes[k];
    }
  };
  check(run_op("Split", {in(x), cin(ints({2, 0, 5}))}, {{"axis", attr_i(1)}}, 3), {2, 0, 5});
  check(run_op("Split", {in(x)}, {{"axis", attr_i(-2)}, {"num_outputs", attr_i(3)}}, 3), {3, 3, 1});
  check(run_op("Split", {in(x)}, {{"axis", attr_i(1)}}, 4), {2, 2, 2, 1});
  auto outs = run_op("Split", {in(x)}, {{"num_outputs", attr_i(3)}}, 3);  // axis 0: one block each
  for (int k = 0; k < 3; ++k) expect_gathered(outs[size_t(k)], x, {1, 7, 2}, [&](std::vector<int64_t> i) {
      i[0] += k;
      return i;
    });
  EXPECT_EQ(code_of([&] { run_op("Split", {in(x), cin(ints({2, 2}))}, {{"axis", attr_i(1)}}, 2); }),
            ErrorCode::kBadInput);
}

// Python's slice-index adjustment, written independently of the kernel's.
std::vector<int64_t> slice_indices(int64_t dim, int64_t start, int64_t end, int64_t step) {
  auto adjust = [&](int64_t v) {
    if (v < 0) {
      v = v < -dim ? -1 : v + dim;  // avoid overflow at INT64_MIN
      if (v < 0) v = step < 0 ? -1 : 0;
    } else if (v >= dim) {
      v = step < 0 ? dim - 1 : dim;
    }
    return v;
  };
  std::vector<int64_t> out;
  for (int64_t i = adjust(start), e = adjust(end); step > 0 ? i < e : i > e; i += step) out.push_back(i);
  return out;
}

TEST(TensorOps, SliceMatchesPythonSemantics) {
  struct Case {
    std::vector<int64_t> starts, ends, axes, steps;
  };
  const std::vector<Case> cases = {
      {{0, 0}, {3, 10}, {0, 1}, {1, 1}},
      {{1}, {1000}, {1}, {1}},
      {{1000}, {1000}, {1}, {1}},            // start past the end: empty
      {{0}, {-1}, {1}, {1}},
      {{20, 10, 4}, {0, 0, 1}, {0, 1, 2}, {-1, -3, -2}},
      {{-1, INT64_MAX}, {INT64_MIN, -100}, {-1, 0}, {-1, -2}},
      {{-100, 2}, {INT64_MAX, -1}, {2, -2}, {2, 3}},
      {{5}, {5}, {0}, {-1}},
      {{3}, {-1000}, {-3}, {-4}},
  };
  Tensor x = random_tensor(DataType::kFloat32, {20, 10, 5}, 11);
  for (const Case& c : cases) {
    std::vector<std::vector<int64_t>> picks(3);
    for (int a = 0; a < 3; ++a) picks[size_t(a)] = slice_indices(x.dims()[size_t(a)], 0, INT64_MAX, 1);
    for (size_t i = 0; i < c.axes.size(); ++i) {
      const int64_t a = c.axes[i] < 0 ? c.axes[i] + 3 : c.axes[i];
      picks[size_t(a)] = slice_indices(x.dims()[size_t(a)], c.starts[i], c.ends[i], c.steps[i]);
    }
    Dims want = {int64_t(picks[0].size()), int64_t(picks[1].size()), int64_t(picks[2].size())};
    auto out = run_op("Slice", {in(x), cin(ints(c.starts)), cin(ints(c.ends)), cin(ints(c.axes)), cin(ints(c.steps))});
    expect_gathered(out[0], x, want, [&](const std::vector<int64_t>& o) {
      return std::vector<int64_t>{picks[0][size_t(o[0])], picks[1][size_t(o[1])], picks[2][size_t(o[2])]};
    });
  }
  // Default axes and steps; int8 data.
  Tensor y = random_tensor(DataType::kInt8, {6, 4}, 12, -100, 100);
  auto out = run_op("Slice", {in(y), cin(ints({1, -3})), cin(ints({5, 4}))});
  expect_gathered(out[0], y, {4, 3}, [](std::vector<int64_t> o) { return std::vector<int64_t>{o[0] + 1, o[1] + 1}; });
  EXPECT_EQ(code_of([&] { run_op("Slice", {in(y), cin(ints({0})), cin(ints({2})), cin(ints({0})), cin(ints({0}))}); }),
            ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("Slice", {in(y), in(ints({0})), cin(ints({2}))}); }), ErrorCode::kUnsupported);
}

TEST(TensorOps, GatherWithNegativeAndMultiDimIndices) {
  Tensor x = random_tensor(DataType::kFloat16, {5, 4, 3}, 20);
  for (int64_t axis : {0, 1, 2, -1}) {
    const int64_t a = axis < 0 ? axis + 3 : axis;
    const int64_t dim = x.dims()[size_t(a)];
    std::vector<int64_t> raw = {0, -1, 2, -4, 3, 1};
    for (auto& v : raw) v = std::max<int64_t>(-dim, std::min<int64_t>(dim - 1, v));  // keep in range per axis
    Tensor id = Tensor::from_int64(raw, {2, 3});
    auto out = run_op("Gather", {in(x), in(id)}, {{"axis", attr_i(axis)}});
    Dims want(x.dims().begin(), x.dims().begin() + a);
    want.insert(want.end(), {2, 3});
    want.insert(want.end(), x.dims().begin() + a + 1, x.dims().end());
    expect_gathered(out[0], x, want, [&](const std::vector<int64_t>& o) {
      std::vector<int64_t> i(o.begin(), o.begin() + a);
      int64_t v = raw[size_t(o[size_t(a)] * 3 + o[size_t(a) + 1])];
      i.push_back(v < 0 ? v + dim : v);
      i.insert(i.end(), o.begin() + a + 2, o.end());
      return i;
    });
  }
  // Rank-0 index drops the axis; int32 indices.
  Tensor s = ints32({-2}, {});
  expect_gathered(run_op("Gather", {in(x), in(s)}, {{"axis", attr_i(1)}})[0], x, {5, 3},
                  [](const std::vector<int64_t>& o) { return std::vector<int64_t>{o[0], 2, o[1]}; });
  EXPECT_EQ(code_of([&] { run_op("Gather", {in(x), in(ints({5}))}); }), ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("Gather", {in(x), in(ints({-6}))}); }), ErrorCode::kBadInput);
}

TEST(TensorOps, GatherElementsAndGatherND) {
  Tensor x = random_tensor(DataType::kFloat32, {3, 4}, 30);
  Tensor idx = Tensor::from_int64({1, -1, 0, 3, -4, 2}, {2, 3});
  expect_gathered(run_op("GatherElements", {in(x), in(idx)}, {{"axis", attr_i(1)}})[0], x, {2, 3},
                  [&](const std::vector<int64_t>& o) {
                    int64_t v = idx.data<int64_t>()[o[0] * 3 + o[1]];
                    return std::vector<int64_t>{o[0], v < 0 ? v + 4 : v};
                  });
  Tensor idx0 = Tensor::from_int64({2, -3, 1, 0}, {1, 4});
  expect_gathered(run_op("GatherElements", {in(x), in(idx0)}, {{"axis", attr_i(-2)}})[0], x, {1, 4},
                  [&](const std::vector<int64_t>& o) {
                    int64_t v = idx0.data<int64_t>()[o[1]];
                    return std::vector<int64_t>{v < 0 ? v + 3 : v, o[1]};
                  });

  Tensor d = random_tensor(DataType::kInt64, {2, 3, 4}, 31, -1000, 1000);
  Tensor nd = Tensor::from_int64({1, 2, -1, 0, 0, -1}, {3, 2});  // full 2-D coordinates -> rows of 4
  expect_gathered(run_op("GatherND", {in(d), in(nd)})[0], d, {3, 4}, [&](const std::vector<int64_t>& o) {
    int64_t a = nd.data<int64_t>()[o[0] * 2], b = nd.data<int64_t>()[o[0] * 2 + 1];
    return std::vector<int64_t>{a < 0 ? a + 2 : a, b < 0 ? b + 3 : b, o[1]};
  });
  Tensor bd = Tensor::from_int64({2, 0, 1, -1}, {2, 2, 1});  // batch_dims=1: per batch, pick along axis 1
  expect_gathered(run_op("GatherND", {in(d), in(bd)}, {{"batch_dims", attr_i(1)}})[0], d, {2, 2, 4},
                  [&](const std::vector<int64_t>& o) {
                    int64_t v = bd.data<int64_t>()[o[0] * 2 + o[1]];
                    return std::vector<int64_t>{o[0], v < 0 ? v + 3 : v, o[2]};
                  });
}

// Pad reference: walk an out-of-range coordinate back into the axis by the mode's rule.
int64_t pad_source(int64_t i, int64_t n, const std::string& mode) {
  if (i >= 0 && i < n) return i;
  if (mode == "constant") return -1;
  if (mode == "edge") return i < 0 ? 0 : n - 1;
  if (mode == "wrap") {
    while (i < 0) i += n;
    while (i >= n) i -= n;
    return i;
  }
  if (n == 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;  // reflect, bouncing off both ends
  return i;
}

TEST(TensorOps, PadModes) {
  struct Case {
    Dims dims;
    std::vector<int64_t> pads, axes;
  };
  const std::vector<Case> cases = {
      {{1, 3, 4, 5}, {0, 0, 1, 3, 0, 0, 2, 4}, {}},
      {{2, 3, 4}, {2, -1, 0, 0, 5, -2}, {}},   // negative pads crop
      {{3, 5}, {7, 9}, {-1}},                  // pads longer than the axis
      {{2, 4, 3}, {1, 2, 2, 1}, {2, 0}},
      {{4, 1}, {0, 3, 0, 2}, {}},
  };
  for (const std::string mode : {"constant", "reflect", "edge", "wrap"}) {
    uint32_t seed = 40;
    for (const Case& c : cases) {
      Tensor x = random_tensor(DataType::kFloat32, c.dims, seed++);
      const size_t r = c.dims.size();
      std::vector<int64_t> axes = c.axes, before(r, 0), after(r, 0);
      if (axes.empty())
        for (size_t a = 0; a < r; ++a) axes.push_back(int64_t(a));
      for (size_t i = 0; i < axes.size(); ++i) {
        const size_t a = size_t(axes[i] < 0 ? axes[i] + int64_t(r) : axes[i]);
        before[a] = c.pads[i];
        after[a] = c.pads[axes.size() + i];
      }
      Dims want = c.dims;
      for (size_t a = 0; a < r; ++a) want[a] += before[a] + after[a];
      std::vector<OpInput> ins = {in(x), cin(ints(c.pads)), cin(Tensor::from_float({2.5f}, {}))};
      if (!c.axes.empty()) ins.push_back(cin(ints(c.axes)));
      auto out = run_op("Pad", ins, {{"mode", attr_s(mode)}});
      ASSERT_EQ(out[0].dims(), want) << mode;
      auto xv = x.to_double(), yv = out[0].to_double();
      for (int64_t f = 0; f < out[0].numel(); ++f) {
        auto o = unravel(f, want);
        std::vector<int64_t> i(r);
        bool constant = false;
        for (size_t a = 0; a < r; ++a) {
          i[a] = pad_source(o[a] - before[a], c.dims[a], mode);
          constant = constant || i[a] < 0;
        }
        ASSERT_EQ(yv[size_t(f)], constant ? 2.5 : xv[size_t(ravel(i, c.dims))]) << mode << " at " << f;
      }
    }
  }
  // Runtime constant_value and int32 data with the default (zero) value.
  Tensor y = random_tensor(DataType::kInt32, {2, 2}, 49, 1, 9);
  auto out = run_op("Pad", {in(y), cin(ints({1, 0, 0, 1}))});
  EXPECT_EQ(out[0].to_int64(), (std::vector<int64_t>{0, 0, 0, y.data<int32_t>()[0], y.data<int32_t>()[1], 0,
                                                     y.data<int32_t>()[2], y.data<int32_t>()[3], 0}));
  Tensor v = ints32({-7}, {});
  out = run_op("Pad", {in(y), cin(ints({0, 1, 0, 0})), in(v)});
  EXPECT_EQ(out[0].data<int32_t>()[0], -7);
  EXPECT_EQ(code_of([&] { run_op("Pad", {in(y), cin(ints({0, -3, 0, 0}))}); }), ErrorCode::kBadInput);
  EXPECT_EQ(code_of([&] { run_op("Pad", {in(y), in(ints({0, 1, 0, 0}))}); }), ErrorCode::kUnsupported);
}

TEST(TensorOps, TileRepeatsEveryAxis) {
  for (DataType dt : {DataType::kFloat32, DataType::kUInt8}) {
    Tensor x = random_tensor(dt, {2, 3, 4}, 50, 0, 200);
    const std::vector<int64_t> reps = {3, 1, 2};
    auto out = run_op("Tile", {in(x), cin(ints(reps))});
    expect_gathered(out[0], x, {6, 3, 8}, [](const std::vector<int64_t>& o) {
      return std::vector<int64_t>{o[0] % 2, o[1] % 3, o[2] % 4};
    });
    EXPECT_EQ(run_op("Tile", {in(x), cin(ints({1, 0, 2}))})[0].dims(), (Dims{2, 0, 8}));
  }
}

TEST(TensorOps, DepthToSpaceAndBack) {
  const int64_t N = 2, C = 12, H = 3, W = 5, b = 2, c = C / (b * b);
  Tensor x = random_tensor(DataType::kFloat32, {N, C, H, W}, 60);
  for (const std::string mode : {"DCR", "CRD"}) {
    auto out = run_op("DepthToSpace", {in(x)}, {{"blocksize", attr_i(b)}, {"mode", attr_s(mode)}});
    expect_gathered(out[0], x, {N, c, H * b, W * b}, [&](const std::vector<int64_t>& o) {
      const int64_t bh = o[2] % b, bw = o[3] % b;
      const int64_t ch = mode == "DCR" ? (bh * b + bw) * c + o[1] : o[1] * b * b + bh * b + bw;
      return std::vector<int64_t>{o[0], ch, o[2] / b, o[3] / b};
    });
  }
  Tensor y = random_tensor(DataType::kInt64, {N, 3, 4, 6}, 61, -99, 99);
  auto s2d = run_op("SpaceToDepth", {in(y)}, {{"blocksize", attr_i(2)}});
  expect_gathered(s2d[0], y, {N, 12, 2, 3}, [&](const std::vector<int64_t>& o) {
    const int64_t blk = o[1] / 3, ch = o[1] % 3;
    return std::vector<int64_t>{o[0], ch, o[2] * 2 + blk / 2, o[3] * 2 + blk % 2};
  });
  // DCR DepthToSpace inverts SpaceToDepth.
  auto back = run_op("DepthToSpace", {in(s2d[0])}, {{"blocksize", attr_i(2)}});
  EXPECT_EQ(max_rel_error(back[0], y), 0.0);
  EXPECT_EQ(code_of([&] { run_op("DepthToSpace", {in(y)}, {{"blocksize", attr_i(2)}}); }), ErrorCode::kBadInput);
}
