// The job store tests' fixture: a fresh store of the backend the test is
// instantiated for (SQLite in a temporary directory, or a new database on the
// binary's shared PostgreSQL server, tests/integration/postgres_server.h),
// and helpers to add, lease and read jobs.
#ifndef RESTYLE_TESTS_SERVER_JOB_STORE_FIXTURE_H_
#define RESTYLE_TESTS_SERVER_JOB_STORE_FIXTURE_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/job_store.h"

namespace restyle::server {

enum class Backend { kSqlite, kPostgres };

// "Sqlite" or "Postgres" (test name suffixes).
std::string BackendName(const ::testing::TestParamInfo<Backend>& info);

inline const absl::Time kT0 = absl::FromUnixSeconds(1800000000);
inline constexpr absl::Duration kTtl = absl::Seconds(10);
inline const std::string kW1 = "workers/w1", kW2 = "workers/w2";
inline const std::string kSource = "generators/demo";

// A QUEUED job (NewJob) with its events.
struct NewJobRow {
  JobRow row;
  Events events;
};
NewJobRow MakeJob(const std::string& id, int priority = 0, const std::string& source = kSource,
                  absl::Time now = kT0, const std::string& request_id = "",
                  const std::string& digest = "", int max_attempts = 2);

class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  // Fresh storage for the test; opens store_ on it. Skips (fails under
  // CI=true) when the backend is PostgreSQL and none is installed.
  void SetUp() override;
  // Closes store_ and opens the storage again.
  void Reopen();
  // Another store on the same storage (its own connections, as a second
  // front's).
  absl::StatusOr<std::unique_ptr<JobStore>> OpenAnother();
  // Writes another schema version into the storage (store_ closed first).
  absl::Status SetSchemaVersion(int version);

  // Creates a job; returns its id.
  std::string Add(const std::string& id, int priority = 0, const std::string& source = kSource,
                  absl::Time now = kT0, const std::string& request_id = "",
                  const std::string& digest = "", int max_attempts = 2);
  // Leases the next job to `worker`: its id, "" when none.
  std::string LeaseId(const std::string& worker, absl::Time now = kT0,
                      std::vector<std::string> sources = {kSource});
  v1::Job Job(const std::string& id);

  Backend backend() const { return GetParam(); }

  std::string dir_;       // SQLite: the data directory
  std::string database_;  // PostgreSQL: the test's database
  std::string url_;       // and its URL
  std::unique_ptr<JobStore> store_;
};

}  // namespace restyle::server

#endif  // RESTYLE_TESTS_SERVER_JOB_STORE_FIXTURE_H_
