// Device time of every kiln::QConv tactic next to every FP16 Conv tactic on
// the same ResNet-50 layer shapes (channels-last, batch 256 and 32), each
// candidate replayed alone in a CUDA graph as the builder times it. One run
// shows where INT8 stands against FP16 per layer; each layer's summary line
// splits the INT8 side into the 1x1 GEMM tiles (cutlass_sm90_i8gemm) and
// every other INT8 tactic (the conv tiles and own kernels). Slow (cuDNN
// candidates and the direct INT8 kernel on the 7x7 stem), so disabled; run
//   kiln_tests --gtest_also_run_disabled_tests --gtest_filter='CudaQConvBench.*'
// (Int8AgainstFp16Timings: a layer of each kind; OneByOneGemmTimings: every
// stride-1 1x1 layer shape of ResNet-50). It fails if a tactic offered for a
// layer throws, or if no tactic of either precision runs.
// To profile one kernel alone (Nsight Compute), narrow the run with
// KILN_QBENCH_LAYER, KILN_QBENCH_TACTIC (substrings of the printed names) and
// KILN_QBENCH_BATCH.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/common.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/libraries.h"
#include "backends/cuda/parity.h"
#include "ir/op_registry.h"
#include "support/op_test.h"

namespace kiln {
namespace {

using test::attr_f;
using test::attr_floats;
using test::attr_i;
using test::attr_ints;
using test::attr_s;
using test::random_tensor;

struct Layer {
  const char* name;
  int64_t c, h, w, k, r, stride, pad;
  bool residual;
  DataType to;  // QConv output dtype (the FP16 Conv always writes fp16)
};

// Fills device memory with pseudo-random bytes (int8) or halves in [-1, 1),
// never NaN; the values do not matter for timing beyond being non-trivial.
cuda::DevicePtr random_device(DataType t, int64_t count, uint32_t seed) {
  const size_t bytes = size_t(count) * dtype_size(t);
  std::vector<uint8_t> host(bytes);
  uint32_t s = seed * 2654435761u + 12345u;
  if (t == DataType::kInt8) {
    for (size_t i = 0; i < bytes; ++i) host[i] = uint8_t((s = s * 1664525u + 1013904223u) >> 24);
  } else {
    uint16_t table[256];
    for (int i = 0; i < 256; ++i) table[i] = float_to_half(float(i - 128) / 128.f);
    uint16_t* h = reinterpret_cast<uint16_t*>(host.data());
    for (int64_t i = 0; i < count; ++i) h[i] = table[(s = s * 1664525u + 1013904223u) >> 24];
  }
  return cuda::upload(host.data(), bytes);
}

// The QConv of `L` at batch n, or the FP16 Conv of the same shape.
std::unique_ptr<ir::Graph> make_node(const Layer& L, int64_t n, bool int8, ir::Node** node) {
  auto g = std::make_unique<ir::Graph>();
  ir::Value* x = g->add_value("x");
  x->dtype = int8 ? DataType::kInt8 : DataType::kFloat16;
  x->dims = {n, L.c, L.h, L.w};
  x->has_shape = true;
  g->inputs.push_back(x);
  const ir::Dims wd{L.k, L.c, L.r, L.r};
  ir::Tensor wt = int8 ? random_tensor(DataType::kInt8, wd, 1, -127.0, 128.0)
                       : random_tensor(DataType::kFloat16, wd, 1, -0.05, 0.05);
  ir::Tensor bt = random_tensor(int8 ? DataType::kFloat32 : DataType::kFloat16, {L.k}, 2, -0.5, 0.5);
  std::vector<ir::Value*> ins{x, g->add_constant("w", wt), g->add_constant("b", bt)};
  const int64_t p = (L.h + 2 * L.pad - L.r) / L.stride + 1, q = (L.w + 2 * L.pad - L.r) / L.stride + 1;
  if (L.residual) {
    ir::Value* z = g->add_value("z");
    z->dtype = int8 ? DataType::kInt8 : DataType::kFloat16;
    z->dims = {n, L.k, p, q};
    z->has_shape = true;
    g->inputs.push_back(z);
    ins.push_back(z);
  }
  ir::Value* y = g->add_value("y");
  ir::Node* nd = g->add_node(int8 ? "QConv" : "Conv", "conv", ins, {y});
  nd->attrs = {{"strides", attr_ints({L.stride, L.stride})},
               {"pads", attr_ints({L.pad, L.pad, L.pad, L.pad})},
               {"activation", attr_s("Relu")},
               {"activation_params", attr_floats({})}};
  if (int8) {
    nd->domain = "kiln";
    nd->attrs["group"] = attr_i(1);
    nd->attrs["dilations"] = attr_ints({1, 1});
    nd->attrs["x_scale"] = attr_f(0.02f);
    nd->attrs["w_scales"] = attr_floats(std::vector<float>(size_t(L.k), 0.004f));
    nd->attrs["to"] = attr_i(int64_t(L.to));
    if (L.to == DataType::kInt8) nd->attrs["y_scale"] = attr_f(0.05f);
    if (L.residual) nd->attrs["z_scale"] = attr_f(0.03f);
  } else {
    nd->opset = 18;
  }
  g->outputs = {y};
  ir::infer_shapes(*g, nullptr);
  EXPECT_EQ(y->dims, (ir::Dims{n, L.k, p, q})) << L.name;
  for (ir::Value* v : {x, y, L.residual ? ins[3] : nullptr})
    if (v) v->layout = ir::Layout::kNHWC;
  *node = nd;
  return g;
}

// Whether `name` contains the environment variable `var`'s value (or it is unset).
bool selected(const char* var, const std::string& name) {
  const char* want = std::getenv(var);
  return !want || name.find(want) != std::string::npos;
}

struct Timed {
  std::string name;
  double ms = NAN;
};

// Median ms of every tactic of `n` (NaN where it threw: printed, test fails).
std::vector<Timed> time_tactics(const ir::Node& n, cudaStream_t stream, cuda::Libraries& libs, const char* layer) {
  std::vector<cuda::DevicePtr> keep;
  std::vector<const void*> in_ptrs;
  uint32_t seed = 3;
  for (ir::Value* v : n.inputs) {
    if (!v) {
      in_ptrs.push_back(nullptr);
      continue;
    }
    if (v->is_constant()) keep.push_back(cuda::upload(v->constant->raw(), v->constant->nbytes()));
    else keep.push_back(random_device(v->dtype, ir::numel_of(v->dims), seed++));
    in_ptrs.push_back(keep.back().get());
  }
  const ir::Value* y = n.outputs[0];
  keep.push_back(cuda::device_alloc(size_t(ir::numel_of(y->dims)) * dtype_size(y->dtype)));
  std::vector<void*> out_ptrs{keep.back().get()};
  std::vector<Timed> out;
  for (const cuda::Tactic& t : cuda::Registry::global().tactics(n)) {
    if (!selected("KILN_QBENCH_TACTIC", t.name)) continue;
    Timed r{t.name};
    try {
      auto k = t.make();
      cuda::DevicePtr ws;
      if (k->workspace_bytes()) ws = cuda::device_alloc(k->workspace_bytes());
      cuda::Launch l{stream, ws.get(), &libs};
      k->enqueue(in_ptrs, out_ptrs, l);
      cuda::check(cudaStreamSynchronize(stream), t.name.c_str());
      r.ms = cuda::graph_replay_ms([&] { k->enqueue(in_ptrs, out_ptrs, l); }, stream, 10, 4);
    } catch (const Error& e) {
      cudaStreamSynchronize(stream);
      ADD_FAILURE() << layer << " " << t.name << ": " << e.what();
    }
    out.push_back(r);
  }
  return out;
}

bool is_gemm(const Timed& t) { return t.name.rfind("cutlass_sm90_i8gemm:", 0) == 0; }

// The fastest of `v` (of the GEMM tiles only, or of the others only, when
// `gemm` is given); null when none ran.
const Timed* best(const std::vector<Timed>& v, int gemm = -1) {
  const Timed* b = nullptr;
  for (const Timed& t : v)
    if (std::isfinite(t.ms) && (gemm < 0 || int(is_gemm(t)) == gemm) && (!b || t.ms < b->ms)) b = &t;
  return b;
}

std::string describe(const Timed* t) {
  if (!t) return "-";
  char buf[160];
  std::snprintf(buf, sizeof buf, "%.4f ms (%s)", t->ms, t->name.c_str());
  return buf;
}

// Times every INT8 and FP16 tactic of each layer at each batch and prints
// them, then per layer: best INT8 GEMM tile, best other INT8 tactic, best
// FP16, and FP16 / best INT8.
void time_layers(const std::vector<Layer>& layers) {
  cudaStream_t stream = nullptr;
  cuda::check(cudaStreamCreate(&stream), "cudaStreamCreate");
  cuda::Libraries libs(stream);
  std::printf("%-40s %5s  %-50s %9s   (INT8 tactics | FP16 tactics)\n", "layer", "batch", "tactic", "ms");
  for (int64_t batch : {int64_t(256), int64_t(32)}) {
    if (!selected("KILN_QBENCH_BATCH", std::to_string(batch))) continue;
    for (const Layer& L : layers) {
      if (!selected("KILN_QBENCH_LAYER", L.name)) continue;
      ir::Node* qn = nullptr;
      ir::Node* fn = nullptr;
      auto qg = make_node(L, batch, true, &qn);
      auto fg = make_node(L, batch, false, &fn);
      const std::vector<Timed> q = time_tactics(*qn, stream, libs, L.name);
      const std::vector<Timed> f = time_tactics(*fn, stream, libs, L.name);
      for (const Timed& t : q)
        std::printf("%-40s %5lld  int8 %-45s %9.4f\n", L.name, (long long)batch, t.name.c_str(), t.ms);
      for (const Timed& t : f)
        std::printf("%-40s %5lld  fp16 %-45s %9.4f\n", L.name, (long long)batch, t.name.c_str(), t.ms);
      const Timed* bq = best(q);
      const Timed* bf = best(f);
      if (!std::getenv("KILN_QBENCH_TACTIC")) {
        EXPECT_TRUE(bq && bf) << L.name << " batch " << batch << ": no tactic of one precision ran";
      }
      if (bq && bf)
        std::printf("== %-37s %5lld  int8 gemm %s  int8 other %s  fp16 %s  fp16/int8 %.2fx\n", L.name,
                    (long long)batch, describe(best(q, 1)).c_str(), describe(best(q, 0)).c_str(),
                    describe(bf).c_str(), bf->ms / bq->ms);
      std::fflush(stdout);
    }
  }
  cudaStreamDestroy(stream);
}

TEST(CudaQConvBench, DISABLED_Int8AgainstFp16Timings) {
  KILN_REQUIRE_GPU();
  const std::vector<Layer> layers = {
      {"/conv1/Conv 7x7/2 C3->64", 3, 224, 224, 64, 7, 2, 3, false, DataType::kInt8},
      {"/layer1.0/conv1 1x1 64->64", 64, 56, 56, 64, 1, 1, 0, false, DataType::kInt8},
      {"/layer1.0/conv2 3x3 64->64", 64, 56, 56, 64, 3, 1, 1, false, DataType::kInt8},
      {"/layer1.0/conv3 1x1 64->256 +Z", 64, 56, 56, 256, 1, 1, 0, true, DataType::kInt8},
      {"/layer2.0/conv2 3x3/2 128->128", 128, 56, 56, 128, 3, 2, 1, false, DataType::kInt8},
      {"/layer2.x/conv2 3x3 128->128", 128, 28, 28, 128, 3, 1, 1, false, DataType::kInt8},
      {"/layer2.0/downsample 1x1/2 256->512", 256, 56, 56, 512, 1, 2, 0, false, DataType::kInt8},
      {"/layer3.x/conv2 3x3 256->256", 256, 14, 14, 256, 3, 1, 1, false, DataType::kInt8},
      {"/layer3.x/conv3 1x1 256->1024 +Z", 256, 14, 14, 1024, 1, 1, 0, true, DataType::kInt8},
      {"/layer4.x/conv2 3x3 512->512", 512, 7, 7, 512, 3, 1, 1, false, DataType::kInt8},
      {"/layer4.2/conv3 1x1 512->2048 +Z fp16", 512, 7, 7, 2048, 1, 1, 0, true, DataType::kFloat16},
  };
  time_layers(layers);
}

// Every stride-1 1x1 layer shape of ResNet-50 (torchvision v1.5: the stride
// sits on the 3x3), where the GEMM tiles are offered.
TEST(CudaQConvBench, DISABLED_OneByOneGemmTimings) {
  KILN_REQUIRE_GPU();
  const std::vector<Layer> layers = {
      {"/layer1.0/conv1 1x1 64->64", 64, 56, 56, 64, 1, 1, 0, false, DataType::kInt8},
      {"/layer1.0/downsample 1x1 64->256", 64, 56, 56, 256, 1, 1, 0, false, DataType::kInt8},
      {"/layer1.x/conv3 1x1 64->256 +Z", 64, 56, 56, 256, 1, 1, 0, true, DataType::kInt8},
      {"/layer1.x/conv1 1x1 256->64", 256, 56, 56, 64, 1, 1, 0, false, DataType::kInt8},
      {"/layer2.0/conv1 1x1 256->128", 256, 56, 56, 128, 1, 1, 0, false, DataType::kInt8},
      {"/layer2.x/conv1 1x1 512->128", 512, 28, 28, 128, 1, 1, 0, false, DataType::kInt8},
      {"/layer2.x/conv3 1x1 128->512 +Z", 128, 28, 28, 512, 1, 1, 0, true, DataType::kInt8},
      {"/layer3.0/conv1 1x1 512->256", 512, 28, 28, 256, 1, 1, 0, false, DataType::kInt8},
      {"/layer3.x/conv1 1x1 1024->256", 1024, 14, 14, 256, 1, 1, 0, false, DataType::kInt8},
      {"/layer3.x/conv3 1x1 256->1024 +Z", 256, 14, 14, 1024, 1, 1, 0, true, DataType::kInt8},
      {"/layer4.0/conv1 1x1 1024->512", 1024, 14, 14, 512, 1, 1, 0, false, DataType::kInt8},
      {"/layer4.x/conv1 1x1 2048->512", 2048, 7, 7, 512, 1, 1, 0, false, DataType::kInt8},
      {"/layer4.x/conv3 1x1 512->2048 +Z", 512, 7, 7, 2048, 1, 1, 0, true, DataType::kInt8},
      {"/layer4.2/conv3 1x1 512->2048 +Z fp16", 512, 7, 7, 2048, 1, 1, 0, true, DataType::kFloat16},
  };
  time_layers(layers);
}

}  // namespace
}  // namespace kiln
