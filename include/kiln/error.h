// kiln public API: typed errors.
// Every failure a user can cause is thrown as kiln::Error with a code and a
// message that names the file / node / tensor involved and what to do next.
// The CLI maps codes to exit status: 2 usage, 3 bad input, 4 unsupported, 1 internal.
#pragma once

#include <stdexcept>
#include <string>

namespace kiln {

enum class ErrorCode : int {
  kInternal = 1,     // a bug in kiln; please report it
  kUsage = 2,        // wrong arguments or API misuse
  kBadInput = 3,     // corrupt / inconsistent model, plan, tensor or file
  kUnsupported = 4,  // valid input kiln cannot handle (op, dtype, attribute)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }
  int exit_code() const { return static_cast<int>(code_); }

 private:
  ErrorCode code_;
};

// Short helpers so call sites read as the condition they report.
[[noreturn]] inline void throw_bad_input(const std::string& m) { throw Error(ErrorCode::kBadInput, m); }
[[noreturn]] inline void throw_unsupported(const std::string& m) { throw Error(ErrorCode::kUnsupported, m); }
[[noreturn]] inline void throw_usage(const std::string& m) { throw Error(ErrorCode::kUsage, m); }
[[noreturn]] inline void throw_internal(const std::string& m) { throw Error(ErrorCode::kInternal, m); }

}  // namespace kiln
