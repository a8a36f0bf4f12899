#include "server/sqlite_job_store.h"

#include <sqlite3.h>

#include <filesystem>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "common/names.h"
#include "common/status.h"
#include "common/time.h"

namespace restyle::server {
namespace {

// Schema migrations: entry i brings version i to i + 1. Never edit a landed
// entry; append a new one.
const std::vector<const char*>& Migrations() {
  static const auto* migrations = new std::vector<const char*>{
      // 0 -> 1: jobs, their events, artifacts, source generators.
      R"sql(
      CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        state INTEGER NOT NULL,
        source TEXT NOT NULL,
        priority INTEGER NOT NULL,
        request_id TEXT UNIQUE,
        request_digest TEXT NOT NULL,
        worker TEXT,
        attempt INTEGER NOT NULL,
        lease_expire_ms INTEGER,
        deadline_ms INTEGER,
        create_ms INTEGER NOT NULL,
        start_ms INTEGER,
        end_ms INTEGER,
        update_ms INTEGER NOT NULL,
        generator_deleted INTEGER NOT NULL DEFAULT 0,
        job BLOB NOT NULL);
      CREATE INDEX jobs_queue ON jobs (state, priority DESC, seq);
      CREATE INDEX jobs_deadline ON jobs (deadline_ms) WHERE deadline_ms IS NOT NULL;
      CREATE TABLE job_events (
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event BLOB NOT NULL,
        PRIMARY KEY (job_id, seq)) WITHOUT ROWID;
      CREATE TABLE artifacts (
        name TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        path TEXT NOT NULL,
        artifact BLOB NOT NULL);
      CREATE INDEX artifacts_job ON artifacts (job_id);
      CREATE TABLE sources (
        id TEXT PRIMARY KEY,
        generator BLOB NOT NULL,
        update_ms INTEGER NOT NULL);
      )sql",
  };
  return *migrations;
}

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  const std::string message = absl::StrCat(what, ": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return ErrorWithReason(absl::StatusCode::kResourceExhausted, "DISK_FULL",
                             absl::StrCat("the front's data directory is full (", message,
                                          "); free space on its volume"));
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return ErrorWithReason(absl::StatusCode::kUnavailable, "STORE_BUSY", message,
                             {}, absl::Seconds(1));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return ErrorWithReason(absl::StatusCode::kDataLoss, "STORE_CORRUPT", message);
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
      return ErrorWithReason(absl::StatusCode::kUnavailable, "STORE_IO_ERROR", message);
    default:
      return absl::InternalError(message);
  }
}

// One prepared statement; values bound by position (1-based), columns read
// by index (0-based).
class Stmt {
 public:
  Stmt(sqlite3* db, absl::string_view sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& Bind(int i, int64_t v) {
    if (ok()) rc_ = sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, const std::string& v) {
    if (ok()) rc_ = sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindBlob(int i, const std::string& v) {
    if (ok()) rc_ = sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindNull(int i) {
    if (ok()) rc_ = sqlite3_bind_null(stmt_, i);
    return *this;
  }
  Stmt& Bind(int i, const std::optional<int64_t>& v) { return v ? Bind(i, *v) : BindNull(i); }
  Stmt& BindOptionalText(int i, const std::string& v) { return v.empty() ? BindNull(i) : Bind(i, v); }

  // True when a row is ready, false when done.
  absl::StatusOr<bool> Step() {
    if (!ok()) return SqliteError(db_, rc_, "prepare");
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    rc_ = rc;
    return SqliteError(db_, rc, "step");
  }
  absl::Status Run() {
    absl::StatusOr<bool> row = Step();
    return row.ok() ? absl::OkStatus() : row.status();
  }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : "";
  }
  std::string Blob(int col) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : "";
  }

 private:
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

absl::Status Exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string text = error ? error : "";
  sqlite3_free(error);
  return SqliteError(db, rc, absl::StrCat("exec (", text, ")"));
}

absl::Status JobNotFound(const std::string& id) {
  return ErrorWithReason(absl::StatusCode::kNotFound, "JOB_NOT_FOUND",
                         absl::StrCat("no job jobs/", id), {{"job", MakeName(kJobs, id)}});
}

constexpr char kRowColumns[] = "seq, request_digest, lease_expire_ms, job";

absl::StatusOr<JobRow> RowFrom(const Stmt& s) {
  JobRow row;
  row.seq = s.Int(0);
  row.request_digest = s.Text(1);
  if (!s.IsNull(2)) row.lease_expire = absl::FromUnixMillis(s.Int(2));
  if (!row.job.ParseFromString(s.Blob(3))) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                           "a stored job does not parse");
  }
  return row;
}

std::optional<int64_t> MillisOf(const google::protobuf::Timestamp& t, bool present) {
  if (!present) return std::nullopt;
  return absl::ToUnixMillis(FromProtoTime(t));
}

constexpr char kPageTokenPrefix[] = "v1.";

}  // namespace

int SqliteJobStore::SchemaVersion() { return static_cast<int>(Migrations().size()); }

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(const Options& options) {
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(options.path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(options.path.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(db, rc, absl::StrCat("open ", options.path));
    sqlite3_close(db);
    return status;
  }
  std::unique_ptr<SqliteJobStore> store(new SqliteJobStore(db));
  absl::MutexLock lock(&store->mu_);
  sqlite3_busy_timeout(db, 5000);
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                             "PRAGMA foreign_keys=ON"}) {
    RESTYLE_RETURN_IF_ERROR(Annotate(Exec(db, pragma), options.path));
  }
  {
    Stmt mode(db, "PRAGMA journal_mode");
    RESTYLE_ASSIGN_OR_RETURN(bool has_mode, mode.Step());
    if (!has_mode || mode.Text(0) != "wal") {
      return absl::FailedPreconditionError(absl::StrCat(
          options.path, ": SQLite cannot use WAL here (journal mode \"", mode.Text(0),
          "\"); put the data directory on a local file system, not NFS"));
    }
  }
  RESTYLE_RETURN_IF_ERROR(Annotate(store->Migrate(), options.path));
  return store;
}

SqliteJobStore::~SqliteJobStore() {
  absl::MutexLock lock(&mu_);
  // A clean close checkpoints the WAL into the database file.
  sqlite3_close_v2(db_);
}

absl::Status SqliteJobStore::Migrate() {
  RESTYLE_RETURN_IF_ERROR(Exec(db_, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"));
  return Transaction([&]() -> absl::Status {
    int64_t version = 0;
    {
      Stmt s(db_, "SELECT version FROM schema_version");
      RESTYLE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (row) {
        version = s.Int(0);
      } else {
        RESTYLE_RETURN_IF_ERROR(Stmt(db_, "INSERT INTO schema_version VALUES (0)").Run());
      }
    }
    const int64_t current = SchemaVersion();
    if (version > current) {
      return absl::FailedPreconditionError(
          absl::StrCat("the database has schema version ", version, ", this restyled knows ",
                       current, ": run a newer restyled (or restore a backup)"));
    }
    for (int64_t v = version; v < current; ++v) {
      RESTYLE_RETURN_IF_ERROR(Exec(db_, Migrations()[v]));
    }
    return Stmt(db_, "UPDATE schema_version SET version = ?").Bind(1, current).Run();
  });
}

absl::Status SqliteJobStore::Transaction(const std::function<absl::Status()>& body) {
  RESTYLE_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE"));
  absl::Status status = body();
  if (status.ok()) status = Exec(db_, "COMMIT");
  if (!status.ok()) Exec(db_, "ROLLBACK").IgnoreError();
  return status;
}

absl::StatusOr<std::optional<JobRow>> SqliteJobStore::ReadRow(const std::string& id) {
  Stmt s(db_, absl::StrCat("SELECT ", kRowColumns, " FROM jobs WHERE id = ?"));
  s.Bind(1, id);
  RESTYLE_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) return std::optional<JobRow>();
  RESTYLE_ASSIGN_OR_RETURN(JobRow row, RowFrom(s));
  return row;
}

absl::Status SqliteJobStore::WriteRow(const JobRow& row, bool insert) {
  const v1::Job& job = row.job;
  const std::string id = job.name().substr(sizeof(kJobs));  // after "jobs/"
  std::optional<int64_t> lease;
  if (row.lease_expire) lease = absl::ToUnixMillis(*row.lease_expire);
  std::optional<int64_t> deadline;
  if (std::optional<absl::Time> next = NextDeadline(row)) deadline = absl::ToUnixMillis(*next);
  Stmt s(db_, insert ? "INSERT INTO jobs (state, source, priority, request_id, request_digest, "
                       "worker, attempt, lease_expire_ms, deadline_ms, create_ms, start_ms, "
                       "end_ms, update_ms, job, seq, id) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                     : "UPDATE jobs SET state = ?, source = ?, priority = ?, request_id = ?, "
                       "request_digest = ?, worker = ?, attempt = ?, lease_expire_ms = ?, "
                       "deadline_ms = ?, create_ms = ?, start_ms = ?, end_ms = ?, update_ms = ?, "
                       "job = ?, seq = ? WHERE id = ?");
  s.Bind(1, static_cast<int64_t>(job.state()))
      .Bind(2, job.spec().source_generator())
      .Bind(3, static_cast<int64_t>(job.spec().priority()))
      .BindOptionalText(4, job.request_id())
      .Bind(5, row.request_digest)
      .BindOptionalText(6, job.worker())
      .Bind(7, static_cast<int64_t>(job.attempt()))
      .Bind(8, lease)
      .Bind(9, deadline)
      .Bind(10, absl::ToUnixMillis(FromProtoTime(job.create_time())))
      .Bind(11, MillisOf(job.start_time(), job.has_start_time()))
      .Bind(12, MillisOf(job.end_time(), job.has_end_time()))
      .Bind(13, absl::ToUnixMillis(FromProtoTime(job.has_update_time() ? job.update_time()
                                                                  : job.create_time())))
      .BindBlob(14, job.SerializeAsString())
      .Bind(15, row.seq)
      .Bind(16, id);
  return s.Run();
}

absl::Status SqliteJobStore::WriteEvents(const std::string& id, const Events& events) {
  for (const v1::JobEvent& e : events) {
    RESTYLE_RETURN_IF_ERROR(Stmt(db_, "INSERT INTO job_events (job_id, seq, event) VALUES (?, ?, ?)")
                                .Bind(1, id)
                                .Bind(2, e.seq())
                                .BindBlob(3, e.SerializeAsString())
                                .Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<JobStore::Created> SqliteJobStore::Create(const JobRow& row, const Events& events,
                                                         int64_t max_queued) {
  absl::MutexLock lock(&mu_);
  Created out;
  const std::string id = row.job.name().substr(sizeof(kJobs));
  RESTYLE_RETURN_IF_ERROR(Transaction([&]() -> absl::Status {
    if (!row.job.request_id().empty()) {
      Stmt s(db_, absl::StrCat("SELECT ", kRowColumns, " FROM jobs WHERE request_id = ?"));
      s.Bind(1, row.job.request_id());
      RESTYLE_ASSIGN_OR_RETURN(bool found, s.Step());
      if (found) {
        RESTYLE_ASSIGN_OR_RETURN(JobRow existing, RowFrom(s));
        if (existing.request_digest != row.request_digest) {
          return ErrorWithReason(
              absl::StatusCode::kInvalidArgument, "REQUEST_ID_REUSED",
              absl::StrCat("request_id \"", row.job.request_id(), "\" was used for ",
                           existing.job.name(), " with another spec; use a new request_id "
                           "for a new job"),
              {{"request_id", row.job.request_id()}, {"job", existing.job.name()}});
        }
        out.update.row = std::move(existing);
        out.created = false;
        return absl::OkStatus();
      }
    }
    Stmt count(db_, "SELECT COUNT(*) FROM jobs WHERE state = ?");
    count.Bind(1, static_cast<int64_t>(v1::JOB_STATE_QUEUED));
    RESTYLE_RETURN_IF_ERROR(count.Step().status());
    if (count.Int(0) >= max_queued) {
      return ErrorWithReason(
          absl::StatusCode::kResourceExhausted, "QUEUE_FULL",
          absl::StrCat("the adaptation queue is full (", count.Int(0),
                       " jobs waiting); retry later, or ask the operator to add workers"),
          {{"lane", "adaptation"}, {"limit", std::to_string(max_queued)}}, absl::Seconds(30));
    }
    Stmt next(db_, "SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs");
    RESTYLE_RETURN_IF_ERROR(next.Step().status());
    JobRow stored = row;
    stored.seq = next.Int(0);
    RESTYLE_RETURN_IF_ERROR(WriteRow(stored, /*insert=*/true));
    RESTYLE_RETURN_IF_ERROR(WriteEvents(id, events));
    out.update.row = std::move(stored);
    out.update.events = events;
    out.created = true;
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<JobRow> SqliteJobStore::Get(const std::string& id) {
  absl::MutexLock lock(&mu_);
  RESTYLE_ASSIGN_OR_RETURN(std::optional<JobRow> row, ReadRow(id));
  if (!row) return JobNotFound(id);
  return *std::move(row);
}

absl::StatusOr<JobPage> SqliteJobStore::List(const JobFilter& filter, int page_size,
                                             const std::string& page_token) {
  int64_t before = INT64_MAX;
  if (!page_token.empty()) {
    if (!absl::StartsWith(page_token, kPageTokenPrefix) ||
        !absl::SimpleAtoi(page_token.substr(sizeof(kPageTokenPrefix) - 1), &before)) {
      return ErrorWithReason(absl::StatusCode::kInvalidArgument, "INVALID_PAGE_TOKEN",
                             "page_token is not one this server made; start again without it",
                             {{"field", "page_token"}});
    }
  }
  std::string sql = absl::StrCat("SELECT ", kRowColumns, " FROM jobs WHERE seq < ?");
  if (!filter.states.empty()) {
    std::vector<std::string> states;
    for (v1::JobState s : filter.states) states.push_back(std::to_string(static_cast<int>(s)));
    absl::StrAppend(&sql, " AND state IN (", absl::StrJoin(states, ","), ")");
  }
  if (!filter.source_generator.empty()) absl::StrAppend(&sql, " AND source = ?");
  absl::StrAppend(&sql, " ORDER BY seq DESC LIMIT ?");
  absl::MutexLock lock(&mu_);
  Stmt s(db_, sql);
  int i = 1;
  s.Bind(i++, before);
  if (!filter.source_generator.empty()) s.Bind(i++, filter.source_generator);
  s.Bind(i++, static_cast<int64_t>(page_size) + 1);
  JobPage page;
  int64_t last_seq = 0;
  while (true) {
    RESTYLE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (static_cast<int>(page.rows.size()) == page_size) {
      page.next_page_token = absl::StrCat(kPageTokenPrefix, last_seq);
      break;
    }
    RESTYLE_ASSIGN_OR_RETURN(JobRow r, RowFrom(s));
    last_seq = r.seq;
    page.rows.push_back(std::move(r));
  }
  return page;
}

absl::StatusOr<Events> SqliteJobStore::ReadEvents(const std::string& id, int64_t after_seq,
                                                  int limit) {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "SELECT event FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?");
  s.Bind(1, id).Bind(2, after_seq).Bind(3, static_cast<int64_t>(limit));
  Events events;
  while (true) {
    RESTYLE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (!events.emplace_back().ParseFromString(s.Blob(0))) {
      return ErrorWithReason(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                             absl::StrCat("an event of jobs/", id, " does not parse"));
    }
  }
  return events;
}

absl::StatusOr<int64_t> SqliteJobStore::QueuePosition(const JobRow& row) {
  if (row.job.state() != v1::JOB_STATE_QUEUED) return 0;
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "SELECT COUNT(*) FROM jobs WHERE state = ? AND (priority > ? OR (priority = ? AND seq < ?))");
  const int64_t priority = row.job.spec().priority();
  s.Bind(1, static_cast<int64_t>(v1::JOB_STATE_QUEUED)).Bind(2, priority).Bind(3, priority).Bind(4, row.seq);
  RESTYLE_RETURN_IF_ERROR(s.Step().status());
  return s.Int(0) + 1;
}

absl::StatusOr<int64_t> SqliteJobStore::CountQueued() {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "SELECT COUNT(*) FROM jobs WHERE state = ?");
  s.Bind(1, static_cast<int64_t>(v1::JOB_STATE_QUEUED));
  RESTYLE_RETURN_IF_ERROR(s.Step().status());
  return s.Int(0);
}

absl::StatusOr<std::optional<absl::Duration>> SqliteJobStore::MeanRunTime(int n) {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "SELECT AVG(end_ms - start_ms), COUNT(*) FROM (SELECT end_ms, start_ms FROM jobs "
              "WHERE state = ? AND start_ms IS NOT NULL ORDER BY end_ms DESC LIMIT ?)");
  s.Bind(1, static_cast<int64_t>(v1::JOB_STATE_SUCCEEDED)).Bind(2, static_cast<int64_t>(n));
  RESTYLE_RETURN_IF_ERROR(s.Step().status());
  if (s.Int(1) == 0) return std::optional<absl::Duration>();
  return std::optional<absl::Duration>(absl::Milliseconds(s.Int(0)));
}

absl::StatusOr<JobUpdate> SqliteJobStore::MutateLocked(JobRow row, const Mutation& mutate) {
  JobUpdate update;
  RESTYLE_RETURN_IF_ERROR(mutate(row, &update.events));
  const std::string id = row.job.name().substr(sizeof(kJobs));
  RESTYLE_RETURN_IF_ERROR(WriteRow(row, /*insert=*/false));
  RESTYLE_RETURN_IF_ERROR(WriteEvents(id, update.events));
  update.row = std::move(row);
  return update;
}

absl::StatusOr<JobUpdate> SqliteJobStore::Update(const std::string& id, const Mutation& mutate) {
  absl::MutexLock lock(&mu_);
  JobUpdate out;
  RESTYLE_RETURN_IF_ERROR(Transaction([&]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(std::optional<JobRow> row, ReadRow(id));
    if (!row) return JobNotFound(id);
    RESTYLE_ASSIGN_OR_RETURN(out, MutateLocked(*std::move(row), mutate));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::optional<JobUpdate>> SqliteJobStore::LeaseNext(
    const std::vector<std::string>& sources, const Mutation& mutate) {
  absl::MutexLock lock(&mu_);
  std::optional<JobUpdate> out;
  RESTYLE_RETURN_IF_ERROR(Transaction([&]() -> absl::Status {
    std::vector<std::string> marks(sources.size(), "?");
    Stmt s(db_, absl::StrCat("SELECT ", kRowColumns, " FROM jobs WHERE state = ? AND source IN (",
                             absl::StrJoin(marks, ","), ") ORDER BY priority DESC, seq LIMIT 1"));
    s.Bind(1, static_cast<int64_t>(v1::JOB_STATE_QUEUED));
    for (size_t i = 0; i < sources.size(); ++i) s.Bind(static_cast<int>(i) + 2, sources[i]);
    RESTYLE_ASSIGN_OR_RETURN(bool found, s.Step());
    if (!found) return absl::OkStatus();
    RESTYLE_ASSIGN_OR_RETURN(JobRow row, RowFrom(s));
    RESTYLE_ASSIGN_OR_RETURN(JobUpdate update, MutateLocked(std::move(row), mutate));
    out = std::move(update);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<std::string>> SqliteJobStore::DueJobIds(absl::Time now) {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "SELECT id FROM jobs WHERE deadline_ms IS NOT NULL AND deadline_ms <= ?");
  s.Bind(1, absl::ToUnixMillis(now));
  std::vector<std::string> ids;
  while (true) {
    RESTYLE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    ids.push_back(s.Text(0));
  }
  return ids;
}

absl::Status SqliteJobStore::ExtendLeases(absl::Time until) {
  std::vector<std::string> ids;
  {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, "SELECT id FROM jobs WHERE lease_expire_ms IS NOT NULL AND lease_expire_ms < ?");
    s.Bind(1, absl::ToUnixMillis(until));
    while (true) {
      RESTYLE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ids.push_back(s.Text(0));
    }
  }
  for (const std::string& id : ids) {
    RESTYLE_RETURN_IF_ERROR(Update(id, [&](JobRow& row, Events*) {
                              if (row.lease_expire) row.lease_expire = std::max(*row.lease_expire, until);
                              return absl::OkStatus();
                            }).status());
  }
  return absl::OkStatus();
}

absl::Status SqliteJobStore::PutArtifact(const ArtifactRecord& record, const std::string& worker) {
  absl::MutexLock lock(&mu_);
  return Transaction([&]() -> absl::Status {
    if (!worker.empty()) {
      RESTYLE_ASSIGN_OR_RETURN(std::optional<JobRow> row, ReadRow(record.job_id));
      if (!row) return JobNotFound(record.job_id);
      RESTYLE_RETURN_IF_ERROR(CheckLease(*row, worker, record.attempt));
    }
    return Stmt(db_, "INSERT OR REPLACE INTO artifacts (name, job_id, attempt, path, artifact) "
                     "VALUES (?, ?, ?, ?, ?)")
        .Bind(1, record.artifact.name())
        .Bind(2, record.job_id)
        .Bind(3, static_cast<int64_t>(record.attempt))
        .Bind(4, record.path)
        .BindBlob(5, record.artifact.SerializeAsString())
        .Run();
  });
}

namespace {

absl::StatusOr<ArtifactRecord> ArtifactFrom(const Stmt& s) {
  ArtifactRecord r;
  r.job_id = s.Text(0);
  r.attempt = static_cast<int>(s.Int(1));
  r.path = s.Text(2);
  if (!r.artifact.ParseFromString(s.Blob(3))) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                           "a stored artifact record does not parse");
  }
  return r;
}

}  // namespace

absl::StatusOr<ArtifactRecord> SqliteJobStore::GetArtifact(const std::string& name) {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "SELECT job_id, attempt, path, artifact FROM artifacts WHERE name = ?");
  s.Bind(1, name);
  RESTYLE_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) {
    return ErrorWithReason(absl::StatusCode::kNotFound, "ARTIFACT_NOT_FOUND",
                           absl::StrCat("no artifact ", name), {{"artifact", name}});
  }
  return ArtifactFrom(s);
}

absl::StatusOr<std::vector<ArtifactRecord>> SqliteJobStore::ListArtifacts(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "SELECT job_id, attempt, path, artifact FROM artifacts WHERE job_id = ? ORDER BY name");
  s.Bind(1, job_id);
  std::vector<ArtifactRecord> out;
  while (true) {
    RESTYLE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    RESTYLE_ASSIGN_OR_RETURN(ArtifactRecord r, ArtifactFrom(s));
    out.push_back(std::move(r));
  }
  return out;
}

absl::Status SqliteJobStore::DeleteArtifacts(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  return Stmt(db_, "DELETE FROM artifacts WHERE job_id = ?").Bind(1, job_id).Run();
}

absl::Status SqliteJobStore::PutSource(const v1::Generator& generator) {
  absl::MutexLock lock(&mu_);
  return Stmt(db_, "INSERT OR REPLACE INTO sources (id, generator, update_ms) VALUES (?, ?, ?)")
      .Bind(1, generator.name())
      .BindBlob(2, generator.SerializeAsString())
      .Bind(3, absl::ToUnixMillis(absl::Now()))
      .Run();
}

absl::StatusOr<std::vector<v1::Generator>> SqliteJobStore::ListSources() {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, "SELECT generator FROM sources ORDER BY id");
  std::vector<v1::Generator> out;
  while (true) {
    RESTYLE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (!out.emplace_back().ParseFromString(s.Blob(0))) {
      return ErrorWithReason(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                             "a stored source generator does not parse");
    }
  }
  return out;
}

absl::StatusOr<std::vector<JobRow>> SqliteJobStore::ListAdapted(int64_t offset, int limit) {
  absl::MutexLock lock(&mu_);
  Stmt s(db_, absl::StrCat("SELECT ", kRowColumns, " FROM jobs WHERE state = ? AND "
                           "generator_deleted = 0 ORDER BY seq DESC LIMIT ? OFFSET ?"));
  s.Bind(1, static_cast<int64_t>(v1::JOB_STATE_SUCCEEDED))
      .Bind(2, static_cast<int64_t>(limit))
      .Bind(3, offset);
  std::vector<JobRow> out;
  while (true) {
    RESTYLE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    RESTYLE_ASSIGN_OR_RETURN(JobRow r, RowFrom(s));
    out.push_back(std::move(r));
  }
  return out;
}

absl::Status SqliteJobStore::MarkGeneratorDeleted(const std::string& job_id, absl::Time now) {
  absl::MutexLock lock(&mu_);
  return Transaction([&]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(std::optional<JobRow> row, ReadRow(job_id));
    if (!row || row->job.state() != v1::JOB_STATE_SUCCEEDED || row->job.result().generator().empty()) {
      return ErrorWithReason(absl::StatusCode::kNotFound, "GENERATOR_NOT_FOUND",
                             absl::StrCat("no generator generators/", job_id));
    }
    row->job.mutable_result()->clear_generator();
    row->job.mutable_result()->clear_artifacts();
    *row->job.mutable_update_time() = ToProtoTime(now);
    RESTYLE_RETURN_IF_ERROR(WriteRow(*row, /*insert=*/false));
    return Stmt(db_, "UPDATE jobs SET generator_deleted = 1 WHERE id = ?").Bind(1, job_id).Run();
  });
}

}  // namespace restyle::server
