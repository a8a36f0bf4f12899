// The life of an adaptation job as pure functions on a stored row: creation,
// leases (start, renew, fencing), progress, completion, release, cancel and
// the deadlines (lease expiry, queue and run time limits). Each function
// checks that the transition is allowed, changes the row and appends the
// events it causes (sequenced 1, 2, 3, ... per job). The stores
// (job_store.h) run them inside their transactions, so every backend follows
// the same rules.
//
//   QUEUED --lease--> RUNNING --complete(result)--> SUCCEEDED
//     |                 |  \--complete(error), lease lost: failed_attempts+1,
//     |                 |     QUEUED again, or FAILED after max_attempts
//     |                 |--cancel--> CANCELLING --worker stops--> CANCELLED
//     |--cancel, QUEUE_TIMEOUT--> CANCELLED / FAILED
//
// Thread-safety: free functions on values.
#ifndef RESTYLE_SERVER_JOB_LIFECYCLE_H_
#define RESTYLE_SERVER_JOB_LIFECYCLE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "restyle/v1/job.pb.h"
#include "restyle/worker/v1/worker_service.pb.h"

namespace restyle::server {

// A job as the stores keep it: the Job message plus what only the front
// needs (never sent to clients).
struct JobRow {
  v1::Job job;
  // sha256 of the Adapt request's spec, to tell a retry from a reuse of its
  // request_id ("" without a request_id).
  std::string request_digest;
  // Creation order across jobs (assigned by the store).
  int64_t seq = 0;
  // While leased: when the lease ends unless renewed.
  std::optional<absl::Time> lease_expire;
};

using Events = std::vector<v1::JobEvent>;

bool IsTerminal(v1::JobState state);
// RUNNING or CANCELLING: a worker holds the lease.
bool IsLeased(v1::JobState state);

// A new QUEUED job "jobs/{id}" with its first event.
JobRow NewJob(const std::string& id, const v1::JobSpec& spec, const std::string& request_id,
              const std::string& request_digest, int max_attempts, absl::Time now, Events* events);

// QUEUED -> RUNNING for `worker` (attempt + 1, stage LOADING).
absl::Status StartLease(JobRow& row, const std::string& worker, absl::Time now,
                        absl::Duration ttl, Events* events);

// OK when the job is leased to `worker` under `attempt`; else ABORTED with
// reason LEASE_LOST saying where the job is now (the fencing of late workers).
absl::Status CheckLease(const JobRow& row, const std::string& worker, int attempt);

// Extends a held lease to `expire`.
absl::Status RenewLease(JobRow& row, const std::string& worker, int attempt, absl::Time expire);

// Progress and log events of a held lease; the latest progress is kept in
// Job.progress (and its stage in Job.stage).
absl::Status AddProgress(JobRow& row, const std::string& worker, int attempt,
                         const std::vector<restyle::worker::v1::ProgressEvent>& reported,
                         absl::Time now, Events* events);

// What a worker reports at the end of its lease.
struct Completion {
  std::string worker;
  int attempt = 0;
  std::optional<v1::JobResult> result;  // success
  v1::JobError error;                   // otherwise
  bool retryable = false;               // another attempt could succeed
};

// The end of a held lease: SUCCEEDED with the result; CANCELLED for a
// cancelled job; QUEUED again for a retryable error with attempts left;
// FAILED otherwise.
absl::Status CompleteLease(JobRow& row, const Completion& completion, absl::Time now,
                           Events* events);

// A stopping worker gives its lease back: QUEUED again (CANCELLED when
// cancelling), not counted as a failed attempt.
absl::Status ReleaseLease(JobRow& row, const std::string& worker, int attempt,
                          const std::string& reason, absl::Time now, Events* events);

// QUEUED -> CANCELLED; RUNNING -> CANCELLING; anything else unchanged (so
// cancelling is idempotent).
void CancelJob(JobRow& row, absl::Time now, Events* events);

// Applies whichever deadline has passed: a lease not renewed (the job is
// queued again, or FAILED after max_attempts; CANCELLED when cancelling), the
// spec's max_queue_time (FAILED, QUEUE_TIMEOUT) or max_run_time (FAILED,
// RUN_TIMEOUT). Returns whether the row changed.
bool ExpireIfDue(JobRow& row, absl::Time now, Events* events);

// When the row's next deadline falls (lease end, queue or run limit), or
// nullopt for none: what a store indexes to find due jobs.
std::optional<absl::Time> NextDeadline(const JobRow& row);

// A JobError with the code's number and name.
v1::JobError MakeJobError(absl::StatusCode code, const std::string& reason,
                          const std::string& message);

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_JOB_LIFECYCLE_H_
