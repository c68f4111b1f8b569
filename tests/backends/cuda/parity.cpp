// The GPU parity harness (see parity.h).
#include "backends/cuda/parity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "backends/cpu/kernel.h"
#include "backends/cuda/common.h"
#include "backends/cuda/kernel.h"
#include "backends/cuda/libraries.h"
#include "ir/op_registry.h"

namespace kiln::test {

namespace {

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16; }

struct OneNode {
  std::unique_ptr<ir::Graph> g = std::make_unique<ir::Graph>();
  ir::Node* node = nullptr;
};

OneNode make_graph(const std::string& op_type, const std::string& domain, const std::vector<OpInput>& inputs,
                   const std::map<std::string, ir::Attribute>& attrs, int num_outputs) {
  OneNode m;
  std::vector<ir::Value*> ins;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const OpInput& oi = inputs[k];
    if (!oi.tensor) {
      ins.push_back(nullptr);
      continue;
    }
    std::string name = "in" + std::to_string(k);
    ir::Value* v = oi.constant ? m.g->add_constant(name, *oi.tensor) : m.g->add_value(name);
    if (!oi.constant) {
      v->dtype = oi.tensor->dtype();
      v->dims = oi.tensor->dims();
      v->has_shape = true;
      m.g->inputs.push_back(v);
    }
    ins.push_back(v);
  }
  std::vector<ir::Value*> outs;
  for (int k = 0; k < num_outputs; ++k) outs.push_back(m.g->add_value("out" + std::to_string(k)));
  m.node = m.g->add_node(op_type, "node", ins, outs);
  m.node->domain = domain;
  m.node->attrs = attrs;
  m.node->opset = 18;
  m.g->outputs = outs;
  ir::infer_shapes(*m.g, nullptr);
  return m;
}

ir::Tensor to_fp16(const ir::Tensor& t) {
  ir::Tensor h(DataType::kFloat16, t.dims());
  for (int64_t i = 0; i < t.numel(); ++i) h.data<uint16_t>()[i] = float_to_half(t.data<float>()[i]);
  return h;
}

ir::Tensor to_fp32(const ir::Tensor& t) {
  if (t.dtype() != DataType::kFloat16) return t;
  ir::Tensor f(DataType::kFloat32, t.dims());
  for (int64_t i = 0; i < t.numel(); ++i) f.data<float>()[i] = half_to_float(t.data<uint16_t>()[i]);
  return f;
}

// max |a - b| / max(1, max |b|); +inf on a NaN mismatch or shape change.
double scaled_error(const ir::Tensor& gpu, const ir::Tensor& ref) {
  if (gpu.dims() != ref.dims()) return INFINITY;
  auto a = to_fp32(gpu).to_double(), b = ref.to_double();
  double scale = 1, worst = 0;
  for (double x : b)
    if (std::isfinite(x)) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    if (std::isnan(b[i]) || a[i] == b[i]) continue;
    worst = std::max(worst, std::fabs(a[i] - b[i]) / scale);
  }
  return worst;
}

}  // namespace

bool cuda_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

bool sm90_device() {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major == 9 && minor == 0;
}

std::vector<uint8_t> to_layout(const ir::Tensor& t, const ir::Value& v) {
  const size_t es = dtype_size(t.dtype());
  std::vector<uint8_t> out(t.nbytes());
  const std::vector<int64_t> s = cuda::strides_of(v);
  const auto* src = static_cast<const uint8_t*>(t.raw());
  for (int64_t i = 0; i < t.numel(); ++i) {
    std::vector<int64_t> idx = unravel(i, t.dims());
    int64_t off = 0;
    for (size_t a = 0; a < idx.size(); ++a) off += idx[a] * s[a];
    std::memcpy(&out[size_t(off) * es], src + size_t(i) * es, es);
  }
  return out;
}

ir::Tensor from_layout(const std::vector<uint8_t>& bytes, const ir::Value& v) {
  ir::Tensor t(v.dtype, v.dims);
  const size_t es = dtype_size(v.dtype);
  const std::vector<int64_t> s = cuda::strides_of(v);
  auto* dst = static_cast<uint8_t*>(t.raw());
  for (int64_t i = 0; i < t.numel(); ++i) {
    std::vector<int64_t> idx = unravel(i, t.dims());
    int64_t off = 0;
    for (size_t a = 0; a < idx.size(); ++a) off += idx[a] * s[a];
    std::memcpy(dst + size_t(i) * es, &bytes[size_t(off) * es], es);
  }
  return t;
}

std::vector<ir::Tensor> run_tactic(const ir::Node& n, const cuda::Tactic& t, const std::vector<const ir::Tensor*>& in,
                                   uint8_t poison) {
  // One stream and library set for the whole test process (cuDNN handles
  // are slow to create); never destroyed, like the CUDA context itself.
  static cudaStream_t stream = [] {
    cudaStream_t s = nullptr;
    cuda::check(cudaStreamCreate(&s), "cudaStreamCreate");
    return s;
  }();
  static cuda::Libraries* libs = new cuda::Libraries(stream);
  auto kernel = t.make();
  std::vector<cuda::DevicePtr> keep;
  std::vector<const void*> in_ptrs;
  for (size_t k = 0; k < n.inputs.size(); ++k) {
    const ir::Value* v = n.in(k);
    const ir::Tensor* h = k < in.size() ? in[k] : nullptr;
    if (!v || !h) {
      in_ptrs.push_back(nullptr);
      continue;
    }
    if (h->dtype() != v->dtype || h->dims() != v->dims)
      throw_internal("run_tactic: host input " + std::to_string(k) + " does not match value '" + v->name + "'");
    std::vector<uint8_t> bytes = v->is_constant() ? std::vector<uint8_t>(static_cast<const uint8_t*>(h->raw()),
                                                                         static_cast<const uint8_t*>(h->raw()) +
                                                                             h->nbytes())
                                                  : to_layout(*h, *v);
    keep.push_back(cuda::upload(bytes.data(), bytes.size()));
    in_ptrs.push_back(keep.back().get());
  }
  std::vector<void*> out_ptrs;
  for (const ir::Value* o : n.outputs) {
    const size_t bytes = size_t(ir::numel_of(o->dims)) * dtype_size(o->dtype);
    keep.push_back(cuda::device_alloc(bytes));
    cuda::check(cudaMemset(keep.back().get(), poison, bytes < 256 ? 256 : bytes), "poison");
    out_ptrs.push_back(keep.back().get());
  }
  cuda::DevicePtr ws;
  if (kernel->workspace_bytes()) ws = cuda::device_alloc(kernel->workspace_bytes());
  cuda::Launch l{stream, ws.get(), libs};
  kernel->enqueue(in_ptrs, out_ptrs, l);
  cuda::check(cudaStreamSynchronize(stream), t.name.c_str());
  std::vector<ir::Tensor> result;
  for (size_t j = 0; j < n.outputs.size(); ++j) {
    const ir::Value& o = *n.outputs[j];
    std::vector<uint8_t> bytes(size_t(ir::numel_of(o.dims)) * dtype_size(o.dtype));
    if (!bytes.empty())
      cuda::check(cudaMemcpy(bytes.data(), out_ptrs[j], bytes.size(), cudaMemcpyDeviceToHost), "download");
    result.push_back(from_layout(bytes, o));
  }
  return result;
}

ParityReport check_cuda_parity(const std::string& op_type, const std::vector<OpInput>& inputs,
                               const std::map<std::string, ir::Attribute>& attrs, int num_outputs,
                               const ParityOptions& opts) {
  ParityReport report;
  // The reference: the CPU kernel on the FP32 inputs.
  OneNode ref = make_graph(op_type, opts.domain, inputs, attrs, num_outputs);
  std::vector<ir::Tensor> expect;
  {
    auto kernel = cpu::KernelRegistry::global().create(*ref.node);
    std::vector<const ir::Tensor*> in;
    for (const OpInput& oi : inputs) in.push_back(oi.tensor ? &*oi.tensor : nullptr);
    for (ir::Value* o : ref.node->outputs) expect.emplace_back(o->dtype, o->dims);
    std::vector<ir::Tensor*> out;
    for (auto& t : expect) out.push_back(&t);
    kernel->run(in, out);
  }
  const cuda::OpTraits* traits = cuda::Registry::global().traits(*ref.node);
  if (!traits) {
    ADD_FAILURE() << op_type << ": no CUDA kernel registered";
    return report;
  }
  cudaStream_t stream = nullptr;
  cuda::check(cudaStreamCreate(&stream), "cudaStreamCreate");
  cuda::Libraries libs(stream);

  for (int precision = 0; precision < 2; ++precision) {
    const bool half = precision == 1;
    if (half ? !opts.fp16 || traits->fp16_inputs.empty() : !opts.fp32) continue;
    for (int layout = 0; layout < 2; ++layout) {
      const bool nhwc = layout == 1;
      if (nhwc ? !opts.nhwc || !(traits->any_layout || traits->prefers_nhwc) : !opts.linear) continue;
      // This variant's inputs: listed float inputs to FP16, rank-4 runtime values channels-last.
      std::vector<OpInput> vin = inputs;
      if (half)
        for (int k : traits->fp16_inputs)
          if (size_t(k) < vin.size() && vin[size_t(k)].tensor && vin[size_t(k)].tensor->dtype() == DataType::kFloat32)
            vin[size_t(k)].tensor = to_fp16(*vin[size_t(k)].tensor);
      OneNode m = make_graph(op_type, opts.domain, vin, attrs, num_outputs);
      bool any4 = false;
      auto set_layout = [&](ir::Value* v) {
        if (v && !v->is_constant() && v->dims.size() == 4 && nhwc) {
          v->layout = ir::Layout::kNHWC;
          any4 = true;
        }
      };
      for (ir::Value* v : m.node->inputs) set_layout(v);
      for (ir::Value* v : m.node->outputs) set_layout(v);
      if (nhwc && !any4) continue;
      const std::string variant = std::string(half ? "fp16" : "fp32") + "/" + (nhwc ? "nhwc" : "linear");

      std::string why;
      std::vector<cuda::Tactic> tactics;
      try {
        tactics = cuda::Registry::global().tactics(*m.node);
      } catch (const Error& e) {
        ADD_FAILURE() << op_type << " " << variant << ": " << e.what();
        continue;
      }
      // Device copies of every input (constants too) in the value's dtype and layout.
      std::vector<cuda::DevicePtr> dev_in;
      std::vector<const void*> in_ptrs;
      for (size_t k = 0; k < vin.size(); ++k) {
        const ir::Value* v = m.node->in(k);
        if (!v) {
          dev_in.emplace_back();
          in_ptrs.push_back(nullptr);
          continue;
        }
        std::vector<uint8_t> bytes = to_layout(*vin[k].tensor, *v);
        dev_in.push_back(cuda::upload(bytes.data(), bytes.size()));
        in_ptrs.push_back(dev_in.back().get());
      }
      for (const cuda::Tactic& t : tactics) {
        report.tactics.push_back(t.name);
        const std::string what = op_type + " " + variant + " tactic '" + t.name + "'";
        try {
          auto kernel = t.make();
          std::vector<cuda::DevicePtr> dev_out;
          std::vector<void*> out_ptrs;
          for (ir::Value* o : m.node->outputs) {
            size_t bytes = size_t(ir::numel_of(o->dims)) * dtype_size(o->dtype);
            dev_out.push_back(cuda::device_alloc(bytes));
            cuda::check(cudaMemset(dev_out.back().get(), 0xFF, bytes < 256 ? 256 : bytes), "poison");  // NaN
            out_ptrs.push_back(dev_out.back().get());
          }
          cuda::DevicePtr ws;
          if (kernel->workspace_bytes()) ws = cuda::device_alloc(kernel->workspace_bytes());
          cuda::Launch l{stream, ws.get(), &libs};
          kernel->enqueue(in_ptrs, out_ptrs, l);
          cuda::check(cudaStreamSynchronize(stream), what.c_str());
          for (size_t j = 0; j < m.node->outputs.size(); ++j) {
            const ir::Value& o = *m.node->outputs[j];
            std::vector<uint8_t> bytes(size_t(ir::numel_of(o.dims)) * dtype_size(o.dtype));
            if (!bytes.empty())
              cuda::check(cudaMemcpy(bytes.data(), out_ptrs[j], bytes.size(), cudaMemcpyDeviceToHost), "download");
            ir::Tensor got = from_layout(bytes, o);
            const double tol = half ? opts.tol_fp16 : opts.tol_fp32;
            const double err = is_float(o.dtype) ? scaled_error(got, expect[j])
                                                 : (std::memcmp(got.raw(), expect[j].raw(), got.nbytes()) ? INFINITY : 0);
            EXPECT_LE(err, tol) << what << " output " << j << " " << shape_str(o.dims);
          }
          ++report.checked;
        } catch (const Error& e) {
          ADD_FAILURE() << what << ": " << e.what();
        }
      }
    }
  }
  cudaStreamDestroy(stream);
  return report;
}

}  // namespace kiln::test
