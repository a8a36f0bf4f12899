// The embedded job store: one SQLite database file in the front's data
// directory, in WAL mode with synchronous=FULL (a commit is on disk before
// the call returns), with a schema version table and migrations applied at
// open. WAL needs a local file system (a ReadWriteOnce volume, not NFS).
//
// Thread-safety: thread-safe (one connection behind a mutex; SQLite runs one
// writer at a time anyway).
#ifndef RESTYLE_SERVER_SQLITE_JOB_STORE_H_
#define RESTYLE_SERVER_SQLITE_JOB_STORE_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/job_store.h"

struct sqlite3;

namespace restyle::server {

class SqliteJobStore : public JobStore {
 public:
  struct Options {
    // The database file (created with its directory when missing).
    std::string path;
  };

  // Opens (or creates) the database and brings its schema to the current
  // version. FAILED_PRECONDITION for a database of a newer Restyle.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(const Options& options);
  ~SqliteJobStore() override;

  // The schema version this build writes.
  static int SchemaVersion();

  absl::StatusOr<Created> Create(const JobRow& row, const Events& events,
                                 int64_t max_queued) override;
  absl::StatusOr<JobRow> Get(const std::string& id) override;
  absl::StatusOr<JobPage> List(const JobFilter& filter, int page_size,
                               const std::string& page_token) override;
  absl::StatusOr<Events> ReadEvents(const std::string& id, int64_t after_seq,
                                    int limit) override;
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

 protected:
  absl::StatusOr<JobUpdate> Update(const std::string& id, const Mutation& mutate) override;
  absl::StatusOr<std::optional<JobUpdate>> LeaseNext(const std::vector<std::string>& sources,
                                                     const Mutation& mutate) override;
  absl::StatusOr<std::vector<std::string>> DueJobIds(absl::Time now) override;

 private:
  explicit SqliteJobStore(sqlite3* db) : db_(db) {}
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::optional<JobRow>> ReadRow(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteRow(const JobRow& row, bool insert) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteEvents(const std::string& id, const Events& events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `body` between BEGIN IMMEDIATE and COMMIT (ROLLBACK on error).
  absl::Status Transaction(const std::function<absl::Status()>& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<JobUpdate> MutateLocked(JobRow row, const Mutation& mutate)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  sqlite3* const db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_SQLITE_JOB_STORE_H_
