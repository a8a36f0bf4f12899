#include "server/job_lifecycle.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "common/status.h"
#include "common/time.h"

namespace restyle::server {
namespace {

using v1::JobState;

const char* StateName(JobState state) {
  switch (state) {
    case v1::JOB_STATE_QUEUED: return "QUEUED";
    case v1::JOB_STATE_RUNNING: return "RUNNING";
    case v1::JOB_STATE_CANCELLING: return "CANCELLING";
    case v1::JOB_STATE_SUCCEEDED: return "SUCCEEDED";
    case v1::JOB_STATE_FAILED: return "FAILED";
    case v1::JOB_STATE_CANCELLED: return "CANCELLED";
    default: return "UNSPECIFIED";
  }
}

v1::JobEvent* NextEvent(JobRow& row, absl::Time now, Events* events) {
  v1::JobEvent& e = events->emplace_back();
  row.job.set_event_seq(row.job.event_seq() + 1);
  e.set_seq(row.job.event_seq());
  *e.mutable_time() = ToProtoTime(now);
  return &e;
}

// Records a state change: the job as it now is.
void StateChanged(JobRow& row, absl::Time now, Events* events) {
  *row.job.mutable_update_time() = ToProtoTime(now);
  v1::JobEvent* e = NextEvent(row, now, events);
  *e->mutable_job() = row.job;
}

void EndLease(JobRow& row) {
  row.lease_expire.reset();
  row.job.clear_worker();
  row.job.set_stage(v1::JOB_STAGE_UNSPECIFIED);
}

void Finish(JobRow& row, JobState state, absl::Time now) {
  EndLease(row);
  row.job.set_state(state);
  *row.job.mutable_end_time() = ToProtoTime(now);
}

// A run ended without a result: queued again while attempts are left,
// else FAILED with `error`.
void FailedAttempt(JobRow& row, v1::JobError error, absl::Time now) {
  row.job.set_failed_attempts(row.job.failed_attempts() + 1);
  EndLease(row);
  if (row.job.failed_attempts() < row.job.max_attempts()) {
    row.job.set_state(v1::JOB_STATE_QUEUED);
    *row.job.mutable_error() = std::move(error);  // the last failure, kept for reference
    return;
  }
  (*error.mutable_metadata())["attempts"] = std::to_string(row.job.failed_attempts());
  error.set_message(absl::StrCat(error.message(), " (attempt ", row.job.failed_attempts(), " of ",
                                 row.job.max_attempts(), ", the last)"));
  *row.job.mutable_error() = std::move(error);
  Finish(row, v1::JOB_STATE_FAILED, now);
}

v1::JobError CancelledError() {
  return MakeJobError(absl::StatusCode::kCancelled, "CANCELLED", "the job was cancelled");
}

}  // namespace

bool IsTerminal(JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

bool IsLeased(JobState state) {
  return state == v1::JOB_STATE_RUNNING || state == v1::JOB_STATE_CANCELLING;
}

v1::JobError MakeJobError(absl::StatusCode code, const std::string& reason,
                          const std::string& message) {
  v1::JobError e;
  e.set_code(static_cast<int>(code));
  e.set_code_name(absl::StatusCodeToString(code));
  e.set_reason(reason);
  e.set_message(message);
  return e;
}

JobRow NewJob(const std::string& id, const v1::JobSpec& spec, const std::string& request_id,
              const std::string& request_digest, int max_attempts, absl::Time now,
              Events* events) {
  JobRow row;
  row.job.set_name(MakeName(kJobs, id));
  *row.job.mutable_spec() = spec;
  row.job.set_state(v1::JOB_STATE_QUEUED);
  row.job.set_max_attempts(max_attempts);
  row.job.set_request_id(request_id);
  *row.job.mutable_create_time() = ToProtoTime(now);
  row.request_digest = request_digest;
  StateChanged(row, now, events);
  return row;
}

absl::Status StartLease(JobRow& row, const std::string& worker, absl::Time now,
                        absl::Duration ttl, Events* events) {
  if (row.job.state() != v1::JOB_STATE_QUEUED) {
    return absl::FailedPreconditionError(
        absl::StrCat(row.job.name(), " is ", StateName(row.job.state()), ", not QUEUED"));
  }
  row.job.set_state(v1::JOB_STATE_RUNNING);
  row.job.set_stage(v1::JOB_STAGE_LOADING);
  row.job.set_attempt(row.job.attempt() + 1);
  row.job.set_worker(worker);
  row.job.set_queue_position(0);
  row.job.clear_queue_eta();
  // Progress of an earlier attempt would mislead; its newest preview stays.
  const std::string preview = row.job.progress().latest_preview();
  row.job.clear_progress();
  row.job.mutable_progress()->set_latest_preview(preview);
  row.job.mutable_progress()->set_stage(v1::JOB_STAGE_LOADING);
  *row.job.mutable_start_time() = ToProtoTime(now);
  row.lease_expire = now + ttl;
  StateChanged(row, now, events);
  return absl::OkStatus();
}

absl::Status CheckLease(const JobRow& row, const std::string& worker, int attempt) {
  if (IsLeased(row.job.state()) && row.job.worker() == worker && row.job.attempt() == attempt) {
    return absl::OkStatus();
  }
  std::string now_at = StateName(row.job.state());
  if (IsLeased(row.job.state())) {
    absl::StrAppend(&now_at, ", attempt ", row.job.attempt(), " on ", row.job.worker());
  }
  return ErrorWithReason(absl::StatusCode::kAborted, "LEASE_LOST",
                         absl::StrCat(row.job.name(), " attempt ", attempt,
                                      " is no longer leased to ", worker, " (the job is ", now_at,
                                      "); stop working on it"),
                         {{"job", row.job.name()}, {"attempt", std::to_string(attempt)}});
}

absl::Status RenewLease(JobRow& row, const std::string& worker, int attempt, absl::Time expire) {
  RESTYLE_RETURN_IF_ERROR(CheckLease(row, worker, attempt));
  row.lease_expire = std::max(expire, row.lease_expire.value_or(expire));
  return absl::OkStatus();
}

absl::Status AddProgress(JobRow& row, const std::string& worker, int attempt,
                         const std::vector<restyle::worker::v1::ProgressEvent>& reported,
                         absl::Time now, Events* events) {
  RESTYLE_RETURN_IF_ERROR(CheckLease(row, worker, attempt));
  for (const restyle::worker::v1::ProgressEvent& r : reported) {
    v1::JobEvent* e = NextEvent(row, now, events);
    if (r.has_progress()) {
      v1::JobProgress progress = r.progress();
      const std::string preview = !progress.preview().empty()
                                      ? progress.preview()
                                      : row.job.progress().latest_preview();
      progress.set_latest_preview(preview);
      *e->mutable_progress() = progress;
      *row.job.mutable_progress() = std::move(progress);
      if (row.job.state() == v1::JOB_STATE_RUNNING) row.job.set_stage(r.progress().stage());
    } else {
      e->set_log(r.log());
    }
  }
  *row.job.mutable_update_time() = ToProtoTime(now);
  return absl::OkStatus();
}

absl::Status CompleteLease(JobRow& row, const Completion& c, absl::Time now, Events* events) {
  RESTYLE_RETURN_IF_ERROR(CheckLease(row, c.worker, c.attempt));
  if (c.result) {
    *row.job.mutable_result() = *c.result;
    row.job.clear_error();
    Finish(row, v1::JOB_STATE_SUCCEEDED, now);
  } else if (row.job.state() == v1::JOB_STATE_CANCELLING ||
             c.error.code() == static_cast<int>(absl::StatusCode::kCancelled)) {
    *row.job.mutable_error() = CancelledError();
    Finish(row, v1::JOB_STATE_CANCELLED, now);
  } else if (c.retryable) {
    v1::JobError error = c.error;
    (*error.mutable_metadata())["worker"] = c.worker;
    FailedAttempt(row, std::move(error), now);
  } else {
    *row.job.mutable_error() = c.error;
    (*row.job.mutable_error()->mutable_metadata())["worker"] = c.worker;
    Finish(row, v1::JOB_STATE_FAILED, now);
  }
  StateChanged(row, now, events);
  return absl::OkStatus();
}

absl::Status ReleaseLease(JobRow& row, const std::string& worker, int attempt,
                          const std::string& reason, absl::Time now, Events* events) {
  RESTYLE_RETURN_IF_ERROR(CheckLease(row, worker, attempt));
  if (row.job.state() == v1::JOB_STATE_CANCELLING) {
    *row.job.mutable_error() = CancelledError();
    Finish(row, v1::JOB_STATE_CANCELLED, now);
  } else {
    EndLease(row);
    row.job.set_state(v1::JOB_STATE_QUEUED);
  }
  if (!reason.empty()) NextEvent(row, now, events)->set_log(worker + " released the job: " + reason);
  StateChanged(row, now, events);
  return absl::OkStatus();
}

void CancelJob(JobRow& row, absl::Time now, Events* events) {
  if (row.job.state() == v1::JOB_STATE_QUEUED) {
    *row.job.mutable_error() = CancelledError();
    row.job.set_queue_position(0);
    row.job.clear_queue_eta();
    Finish(row, v1::JOB_STATE_CANCELLED, now);
  } else if (row.job.state() == v1::JOB_STATE_RUNNING) {
    row.job.set_state(v1::JOB_STATE_CANCELLING);
  } else {
    return;
  }
  StateChanged(row, now, events);
}

std::optional<absl::Time> NextDeadline(const JobRow& row) {
  std::optional<absl::Time> next;
  auto consider = [&](absl::Time t) { next = next ? std::min(*next, t) : t; };
  const v1::JobSpec& spec = row.job.spec();
  if (row.job.state() == v1::JOB_STATE_QUEUED && spec.has_max_queue_time()) {
    consider(FromProtoTime(row.job.create_time()) + FromProtoDuration(spec.max_queue_time()));
  }
  if (IsLeased(row.job.state())) {
    if (row.lease_expire) consider(*row.lease_expire);
    if (row.job.state() == v1::JOB_STATE_RUNNING && spec.has_max_run_time()) {
      consider(FromProtoTime(row.job.start_time()) + FromProtoDuration(spec.max_run_time()));
    }
  }
  return next;
}

bool ExpireIfDue(JobRow& row, absl::Time now, Events* events) {
  const v1::JobSpec& spec = row.job.spec();
  if (row.job.state() == v1::JOB_STATE_QUEUED && spec.has_max_queue_time() &&
      FromProtoTime(row.job.create_time()) + FromProtoDuration(spec.max_queue_time()) <= now) {
    *row.job.mutable_error() = MakeJobError(
        absl::StatusCode::kDeadlineExceeded, "QUEUE_TIMEOUT",
        absl::StrCat("no worker took the job within its max_queue_time of ",
                     absl::FormatDuration(FromProtoDuration(spec.max_queue_time())),
                     "; add workers with its source generator, or allow a longer wait"));
    row.job.set_queue_position(0);
    row.job.clear_queue_eta();
    Finish(row, v1::JOB_STATE_FAILED, now);
  } else if (row.job.state() == v1::JOB_STATE_RUNNING && spec.has_max_run_time() &&
             FromProtoTime(row.job.start_time()) + FromProtoDuration(spec.max_run_time()) <= now) {
    v1::JobError error = MakeJobError(
        absl::StatusCode::kDeadlineExceeded, "RUN_TIMEOUT",
        absl::StrCat("attempt ", row.job.attempt(), " on ", row.job.worker(),
                     " ran longer than the job's max_run_time of ",
                     absl::FormatDuration(FromProtoDuration(spec.max_run_time())),
                     "; allow more time or use fewer iterations"));
    (*error.mutable_metadata())["worker"] = row.job.worker();
    *row.job.mutable_error() = std::move(error);
    Finish(row, v1::JOB_STATE_FAILED, now);
  } else if (IsLeased(row.job.state()) && row.lease_expire && *row.lease_expire <= now) {
    const std::string worker = row.job.worker();
    if (row.job.state() == v1::JOB_STATE_CANCELLING) {
      *row.job.mutable_error() = CancelledError();
      Finish(row, v1::JOB_STATE_CANCELLED, now);
    } else {
      v1::JobError error = MakeJobError(
          absl::StatusCode::kUnavailable, "LEASE_EXPIRED",
          absl::StrCat(worker, " stopped renewing its lease on attempt ", row.job.attempt(),
                       " (it died, hung or lost its connection)"));
      (*error.mutable_metadata())["worker"] = worker;
      FailedAttempt(row, std::move(error), now);
    }
  } else {
    return false;
  }
  StateChanged(row, now, events);
  return true;
}

}  // namespace restyle::server
