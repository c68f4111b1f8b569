// Profile plans on the builder side (Builder::build_profile is defined in
// build_profiles.cpp): re-tuning every specialization of one for this GPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/kiln.h"

namespace kiln {

// Builder::rebuild for a profile plan: each specialization is re-tuned as a
// single plan would be; constants stay shared.
std::vector<uint8_t> rebuild_profile_plan(const BuilderConfig& config, const std::vector<uint8_t>& bytes,
                                          const std::string& origin);

}  // namespace kiln
