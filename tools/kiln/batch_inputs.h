// `--batch N` of `kiln run` and `kiln bench`: which batch a plan runs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kiln/kiln.h"

namespace kiln::cli {

// The batch to run: for a batch-profile plan any batch in its profile (0:
// the opt batch); for a single-batch plan its own batch only (0: that one).
// kUsage naming the plan's batches otherwise. Returns 0 for a plan whose
// inputs have no batch axis and no batch was asked for.
int choose_batch(const Engine& engine, int requested);

// gather_inputs (cli.h) with the random inputs at `batch` rows along their
// batch axis (0: the shapes Engine::inputs() gives).
std::map<std::string, HostTensor> gather_inputs_at(const Engine& engine, const std::vector<std::string>& specs,
                                                   bool random, uint64_t seed, int batch);

}  // namespace kiln::cli
