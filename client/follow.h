// `restyle watch` and `restyle adapt --follow`: a job's events from
// WatchJob, shown as they come. On a terminal, a live progress bar per stage
// (stage, step/total, loss, images/s, ETA) and the queue position while
// queued; otherwise plain lines (at most one a second per stage, and every
// state change); with -o json, every event as a JSON line. A lost stream is
// resumed from the last sequence number (nothing is shown twice, nothing
// missed). Ctrl-C detaches without cancelling and says how to re-attach.
//
// Thread-safety: one Follow at a time per process (it owns SIGINT while it
// runs).
#ifndef RESTYLE_CLIENT_FOLLOW_H_
#define RESTYLE_CLIENT_FOLLOW_H_

#include <cstdio>
#include <string>

#include "client/connection.h"

namespace restyle::client {

struct FollowOptions {
  bool json = false;      // -o json
  bool terminal = false;  // stdout is a terminal: the live bar
  int64_t after_seq = 0;  // events after this one
  FILE* out = stdout;
  FILE* err = stderr;
};

// Follows `job` ("jobs/{id}") to its end; the exit code of its final state
// (exit_codes.h), or kExitInterrupted when detached.
int Follow(Connection& connection, const std::string& job, const FollowOptions& options);

// The exit code of a finished job's state.
int ExitCodeOfJob(const v1::Job& job);

}  // namespace restyle::client

#endif  // RESTYLE_CLIENT_FOLLOW_H_
