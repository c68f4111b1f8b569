// Runtime: plan bytes -> Engine.
#include "engine/cpu_engine.h"
#include "engine/logging.h"
#include "engine/plan.h"

namespace kiln {

std::unique_ptr<Engine> Runtime::deserialize(const std::vector<uint8_t>& bytes, const std::string& origin) const {
  plan::Header h = plan::read_header(bytes.data(), bytes.size(), origin);
  if (h.device != "cpu")
    throw_bad_input("plan " + origin + " targets device '" + h.device +
                    "', this kiln runs plans for 'cpu' only: rebuild it with `kiln build --device cpu`");
  if (h.kiln_version != version())
    log_message(Severity::kInfo, "plan " + origin + " was built by kiln " + h.kiln_version + ", this is kiln " +
                                     version() + " (same plan format)");
  auto graph = plan::decode_graph(bytes.data() + h.payload_offset, h.payload_size, origin, h.payload_offset);
  return make_cpu_engine(std::move(graph), origin, h.device);
}

std::unique_ptr<Engine> Runtime::load(const std::string& plan_path) const {
  return deserialize(read_file(plan_path), plan_path);
}

}  // namespace kiln
