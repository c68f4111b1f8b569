// INT8 calibration cache in TensorRT's text format:
//
//   <header>                     e.g. TRT-8601-EntropyCalibration2 or KILN-1-Entropy
//   <tensor name>: <hex>         one line per tensor
//
// <hex> is the IEEE-754 float32 bit pattern of the scale (T / 127) printed
// most significant digit first. kiln writes 8 lowercase digits and sorts the
// names, so equal caches are equal bytes; it reads 1 to 8 digits of either
// case, "\r\n" line ends and blank lines. A name may itself contain ": "; the
// line is split at the last one.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "quant/thresholds.h"

namespace kiln::quant {

struct CalibrationCache {
  std::string header;                   // first line, without the line end
  std::map<std::string, float> scales;  // tensor name -> scale (finite, > 0)
};

// "KILN-1-<Method>".
std::string kiln_cache_header(CalibrationMethod method);

// The cache's bytes. Throws kUsage for an empty header, a name that is empty
// or holds a line break, or a scale that is not finite and > 0.
std::string format_calibration_cache(const CalibrationCache& cache);
// Parses text; `path` names the source in messages. Throws kBadInput (naming
// path and the 1-based line) for a missing or unknown header, a line without
// "name: hex", bad hex, a duplicate name, or a scale that is negative, zero,
// NaN or infinite.
CalibrationCache parse_calibration_cache(const std::string& text, const std::string& path);

void write_calibration_cache(const CalibrationCache& cache, const std::string& path);
CalibrationCache read_calibration_cache(const std::string& path);

// Throws kBadInput when the cache's names differ from tensor_names, listing
// (the first few of) the names missing from the cache and the cache names
// the network lacks.
void check_cache_matches(const CalibrationCache& cache, const std::vector<std::string>& tensor_names,
                         const std::string& path);

}  // namespace kiln::quant
