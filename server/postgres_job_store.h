// The job store on a PostgreSQL server the operator runs (libpq). The same
// tables as the SQLite store; a lease is taken with SELECT ... FOR UPDATE
// SKIP LOCKED and every other change of a job with SELECT ... FOR UPDATE, so
// that several processes on one database (two fronts, or a front and
// `restyled --check`) never lease one job twice or lose an update. Job order
// (`seq`) comes from a sequence. The schema is brought to the current
// version at Open under a transaction-scoped advisory lock, so fronts that
// start at once migrate it once.
//
// Connections: a pool of at most `pool_size`, opened on demand. A call takes
// one for its duration (waiting while all are busy) and gives it back; a
// connection the server dropped is closed and the next call opens a new one.
// A lost connection is UNAVAILABLE (reason STORE_UNAVAILABLE) with the
// server's address and what to check; a call that finds its pooled
// connection dead before it sent anything reconnects once by itself.
//
// Thread-safety: thread-safe (each call on its own pooled connection).
#ifndef RESTYLE_SERVER_POSTGRES_JOB_STORE_H_
#define RESTYLE_SERVER_POSTGRES_JOB_STORE_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/job_store.h"

namespace restyle::server {

class PgConnection;  // postgres_job_store.cc

class PostgresJobStore : public JobStore {
 public:
  struct Options {
    // A libpq connection URI, "postgresql://user@host:5432/restyle?sslmode=
    // require" (or "postgres://"). The password is best kept out of it: libpq
    // reads PGPASSWORD and PGPASSFILE. Required.
    std::string url;
    // Connections at most; calls beyond wait for one to come back.
    int pool_size = 4;
    // How long opening one connection may take (the URL's connect_timeout
    // wins).
    absl::Duration connect_timeout = absl::Seconds(10);
  };

  // Connects, then creates or migrates the schema. INVALID_ARGUMENT for a
  // URL libpq cannot parse; UNAVAILABLE (STORE_UNAVAILABLE) when the server
  // cannot be reached or refuses the login; FAILED_PRECONDITION for a schema
  // of a newer Restyle.
  static absl::StatusOr<std::unique_ptr<PostgresJobStore>> Open(const Options& options);
  ~PostgresJobStore() override;

  // The schema version this build writes.
  static int SchemaVersion();

  absl::StatusOr<Created> Create(const JobRow& row, const Events& events,
                                 int64_t max_queued) override;
  absl::StatusOr<JobRow> Get(const std::string& id) override;
  absl::StatusOr<JobPage> List(const JobFilter& filter, int page_size,
                               const std::string& page_token) override;
  absl::StatusOr<Events> ReadEvents(const std::string& id, int64_t after_seq, int limit) override;
  absl::StatusOr<int64_t> QueuePosition(const JobRow& row) override;
  absl::StatusOr<int64_t> CountQueued() override;
  absl::StatusOr<std::optional<absl::Duration>> MeanRunTime(int n) override;
  absl::Status ExtendLeases(absl::Time until) override;
  absl::Status PutArtifact(const ArtifactRecord& record, const std::string& worker) override;
  absl::StatusOr<ArtifactRecord> GetArtifact(const std::string& name) override;
  absl::StatusOr<std::vector<ArtifactRecord>> ListArtifacts(const std::string& job_id) override;
  absl::Status DeleteArtifacts(const std::string& job_id) override;
  absl::Status PutSource(const v1::Generator& generator) override;
  absl::StatusOr<std::vector<v1::Generator>> ListSources() override;
  absl::StatusOr<std::vector<JobRow>> ListAdapted(int64_t offset, int limit) override;
  absl::Status MarkGeneratorDeleted(const std::string& job_id, absl::Time now) override;
  bool shared() const override { return true; }
  absl::Status PutFront(const FrontRecord& front) override;
  absl::StatusOr<std::vector<FrontRecord>> ListFronts(absl::Time since) override;
  absl::Status DeleteFront(const std::string& id, absl::Time stale_before) override;
  // LISTENs on its own connection (not the pool's), on a thread of its own;
  // after a lost connection it reconnects (backing off up to 5 s) and calls
  // on_gap. Every change this store commits is NOTIFYed with `origin`.
  absl::Status WatchChanges(const std::string& origin, ChangeListener listener) override;

 protected:
  absl::StatusOr<JobUpdate> Update(const std::string& id, const Mutation& mutate) override;
  absl::StatusOr<std::optional<JobUpdate>> LeaseNext(const std::vector<std::string>& sources,
                                                     const Mutation& mutate) override;
  absl::StatusOr<std::vector<std::string>> DueJobIds(absl::Time now) override;

 private:
  // A connection taken from the pool for one call; given back when destroyed.
  class Borrowed;

  explicit PostgresJobStore(const Options& options);
  // A pooled connection, or a new one while fewer than pool_size are open.
  absl::StatusOr<Borrowed> Acquire();
  bool CanAcquire() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_ < options_.pool_size;
  }
  void GiveBack(std::unique_ptr<PgConnection> connection);
  absl::StatusOr<std::unique_ptr<PgConnection>> Connect() const;
  absl::Status Migrate(PgConnection& c);
  // The front id changes are announced under ("" before WatchChanges).
  std::string origin() const;
  void Listen(const std::string& origin, const ChangeListener& listener,
              std::unique_ptr<PgConnection> c);

  const Options options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<PgConnection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle and taken
  mutable absl::Mutex origin_mu_;
  std::string origin_ ABSL_GUARDED_BY(origin_mu_);
  std::thread listener_;  // started once by WatchChanges
  absl::Notification stop_listening_;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_POSTGRES_JOB_STORE_H_
