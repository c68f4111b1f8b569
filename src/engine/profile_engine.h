// The Engine of a profile plan: one engine per batch specialization, and
// contexts that run a batch on the smallest specialization that holds it
// (inputs padded with zero rows, outputs cut back along their batch axis).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "engine/profile_plan.h"
#include "kiln/kiln.h"

namespace kiln {

// Makes the engine of one specialization (CPU or CUDA, chosen by the caller).
using SpecializationEngineFactory = std::function<std::unique_ptr<Engine>(std::unique_ptr<ir::Graph>)>;

// Checks that the specializations agree (inputs and outputs alike but for the
// batch, every output with a batch axis and a fixed row count, some input
// with a batch axis); kBadInput naming `origin` otherwise.
std::unique_ptr<Engine> make_profile_engine(plan::ProfilePlan plan, const std::string& origin,
                                            const SpecializationEngineFactory& make);

// What Runtime::summarize shows for a profile plan: the max-batch
// specialization's summary with the profile and the shared weight bytes
// (every layer checked, no kernels made).
NetworkSummary summarize_profile_plan(plan::ProfilePlan& plan, const std::string& origin);

}  // namespace kiln
