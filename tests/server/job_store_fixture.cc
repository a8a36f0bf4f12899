#include "tests/server/job_store_fixture.h"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "server/postgres_job_store.h"
#include "server/sqlite_job_store.h"
#include "tests/integration/postgres_server.h"

namespace restyle::server {

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
}

NewJobRow MakeJob(const std::string& id, int priority, const std::string& source, absl::Time now,
                  const std::string& request_id, const std::string& digest, int max_attempts) {
  v1::JobSpec spec;
  spec.set_source_generator(source);
  spec.set_target_text("ukiyo-e");
  spec.set_priority(priority);
  NewJobRow out;
  out.row = NewJob(id, spec, request_id, digest, max_attempts, now, &out.events);
  return out;
}

void StoreTest::SetUp() {
  static int databases = 0;
  const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
  if (backend() == Backend::kSqlite) {
    std::string name = absl::StrCat(test->test_suite_name(), "_", test->name());
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = ::testing::TempDir() + "/store_test_" + name;
    std::filesystem::remove_all(dir_);
  } else {
    absl::StatusOr<testing::PostgresServer*> pg = testing::SharedPostgres();
    RESTYLE_REQUIRE_POSTGRES(pg);
    database_ = absl::StrCat("store_test_", ++databases);
    ASSERT_TRUE((*pg)->CreateDatabase(database_).ok());
    url_ = (*pg)->Url(database_);
  }
  Reopen();
}

absl::StatusOr<std::unique_ptr<JobStore>> StoreTest::OpenAnother() {
  if (backend() == Backend::kSqlite) {
    absl::StatusOr<std::unique_ptr<SqliteJobStore>> s =
        SqliteJobStore::Open({.path = dir_ + "/restyle.db"});
    if (!s.ok()) return s.status();
    return std::unique_ptr<JobStore>(*std::move(s));
  }
  absl::StatusOr<std::unique_ptr<PostgresJobStore>> s = PostgresJobStore::Open({.url = url_});
  if (!s.ok()) return s.status();
  return std::unique_ptr<JobStore>(*std::move(s));
}

void StoreTest::Reopen() {
  store_.reset();
  absl::StatusOr<std::unique_ptr<JobStore>> s = OpenAnother();
  ASSERT_TRUE(s.ok()) << s.status();
  store_ = *std::move(s);
}

absl::Status StoreTest::SetSchemaVersion(int version) {
  store_.reset();
  const std::string sql = absl::StrCat("UPDATE schema_version SET version = ", version);
  if (backend() == Backend::kPostgres) {
    absl::StatusOr<testing::PostgresServer*> pg = testing::SharedPostgres();
    if (!pg.ok()) return pg.status();
    return (*pg)->Execute(database_, sql);
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open((dir_ + "/restyle.db").c_str(), &db);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return rc == SQLITE_OK ? absl::OkStatus() : absl::InternalError(sqlite3_errstr(rc));
}

std::string StoreTest::Add(const std::string& id, int priority, const std::string& source,
                           absl::Time now, const std::string& request_id, const std::string& digest,
                           int max_attempts) {
  NewJobRow job = MakeJob(id, priority, source, now, request_id, digest, max_attempts);
  auto created = store_->Create(job.row, job.events, 100);
  EXPECT_TRUE(created.ok()) << created.status();
  return id;
}

std::string StoreTest::LeaseId(const std::string& worker, absl::Time now,
                               std::vector<std::string> sources) {
  auto lease = store_->Lease(worker, sources, now, kTtl);
  EXPECT_TRUE(lease.ok()) << lease.status();
  if (!lease.ok() || !*lease) return "";
  return (*lease)->row.job.name().substr(5);
}

v1::Job StoreTest::Job(const std::string& id) {
  auto row = store_->Get(id);
  EXPECT_TRUE(row.ok()) << row.status();
  return row.ok() ? row->job : v1::Job();
}

}  // namespace restyle::server
