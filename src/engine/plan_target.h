// Whether a plan's target can run in this process, for every reader of plans
// (Runtime, compare).
#pragma once

#include <string>

namespace kiln {

// False for a CPU plan, true for a plan tuned on this GPU. kBadInput naming
// `origin` for an unknown device, another GPU (with the command that re-tunes
// the plan) or a GPU plan in a kiln without CUDA. Logs when another kiln
// version (same format) built it.
bool check_plan_target(const std::string& device, const std::string& kiln_version, const std::string& origin);

}  // namespace kiln
