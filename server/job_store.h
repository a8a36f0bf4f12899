// The front's durable store of jobs, their events, artifacts' records and the
// source generators workers announced. Every accepted job is in it before the
// client hears of it; the front answers reads from it.
//
// The operations are the job lifecycle (create, lease, renew, progress,
// complete, release, cancel, expire, list). They are written once, here, on
// two storage primitives a backend provides, Update (read-modify-write of one
// job in a transaction) and LeaseNext (pick and update the next queued job
// in a transaction), plus plain queries; the rules themselves are
// job_lifecycle.h. SQLite (sqlite_job_store.h) is the embedded backend;
// PostgreSQL (postgres_job_store.h) implements the same primitives with
// SELECT ... FOR UPDATE [SKIP LOCKED], safe for several processes on one
// database; open_job_store.h picks one. Nothing above this interface knows
// which backend runs.
//
// Every call that changes a job returns the events it appended, committed,
// so the caller can publish them to watchers (publish after commit: a
// watcher never sees an event that a crash could take back).
//
// Thread-safety: implementations are thread-safe. Calls block on disk I/O;
// the service calls them from its store threads, never from gRPC's.
#ifndef RESTYLE_SERVER_JOB_STORE_H_
#define RESTYLE_SERVER_JOB_STORE_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "restyle/v1/generator.pb.h"
#include "restyle/v1/job.pb.h"
#include "restyle/v1/restyle_service.pb.h"
#include "server/job_lifecycle.h"

namespace restyle::server {

// A job after a change, and the events the change appended.
struct JobUpdate {
  JobRow row;
  Events events;
};

struct JobFilter {
  std::vector<v1::JobState> states;  // empty: every state
  std::string source_generator;      // "generators/{id}", "" for any
};

// A front that shares the store with others (PostgreSQL), as it last said.
struct FrontRecord {
  std::string id;       // random per process start
  std::string address;  // HOST:PORT of its API port, for the other fronts
  absl::Time started;
  absl::Time seen;      // its last heartbeat
  bool draining = false;
  // The workers connected to it and ready (not draining), as ListWorkers
  // shows them.
  std::vector<v1::Worker> workers;
};

// A change of a job committed by another process on a shared store.
struct StoreChange {
  std::string origin;  // the committing front's id
  std::string job_id;
  int64_t first_seq = 0;  // the events it appended, first_seq..last_seq
  int64_t last_seq = 0;
  bool queued = false;  // the job is QUEUED after it (created, queued again)
};

// What WatchChanges calls, on a thread of the store's own.
struct ChangeListener {
  std::function<void(const StoreChange& change)> on_change;
  // Changes may have been missed (the listening connection was lost and
  // is back): whoever follows jobs reads them from the store again.
  std::function<void()> on_gap;
};

struct JobPage {
  std::vector<JobRow> rows;
  std::string next_page_token;  // "" on the last page
};

// A stored file of a job (its bytes live under the front's data directory).
struct ArtifactRecord {
  v1::Artifact artifact;  // name, kind, size, sha256, content type
  std::string job_id;
  int attempt = 0;        // the lease that uploaded it
  std::string path;       // relative to the artifact root
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // --- creating and reading ---------------------------------------------
  // Stores a job made by NewJob with its events. With a request_id already
  // used: the same request_digest returns the stored job (created = false);
  // another is INVALID_ARGUMENT, reason REQUEST_ID_REUSED. RESOURCE_EXHAUSTED,
  // reason QUEUE_FULL, when `max_queued` jobs are already queued.
  struct Created {
    JobUpdate update;
    bool created = false;
  };
  virtual absl::StatusOr<Created> Create(const JobRow& row, const Events& events,
                                         int64_t max_queued) = 0;
  // NOT_FOUND (reason JOB_NOT_FOUND) for an unknown id.
  virtual absl::StatusOr<JobRow> Get(const std::string& id) = 0;
  // Newest first. INVALID_ARGUMENT (reason INVALID_PAGE_TOKEN) for a token
  // this store did not make.
  virtual absl::StatusOr<JobPage> List(const JobFilter& filter, int page_size,
                                       const std::string& page_token) = 0;
  // The job's events with seq > after_seq, oldest first, at most `limit`.
  virtual absl::StatusOr<Events> ReadEvents(const std::string& id, int64_t after_seq,
                                            int limit) = 0;
  // 1-based position of a QUEUED job among the queued ones (priority, then
  // age); 0 when it is not queued.
  virtual absl::StatusOr<int64_t> QueuePosition(const JobRow& row) = 0;
  virtual absl::StatusOr<int64_t> CountQueued() = 0;
  // Mean time from lease to end of the last `n` succeeded jobs (nullopt
  // when none has succeeded yet).
  virtual absl::StatusOr<std::optional<absl::Duration>> MeanRunTime(int n) = 0;

  // --- the lifecycle (job_lifecycle.h, on the primitives below) ----------
  // The next QUEUED job (highest priority, then oldest) whose source is one
  // of `sources`, leased to `worker`; nullopt when there is none.
  absl::StatusOr<std::optional<JobUpdate>> Lease(const std::string& worker,
                                                 const std::vector<std::string>& sources,
                                                 absl::Time now, absl::Duration ttl);
  absl::StatusOr<JobUpdate> Renew(const std::string& id, const std::string& worker, int attempt,
                                  absl::Time expire);
  absl::StatusOr<JobUpdate> ReportProgress(
      const std::string& id, const std::string& worker, int attempt,
      const std::vector<restyle::worker::v1::ProgressEvent>& reported, absl::Time now);
  absl::StatusOr<JobUpdate> Complete(const std::string& id, const Completion& completion,
                                     absl::Time now);
  absl::StatusOr<JobUpdate> Release(const std::string& id, const std::string& worker, int attempt,
                                    const std::string& reason, absl::Time now);
  absl::StatusOr<JobUpdate> Cancel(const std::string& id, absl::Time now);
  // Applies every deadline that has passed (ExpireIfDue); the jobs changed.
  absl::StatusOr<std::vector<JobUpdate>> ExpireDue(absl::Time now);
  // After a restart: every held lease ends no sooner than `until`, so that
  // workers have a lease period to reconnect before their jobs move.
  virtual absl::Status ExtendLeases(absl::Time until) = 0;

  // --- artifacts and generators -------------------------------------------
  // Records an uploaded artifact (replacing the record of the same name),
  // in one transaction with a check that the job is still leased to `worker`
  // under record.attempt (ABORTED, LEASE_LOST, otherwise; "" skips it).
  virtual absl::Status PutArtifact(const ArtifactRecord& record, const std::string& worker) = 0;
  // NOT_FOUND (reason ARTIFACT_NOT_FOUND).
  virtual absl::StatusOr<ArtifactRecord> GetArtifact(const std::string& name) = 0;
  virtual absl::StatusOr<std::vector<ArtifactRecord>> ListArtifacts(const std::string& job_id) = 0;
  virtual absl::Status DeleteArtifacts(const std::string& job_id) = 0;
  // Source generators by id, as workers announced them (kept across
  // restarts so that requests validate before the workers reconnect).
  virtual absl::Status PutSource(const v1::Generator& generator) = 0;
  virtual absl::StatusOr<std::vector<v1::Generator>> ListSources() = 0;
  // Adapted generators: SUCCEEDED jobs whose generator was not deleted,
  // newest first, from `offset` on.
  virtual absl::StatusOr<std::vector<JobRow>> ListAdapted(int64_t offset, int limit) = 0;
  // Marks a succeeded job's generator deleted (Get still returns the job,
  // without result.generator); NOT_FOUND when there is none.
  virtual absl::Status MarkGeneratorDeleted(const std::string& job_id, absl::Time now) = 0;

  // --- several fronts on one store ---------------------------------------
  // Whether several fronts may use this store at once (PostgreSQL). The
  // calls below are for shared stores only; an embedded store (SQLite, one
  // front) answers UNIMPLEMENTED.
  virtual bool shared() const { return false; }
  // Records (or refreshes) a front's heartbeat.
  virtual absl::Status PutFront(const FrontRecord& front);
  // The fronts whose last heartbeat is at or after `since`, oldest start first.
  virtual absl::StatusOr<std::vector<FrontRecord>> ListFronts(absl::Time since);
  // Forgets a front (it stopped cleanly), and fronts not seen since
  // `stale_before`.
  virtual absl::Status DeleteFront(const std::string& id, absl::Time stale_before);
  // Starts handing `listener` the changes other fronts commit (every change
  // this store commits is announced under `origin`, its front's id, and
  // those of `origin` itself are not handed back), until the store is
  // destroyed. Call once.
  virtual absl::Status WatchChanges(const std::string& origin, ChangeListener listener);

 protected:
  // Mutates one job in a transaction: `mutate` sees the current row and may
  // change it and append events (an error aborts the transaction and is
  // returned). NOT_FOUND (JOB_NOT_FOUND) for an unknown id.
  using Mutation = std::function<absl::Status(JobRow& row, Events* events)>;
  virtual absl::StatusOr<JobUpdate> Update(const std::string& id, const Mutation& mutate) = 0;
  // Picks the next QUEUED job (priority desc, then creation) whose source is
  // in `sources`, and mutates it as Update does, in one transaction.
  virtual absl::StatusOr<std::optional<JobUpdate>> LeaseNext(
      const std::vector<std::string>& sources, const Mutation& mutate) = 0;
  // Ids of jobs whose NextDeadline is at or before `now`.
  virtual absl::StatusOr<std::vector<std::string>> DueJobIds(absl::Time now) = 0;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_JOB_STORE_H_
