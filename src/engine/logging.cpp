// version(), the logger hook and the default logger.
#include "engine/logging.h"

#include <atomic>
#include <cstdio>
#include <mutex>

#ifndef KILN_VERSION
#define KILN_VERSION "0.0.0"
#endif

namespace kiln {

namespace {
class StderrLogger : public Logger {
 public:
  void log(Severity severity, const std::string& message) override {
    if (severity > Severity::kWarning) return;
    // One lock so lines from concurrent contexts do not interleave.
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    std::fprintf(stderr, "kiln: %s: %s\n", severity == Severity::kError ? "error" : "warning", message.c_str());
  }
};

StderrLogger g_default_logger;
std::atomic<Logger*> g_logger{&g_default_logger};
}  // namespace

const char* version() { return KILN_VERSION; }

void set_logger(Logger* logger) { g_logger.store(logger ? logger : &g_default_logger); }

void log_message(Severity severity, const std::string& message) { g_logger.load()->log(severity, message); }

}  // namespace kiln
