// Runtime: plan bytes -> Engine (CPU, or CUDA when this kiln has the backend).
// Profile plans (engine/profile_plan.h) load as one engine per specialization
// behind a profile engine.
#include "engine/cpu_engine.h"
#include "engine/logging.h"
#include "engine/plan.h"
#include "engine/plan_target.h"
#include "engine/profile_engine.h"
#include "engine/profile_plan.h"
#include "engine/summary.h"
#ifdef KILN_WITH_CUDA
#include "backends/cuda/common.h"
#include "backends/cuda/upload_sharing.h"
#include "engine/cuda/cuda_engine.h"
#endif

namespace kiln {

void ExecutionContext::enqueue(void*) {
  throw_usage("enqueue runs GPU engines on a CUDA stream; this engine runs on the CPU: call run()");
}

int64_t ExecutionContext::set_batch(int64_t) {
  throw_usage("set_batch picks the batch of a batch-profile engine; this engine has a fixed batch: rebuild with "
              "--min-batch/--max-batch (or Builder::build_profile) to run other batches");
}

std::vector<ExecutionContext::LayerTime> ExecutionContext::profile(int) {
  throw_usage("per-layer profiles are taken on GPU engines; this engine runs on the CPU");
}

bool check_plan_target(const std::string& device, const std::string& kiln_version, const std::string& origin) {
  const bool cuda_plan = device.rfind("cuda:", 0) == 0;
  if (device != "cpu" && !cuda_plan)
    throw_bad_input("plan " + origin + " targets device '" + device + "', which this kiln does not know");
  if (kiln_version != version())
    log_message(Severity::kInfo, "plan " + origin + " was built by kiln " + kiln_version + ", this is kiln " +
                                     version() + " (same plan format)");
  if (!cuda_plan) return false;
#ifdef KILN_WITH_CUDA
  std::string here;
  try {
    here = cuda::device_string();
  } catch (const Error& e) {
    throw_bad_input("plan " + origin + " targets GPU '" + device + "' but " + e.what());
  }
  if (device != here)
    throw_bad_input("plan " + origin + " targets GPU '" + device + "' but was loaded on '" + here +
                    "': re-tune it for this GPU with `kiln build --from-plan " + origin + " -o NEW.plan`");
  return true;
#else
  throw_bad_input("plan " + origin + " targets GPU '" + device +
                  "' but this kiln was built without the CUDA backend: rebuild kiln with CUDA, or rebuild the "
                  "plan with `kiln build --device cpu`");
#endif
}

namespace {

std::unique_ptr<Engine> load_profile_plan(const std::vector<uint8_t>& bytes, const std::string& origin) {
  plan::ProfilePlan p = plan::read_profile_plan(bytes.data(), bytes.size(), origin);
  const std::string device = p.device;
  if (check_plan_target(device, p.kiln_version, origin)) {
#ifdef KILN_WITH_CUDA
    // Constants the graphs share are uploaded once (keyed by their host
    // data), and kernels' own copies of equal bytes once (SharedUploads).
    auto constants = make_device_constant_cache();
    cuda::SharedUploads uploads;
    auto engine = make_profile_engine(std::move(p), origin, [&](std::unique_ptr<ir::Graph> g) {
      return make_cuda_engine(std::move(g), origin, device, constants.get());
    });
    log_message(Severity::kVerbose, "plan " + origin + ": " + std::to_string(uploads.bytes_shared()) +
                                        " bytes of kernel weights shared between batch specializations");
    return engine;
#endif
  }
  return make_profile_engine(std::move(p), origin, [&](std::unique_ptr<ir::Graph> g) {
    return make_cpu_engine(std::move(g), origin, device);
  });
}

}  // namespace

std::unique_ptr<Engine> Runtime::deserialize(const std::vector<uint8_t>& bytes, const std::string& origin) const {
  if (plan::has_profile_magic(bytes.data(), bytes.size())) return load_profile_plan(bytes, origin);
  plan::Header h = plan::read_header(bytes.data(), bytes.size(), origin);
  const bool cuda_plan = check_plan_target(h.device, h.kiln_version, origin);
  auto graph = plan::decode_graph(bytes.data() + h.payload_offset, h.payload_size, origin, h.payload_offset);
#ifdef KILN_WITH_CUDA
  if (cuda_plan) return make_cuda_engine(std::move(graph), origin, h.device);
#else
  (void)cuda_plan;
#endif
  return make_cpu_engine(std::move(graph), origin, h.device);
}

NetworkSummary Runtime::summarize(const std::vector<uint8_t>& bytes, const std::string& origin,
                                  std::string* device) const {
  if (plan::has_profile_magic(bytes.data(), bytes.size())) {
    plan::ProfilePlan p = plan::read_profile_plan(bytes.data(), bytes.size(), origin);
    if (device) *device = p.device;
    return summarize_profile_plan(p, origin);
  }
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
