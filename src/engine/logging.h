// Internal access to the logger installed with kiln::set_logger.
#pragma once

#include <string>

#include "kiln/kiln.h"

namespace kiln {

// Sends a message to the current logger (thread-safe).
void log_message(Severity severity, const std::string& message);

}  // namespace kiln
