// Runtime: plan bytes -> Engine (CPU, or CUDA when this kiln has the backend).
#include "engine/cpu_engine.h"
#include "engine/logging.h"
#include "engine/plan.h"
#include "engine/summary.h"
#ifdef KILN_WITH_CUDA
#include "backends/cuda/common.h"
#include "engine/cuda/cuda_engine.h"
#endif

namespace kiln {

void ExecutionContext::enqueue(void*) {
  throw_usage("enqueue runs GPU engines on a CUDA stream; this engine runs on the CPU: call run()");
}

std::vector<ExecutionContext::LayerTime> ExecutionContext::profile(int) {
  throw_usage("per-layer profiles are taken on GPU engines; this engine runs on the CPU");
}

std::unique_ptr<Engine> Runtime::deserialize(const std::vector<uint8_t>& bytes, const std::string& origin) const {
  plan::Header h = plan::read_header(bytes.data(), bytes.size(), origin);
  const bool cuda_plan = h.device.rfind("cuda:", 0) == 0;
  if (h.device != "cpu" && !cuda_plan)
    throw_bad_input("plan " + origin + " targets device '" + h.device + "', which this kiln does not know");
  if (h.kiln_version != version())
    log_message(Severity::kInfo, "plan " + origin + " was built by kiln " + h.kiln_version + ", this is kiln " +
                                     version() + " (same plan format)");
  if (cuda_plan) {
#ifdef KILN_WITH_CUDA
    std::string here;
    try {
      here = cuda::device_string();
    } catch (const Error& e) {
      throw_bad_input("plan " + origin + " targets GPU '" + h.device + "' but " + e.what());
    }
    if (h.device != here)
      throw_bad_input("plan " + origin + " targets GPU '" + h.device + "' but was loaded on '" + here +
                      "': re-tune it for this GPU with `kiln build --from-plan " + origin + " -o NEW.plan`");
    auto graph = plan::decode_graph(bytes.data() + h.payload_offset, h.payload_size, origin, h.payload_offset);
    return make_cuda_engine(std::move(graph), origin, h.device);
#else
    throw_bad_input("plan " + origin + " targets GPU '" + h.device +
                    "' but this kiln was built without the CUDA backend: rebuild kiln with CUDA, or rebuild the "
                    "plan with `kiln build --device cpu`");
#endif
  }
  auto graph = plan::decode_graph(bytes.data() + h.payload_offset, h.payload_size, origin, h.payload_offset);
  return make_cpu_engine(std::move(graph), origin, h.device);
}

NetworkSummary Runtime::summarize(const std::vector<uint8_t>& bytes, const std::string& origin,
                                  std::string* device) const {
  plan::Header h = plan::read_header(bytes.data(), bytes.size(), origin);
  auto graph = plan::decode_graph(bytes.data() + h.payload_offset, h.payload_size, origin, h.payload_offset);
  for (auto& n : graph->nodes()) check_plan_node(*n, origin);
  if (device) *device = h.device;
  return summarize_graph(*graph);
}

std::unique_ptr<Engine> Runtime::load(const std::string& plan_path) const {
  return deserialize(read_file(plan_path), plan_path);
}

}  // namespace kiln
