#include "server/job_store.h"

#include "common/status.h"

namespace restyle::server {
namespace {

absl::Status NotShared() {
  return absl::UnimplementedError(
      "this job store is embedded (one front); several fronts need --database-url");
}

}  // namespace

absl::Status JobStore::PutFront(const FrontRecord&) { return NotShared(); }
absl::StatusOr<std::vector<FrontRecord>> JobStore::ListFronts(absl::Time) { return NotShared(); }
absl::Status JobStore::DeleteFront(const std::string&, absl::Time) { return NotShared(); }
absl::Status JobStore::WatchChanges(const std::string&, ChangeListener) { return NotShared(); }

absl::StatusOr<std::optional<JobUpdate>> JobStore::Lease(const std::string& worker,
                                                         const std::vector<std::string>& sources,
                                                         absl::Time now, absl::Duration ttl) {
  if (sources.empty()) return std::optional<JobUpdate>();
  return LeaseNext(sources, [&](JobRow& row, Events* events) {
    return StartLease(row, worker, now, ttl, events);
  });
}

absl::StatusOr<JobUpdate> JobStore::Renew(const std::string& id, const std::string& worker,
                                          int attempt, absl::Time expire) {
  return Update(id, [&](JobRow& row, Events*) { return RenewLease(row, worker, attempt, expire); });
}

absl::StatusOr<JobUpdate> JobStore::ReportProgress(
    const std::string& id, const std::string& worker, int attempt,
    const std::vector<restyle::worker::v1::ProgressEvent>& reported, absl::Time now) {
  return Update(id, [&](JobRow& row, Events* events) {
    return AddProgress(row, worker, attempt, reported, now, events);
  });
}

absl::StatusOr<JobUpdate> JobStore::Complete(const std::string& id, const Completion& completion,
                                             absl::Time now) {
  return Update(id, [&](JobRow& row, Events* events) {
    return CompleteLease(row, completion, now, events);
  });
}

absl::StatusOr<JobUpdate> JobStore::Release(const std::string& id, const std::string& worker,
                                            int attempt, const std::string& reason,
                                            absl::Time now) {
  return Update(id, [&](JobRow& row, Events* events) {
    return ReleaseLease(row, worker, attempt, reason, now, events);
  });
}

absl::StatusOr<JobUpdate> JobStore::Cancel(const std::string& id, absl::Time now) {
  return Update(id, [&](JobRow& row, Events* events) {
    CancelJob(row, now, events);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<JobUpdate>> JobStore::ExpireDue(absl::Time now) {
  RESTYLE_ASSIGN_OR_RETURN(std::vector<std::string> ids, DueJobIds(now));
  std::vector<JobUpdate> changed;
  for (const std::string& id : ids) {
    RESTYLE_ASSIGN_OR_RETURN(JobUpdate update, Update(id, [&](JobRow& row, Events* events) {
                               ExpireIfDue(row, now, events);
                               return absl::OkStatus();
                             }));
    if (!update.events.empty()) changed.push_back(std::move(update));
  }
  return changed;
}

}  // namespace restyle::server
