// Errors raised by the engine.
//
// The engine depends on LibTorch and the standard library only, so it cannot
// return absl::Status. Instead every fallible engine call throws
// restyle::engine::Error, which carries a code from the same vocabulary as
// absl::StatusCode and a message a person can act on (it names the file,
// tensor or argument at fault). LibTorch itself throws c10::Error. The worker
// catches both at a single boundary (worker/engine_boundary.h) and turns them
// into absl::Status; no engine exception crosses a thread or an RPC.
#ifndef RESTYLE_WORKER_ENGINE_COMMON_ERROR_H_
#define RESTYLE_WORKER_ENGINE_COMMON_ERROR_H_

#include <stdexcept>
#include <string>
#include <utility>

namespace restyle::engine {

// A subset of absl::StatusCode with the same meanings.
enum class ErrorCode {
  kInvalidArgument,     // the caller passed something malformed
  kNotFound,            // a file or named entry does not exist
  kDataLoss,            // a file exists but is truncated or corrupt
  kFailedPrecondition,  // the object is in the wrong state for the call
  kCancelled,           // a job was cancelled by its owner
  kUnimplemented,       // a valid request this build cannot serve
  kResourceExhausted,   // the device ran out of memory for the request
  kInternal,            // an invariant of the engine itself broke
};

// Returns "INVALID_ARGUMENT", "NOT_FOUND", ... (absl's spelling).
const char* ErrorCodeName(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  Error(ErrorCode code, std::string reason, const std::string& message)
      : std::runtime_error(message), code_(code), reason_(std::move(reason)) {}
  ErrorCode code() const { return code_; }
  // For programs: UPPER_SNAKE_CASE ("NON_FINITE_LOSS", "OUT_OF_MEMORY") when
  // the failure has a name of its own, else "".
  const std::string& reason() const { return reason_; }

 private:
  ErrorCode code_;
  std::string reason_;
};

// Throws Error(code, message). Marked noreturn so callers need no dummy return.
[[noreturn]] void Fail(ErrorCode code, const std::string& message);
// Throws Error(code, reason, message).
[[noreturn]] void FailWithReason(ErrorCode code, const std::string& reason,
                                 const std::string& message);

// Throws Error(kInvalidArgument, message) unless `condition` holds.
inline void CheckArgument(bool condition, const std::string& message) {
  if (!condition) Fail(ErrorCode::kInvalidArgument, message);
}

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_COMMON_ERROR_H_
