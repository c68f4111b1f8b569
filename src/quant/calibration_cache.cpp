#include "quant/calibration_cache.h"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "kiln/error.h"

namespace kiln::quant {

namespace {

constexpr std::size_t kListedNames = 5;  // names listed per side in a mismatch message

std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

bool valid_scale(float s) { return std::isfinite(s) && s > 0.0f; }

// TRT-<digits>-<name> or KILN-<digits>-<name>, <name> letters, digits and
// '_' (so every header read can be written back as one line).
bool known_header(const std::string& h) {
  for (const char* prefix : {"TRT-", "KILN-"}) {
    const std::size_t n = std::strlen(prefix);
    if (h.compare(0, n, prefix) != 0) continue;
    std::size_t k = n;
    while (k < h.size() && std::isdigit(static_cast<unsigned char>(h[k]))) ++k;
    if (k == n || k + 1 >= h.size() || h[k] != '-') return false;
    for (std::size_t i = k + 1; i < h.size(); ++i)
      if (!std::isalnum(static_cast<unsigned char>(h[i])) && h[i] != '_') return false;
    return true;
  }
  return false;
}

std::string list_names(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < kListedNames; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > kListedNames) s += " and " + std::to_string(names.size() - kListedNames) + " more";
  return s;
}

}  // namespace

std::string kiln_cache_header(CalibrationMethod method) { return "KILN-1-" + method_name(method); }

std::string format_calibration_cache(const CalibrationCache& cache) {
  if (cache.header.empty() || cache.header.find_first_of("\r\n") != std::string::npos)
    throw_usage("calibration cache header must be one non-empty line");
  std::string out = cache.header + "\n";
  for (const auto& [name, scale] : cache.scales) {  // std::map: sorted by name
    if (name.empty() || name.find_first_of("\r\n") != std::string::npos)
      throw_usage("calibration cache: tensor name '" + name + "' is empty or holds a line break");
    if (!valid_scale(scale))
      throw_usage("calibration cache: scale of tensor '" + name + "' is " + std::to_string(scale) +
                  "; it must be finite and > 0");
    char hex[16];
    std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(float_bits(scale)));
    out += name + ": " + hex + "\n";
  }
  return out;
}

CalibrationCache parse_calibration_cache(const std::string& text, const std::string& path) {
  CalibrationCache cache;
  bool have_header = false;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (!have_header) {
      if (!known_header(line))
        throw_bad_input(where + "calibration cache header '" + line +
                        "' is not TRT-<version>-<method> or KILN-<version>-<method>; regenerate the cache");
      cache.header = line;
      have_header = true;
      continue;
    }
    const std::size_t sep = line.rfind(": ");
    if (sep == std::string::npos || sep == 0)
      throw_bad_input(where + "expected '<tensor name>: <hex scale>', got '" + line + "'");
    const std::string name = line.substr(0, sep);
    if (name.find('\r') != std::string::npos)  // a name the writer could not write back
      throw_bad_input(where + "tensor name holds a carriage return; regenerate the cache");
    const std::string hex = line.substr(sep + 2);
    if (hex.empty() || hex.size() > 8 ||
        hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
      throw_bad_input(where + "scale of tensor '" + name + "' is '" + hex + "', not 1 to 8 hex digits");
    const float scale = bits_float(static_cast<std::uint32_t>(std::stoul(hex, nullptr, 16)));
    if (!valid_scale(scale))
      throw_bad_input(where + "scale of tensor '" + name + "' is " + std::to_string(scale) +
                      " (0x" + hex + "); a scale must be finite and > 0");
    if (!cache.scales.emplace(name, scale).second)
      throw_bad_input(where + "tensor '" + name + "' appears twice in the calibration cache");
  }
  if (!have_header) throw_bad_input(path + ": calibration cache is empty (no header line)");
  return cache;
}

void write_calibration_cache(const CalibrationCache& cache, const std::string& path) {
  const std::string bytes = format_calibration_cache(cache);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw_bad_input("cannot open calibration cache '" + path + "' for writing");
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw_bad_input("cannot write calibration cache '" + path + "'");
}

CalibrationCache read_calibration_cache(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw_bad_input("cannot open calibration cache '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_calibration_cache(ss.str(), path);
}

void check_cache_matches(const CalibrationCache& cache, const std::vector<std::string>& tensor_names,
                         const std::string& path) {
  const std::set<std::string> net(tensor_names.begin(), tensor_names.end());
  std::vector<std::string> missing, extra;
  for (const std::string& n : net)
    if (!cache.scales.count(n)) missing.push_back(n);
  for (const auto& kv : cache.scales)
    if (!net.count(kv.first)) extra.push_back(kv.first);
  if (missing.empty() && extra.empty()) return;
  std::string msg = "calibration cache '" + path + "' does not match the network:";
  if (!missing.empty())
    msg += " " + std::to_string(missing.size()) + " tensor(s) missing from the cache: " + list_names(missing) + ";";
  if (!extra.empty())
    msg += " " + std::to_string(extra.size()) + " cache name(s) the network lacks: " + list_names(extra) + ";";
  msg += " recalibrate with this model or pass the matching cache";
  throw_bad_input(msg);
}

}  // namespace kiln::quant
