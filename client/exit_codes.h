// The exit codes of `restyle`, for scripts (listed in `restyle --help` and
// docs/cli.md).
#ifndef RESTYLE_CLIENT_EXIT_CODES_H_
#define RESTYLE_CLIENT_EXIT_CODES_H_

namespace restyle::client {

enum ExitCode {
  kExitOk = 0,            // done; a followed or awaited job succeeded
  kExitError = 1,         // the server refused the call (not found, not ready, ...)
  kExitUsage = 2,         // bad flags or arguments (here, or INVALID_ARGUMENT from the server)
  kExitJobFailed = 3,     // the job failed
  kExitJobCancelled = 4,  // the job was cancelled
  kExitTimedOut = 5,      // `wait --timeout` passed before the job ended
  kExitUnreachable = 6,   // no answer from the server, or the address is not its API port
  kExitInterrupted = 130  // Ctrl-C (a followed job goes on)
};

inline constexpr char kExitCodesHelp[] =
    "Exit codes: 0 ok (the job succeeded), 1 refused by the server, 2 bad usage, 3 job failed,\n"
    "4 job cancelled, 5 timed out (wait --timeout), 6 server unreachable (or not its API port),\n"
    "130 interrupted (Ctrl-C detaches: the job goes on).";

}  // namespace restyle::client

#endif  // RESTYLE_CLIENT_EXIT_CODES_H_
