// Process logs (spdlog) for restyled and restyle-worker: one line per event on
// stderr, "2026-12-04T01:02:03.456Z I restyled: text" (UTC). Nothing secret is
// ever logged (tokens, request payload bytes).
//
// Thread-safety: InitLogging once at start, before other threads log; the
// logging calls (spdlog::info, ...) are thread-safe.
#ifndef RESTYLE_COMMON_LOGGING_H_
#define RESTYLE_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace restyle {

struct LogOptions {
  std::string program;  // "restyled", "restyle-worker"
  // "trace", "debug", "info", "warn", "error".
  std::string level = "info";
};

// INVALID_ARGUMENT for an unknown level.
absl::Status InitLogging(const LogOptions& options);

}  // namespace restyle

#endif  // RESTYLE_COMMON_LOGGING_H_
