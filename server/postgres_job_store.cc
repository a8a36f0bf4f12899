#include "server/postgres_job_store.h"

#include <libpq-fe.h>
#include <poll.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/names.h"
#include "common/status.h"
#include "common/time.h"

namespace restyle::server {
namespace {

// Schema migrations: entry i brings version i to i + 1. Never edit a landed
// entry; append a new one. The tables are the SQLite store's, with job order
// from a sequence (concurrent creators cannot take MAX(seq) + 1).
const std::vector<const char*>& Migrations() {
  static const auto* migrations = new std::vector<const char*>{
      // 0 -> 1: jobs, their events, artifacts, source generators.
      R"sql(
      CREATE SEQUENCE jobs_seq;
      CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        seq BIGINT NOT NULL UNIQUE,
        state INTEGER NOT NULL,
        source TEXT NOT NULL,
        priority INTEGER NOT NULL,
        request_id TEXT UNIQUE,
        request_digest TEXT NOT NULL,
        worker TEXT,
        attempt INTEGER NOT NULL,
        lease_expire_ms BIGINT,
        deadline_ms BIGINT,
        create_ms BIGINT NOT NULL,
        start_ms BIGINT,
        end_ms BIGINT,
        update_ms BIGINT NOT NULL,
        generator_deleted BOOLEAN NOT NULL DEFAULT FALSE,
        job BYTEA NOT NULL);
      CREATE INDEX jobs_queue ON jobs (state, priority DESC, seq);
      CREATE INDEX jobs_deadline ON jobs (deadline_ms) WHERE deadline_ms IS NOT NULL;
      CREATE TABLE job_events (
        job_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        event BYTEA NOT NULL,
        PRIMARY KEY (job_id, seq));
      CREATE TABLE artifacts (
        name TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        path TEXT NOT NULL,
        artifact BYTEA NOT NULL);
      CREATE INDEX artifacts_job ON artifacts (job_id);
      CREATE TABLE sources (
        id TEXT PRIMARY KEY,
        generator BYTEA NOT NULL,
        update_ms BIGINT NOT NULL);
      )sql",
      // 1 -> 2: the fronts sharing the database, and their workers.
      R"sql(
      CREATE TABLE fronts (
        id TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        start_ms BIGINT NOT NULL,
        seen_ms BIGINT NOT NULL,
        draining BOOLEAN NOT NULL,
        workers BYTEA NOT NULL);
      )sql",
  };
  return *migrations;
}

// The channel of committed job changes (NOTIFY, LISTEN): each payload is
// "ORIGIN JOB FIRST_SEQ LAST_SEQ QUEUED" (ids never hold spaces).
constexpr char kChangesChannel[] = "restyle_changes";

// The advisory lock migrations run under ("restyle" in ASCII).
constexpr int64_t kMigrationLock = 0x72657374796c65;
constexpr Oid kByteaOid = 17;
// How long a statement waits for a row another process holds before the
// call gives up (UNAVAILABLE, STORE_BUSY).
constexpr char kLockTimeout[] = "SET lock_timeout = '5s'";
// How long a statement may take, the server's side (set on every connection,
// overridable in the URL) and this side: past kAnswerTimeout without an
// answer, whatever sits between (a proxy, a NAT, a partition) is taken as a
// dead connection: it is dropped and the call is UNAVAILABLE.
constexpr char kStatementTimeoutOption[] = "-c statement_timeout=8000";
constexpr absl::Duration kAnswerTimeout = absl::Seconds(10);

// Waits for the results of what was sent on `c`, each until `deadline`; the
// last one (the first error wins), or nullptr: `*timed_out` when the
// deadline passed, otherwise the connection failed (PQerrorMessage says).
PGresult* Collect(PGconn* c, absl::Time deadline, bool* timed_out) {
  PGresult* kept = nullptr;
  while (true) {
    while (PQisBusy(c)) {
      const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (ms <= 0) {
        *timed_out = true;
        PQclear(kept);
        return nullptr;
      }
      pollfd p{PQsocket(c), POLLIN, 0};
      const int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1000)));
      if (n < 0 && errno != EINTR) break;
      if (n > 0 && !PQconsumeInput(c)) break;  // PQgetResult reports it
    }
    PGresult* r = PQgetResult(c);
    if (r == nullptr) return kept;
    const auto failed = [](const PGresult* x) {
      const ExecStatusType t = PQresultStatus(x);
      return t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK;
    };
    if (kept != nullptr && failed(kept)) {
      PQclear(r);
    } else {
      PQclear(kept);
      kept = r;
    }
    if (PQstatus(c) == CONNECTION_BAD) return kept;
  }
}

// "host:port/database" of a connection, for messages (never the password).
std::string Describe(const PGconn* c) {
  if (c == nullptr) return "PostgreSQL";
  const char* host = PQhost(c);
  const char* port = PQport(c);
  const char* db = PQdb(c);
  return absl::StrCat("PostgreSQL at ", host ? host : "", port && *port ? ":" : "",
                      port ? port : "", "/", db ? db : "");
}

absl::Status Unreachable(const PGconn* c, absl::string_view message) {
  return ErrorWithReason(
      absl::StatusCode::kUnavailable, "STORE_UNAVAILABLE",
      absl::StrCat("the job database (", Describe(c), ") cannot be reached: ", message,
                   "; check that the server is up and that --database-url (host, port, user, "
                   "database; the password from PGPASSWORD or PGPASSFILE) is right. restyled "
                   "reconnects on the next call"),
      {}, absl::Seconds(1));
}

// A failed statement as a Status, by SQLSTATE (PostgreSQL's Appendix A).
absl::Status PgError(const PGconn* c, const PGresult* r, absl::string_view what) {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const std::string sqlstate = state ? state : "";
  std::string message(absl::StripAsciiWhitespace(
      r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(c)));
  // 25006: a read-only transaction (the address now leads to a standby);
  // 57014: a statement cancelled by statement_timeout (a server too slow
  // to answer is as good as unreachable).
  if (PQstatus(c) == CONNECTION_BAD || absl::StartsWith(sqlstate, "08") || sqlstate == "57P01" ||
      sqlstate == "57P02" || sqlstate == "57P03" || sqlstate == "25006" || sqlstate == "57014" ||
      (absl::StartsWith(sqlstate, "53") && sqlstate != "53100")) {
    return Unreachable(c, message);
  }
  message = absl::StrCat(what, ": ", message);
  if (sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "55P03") {
    return ErrorWithReason(absl::StatusCode::kUnavailable, "STORE_BUSY", message, {},
                           absl::Seconds(1));
  }
  if (sqlstate == "53100") {
    return ErrorWithReason(absl::StatusCode::kResourceExhausted, "DISK_FULL",
                           absl::StrCat("the job database's disk is full (", message,
                                        "); free space on the PostgreSQL server"));
  }
  if (sqlstate == "XX001" || sqlstate == "XX002") {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "STORE_CORRUPT", message);
  }
  return absl::InternalError(absl::StrCat(message, sqlstate.empty() ? "" : " (SQLSTATE ", sqlstate,
                                          sqlstate.empty() ? "" : ")"));
}

// A statement's parameters ($1, $2, ...): text, NULL, or bytea sent as binary.
class Params {
 public:
  Params& Add(int64_t v) { return Push(std::to_string(v), 0, 0); }
  Params& Add(const std::string& v) { return Push(v, 0, 0); }
  Params& Add(const std::optional<int64_t>& v) { return v ? Add(*v) : AddNull(); }
  Params& AddBytes(std::string v) { return Push(std::move(v), kByteaOid, 1); }
  Params& AddNull() { return Push(std::nullopt, 0, 0); }
  Params& AddOptionalText(const std::string& v) { return v.empty() ? AddNull() : Add(v); }
  int size() const { return static_cast<int>(values_.size()); }

  // Sends `sql` with these parameters (results as text); false when it
  // could not be sent.
  bool Send(PGconn* c, const std::string& sql) const {
    std::vector<const char*> values;
    std::vector<int> lengths;
    for (const std::optional<std::string>& v : values_) {
      values.push_back(v ? v->data() : nullptr);
      lengths.push_back(v ? static_cast<int>(v->size()) : 0);
    }
    return PQsendQueryParams(c, sql.c_str(), size(), types_.data(), values.data(), lengths.data(),
                             formats_.data(), /*resultFormat=*/0) == 1;
  }

 private:
  Params& Push(std::optional<std::string> v, Oid type, int format) {
    values_.push_back(std::move(v));
    types_.push_back(type);
    formats_.push_back(format);
    return *this;
  }
  std::vector<std::optional<std::string>> values_;
  std::vector<Oid> types_;
  std::vector<int> formats_;
};

// A statement's result (text format); rows 0-based, columns by index.
class Result {
 public:
  explicit Result(PGresult* r) : r_(r, &PQclear) {}
  const PGresult* raw() const { return r_.get(); }
  int rows() const { return PQntuples(r_.get()); }
  // Rows an INSERT, UPDATE or DELETE touched.
  int64_t affected() const {
    int64_t n = 0;
    return absl::SimpleAtoi(PQcmdTuples(r_.get()), &n) ? n : 0;
  }
  bool IsNull(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  std::string Text(int row, int col) const {
    return std::string(PQgetvalue(r_.get(), row, col),
                       static_cast<size_t>(PQgetlength(r_.get(), row, col)));
  }
  int64_t Int(int row, int col) const {
    int64_t v = 0;
    return absl::SimpleAtoi(PQgetvalue(r_.get(), row, col), &v) ? v : 0;
  }
  // A bytea column (sent as text in hex).
  std::string Bytes(int row, int col) const {
    size_t n = 0;
    unsigned char* p =
        PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(r_.get(), row, col)), &n);
    if (p == nullptr) return "";
    std::string out(reinterpret_cast<const char*>(p), n);
    PQfreemem(p);
    return out;
  }

 private:
  std::unique_ptr<PGresult, decltype(&PQclear)> r_;
};

}  // namespace

// One libpq connection. Not thread-safe: used by one call at a time (the pool
// hands it out).
class PgConnection {
 public:
  explicit PgConnection(PGconn* c) : c_(c) {}
  ~PgConnection() { PQfinish(c_); }
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Runs one statement (several, separated by ';', when `params` is empty).
  // A connection reused from the pool that turns out dead at its first
  // statement of a call reconnects once and runs it again (nothing was sent).
  absl::StatusOr<Result> Exec(const std::string& sql, const Params& params = {}) {
    for (int tries = 0;; ++tries) {
      const bool first = !sent_;
      sent_ = true;
      const bool sent = params.size() == 0 ? PQsendQuery(c_, sql.c_str()) == 1 : params.Send(c_, sql);
      bool timed_out = false;
      Result r(sent ? Collect(c_, absl::Now() + kAnswerTimeout, &timed_out) : nullptr);
      if (timed_out) {
        discard_ = true;  // its answer may still come: never reused
        return Unreachable(c_, absl::StrCat("no answer to a statement within ",
                                            absl::FormatDuration(kAnswerTimeout)));
      }
      const ExecStatusType status = r.raw() == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r.raw());
      if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return r;
      if (first && reused_ && tries == 0 && PQstatus(c_) == CONNECTION_BAD) {
        PQreset(c_);
        if (PQstatus(c_) == CONNECTION_OK && Configure().ok()) continue;
      }
      absl::Status error = PgError(c_, r.raw(), absl::StrCat("statement \"", sql.substr(0, 60), "\""));
      // A server that answers but cannot serve us (a standby after a
      // failover: read-only; shutting down; too slow) is not asked again
      // through this connection: the next call connects afresh.
      if (error.code() == absl::StatusCode::kUnavailable) discard_ = true;
      return error;
    }
  }
  absl::Status Run(const std::string& sql, const Params& params = {}) {
    return Exec(sql, params).status();
  }

  // Runs `body` between BEGIN and COMMIT (ROLLBACK on error). READ COMMITTED:
  // rows that must not change under the body are read FOR UPDATE.
  absl::Status Transaction(const std::function<absl::Status()>& body) {
    RESTYLE_RETURN_IF_ERROR(Run("BEGIN"));
    absl::Status status = body();
    if (status.ok()) status = Run("COMMIT");
    if (!status.ok() && PQtransactionStatus(c_) != PQTRANS_IDLE) Run("ROLLBACK").IgnoreError();
    return status;
  }

  // Per-session settings, after (re)connecting.
  absl::Status Configure() {
    PQsetNoticeProcessor(
        c_, [](void*, const char*) {}, nullptr);  // "already exists", ...
    return Exec(kLockTimeout).status();
  }

  PGconn* raw() const { return c_; }

  // A connection that can go back to the pool: up, and outside a transaction.
  bool Reusable() const {
    return !discard_ && PQstatus(c_) == CONNECTION_OK && PQtransactionStatus(c_) == PQTRANS_IDLE;
  }
  // Called when the pool hands the connection out again.
  void StartCall(bool reused) {
    reused_ = reused;
    sent_ = false;
  }

 private:
  PGconn* const c_;
  bool discard_ = false;  // an answer said this connection is of no more use
  bool reused_ = false;
  bool sent_ = false;
};

// A pooled connection for one call; back to the pool when destroyed.
class PostgresJobStore::Borrowed {
 public:
  Borrowed(PostgresJobStore* store, std::unique_ptr<PgConnection> c)
      : store_(store), c_(std::move(c)) {}
  Borrowed(Borrowed&& other) = default;
  ~Borrowed() {
    if (c_) store_->GiveBack(std::move(c_));
  }
  PgConnection* operator->() { return c_.get(); }
  PgConnection& operator*() { return *c_; }

 private:
  PostgresJobStore* store_;
  std::unique_ptr<PgConnection> c_;
};

namespace {

absl::Status JobNotFound(const std::string& id) {
  return ErrorWithReason(absl::StatusCode::kNotFound, "JOB_NOT_FOUND",
                         absl::StrCat("no job jobs/", id), {{"job", MakeName(kJobs, id)}});
}

constexpr char kRowColumns[] = "seq, request_digest, lease_expire_ms, job";

absl::StatusOr<JobRow> RowFrom(const Result& r, int i) {
  JobRow row;
  row.seq = r.Int(i, 0);
  row.request_digest = r.Text(i, 1);
  if (!r.IsNull(i, 2)) row.lease_expire = absl::FromUnixMillis(r.Int(i, 2));
  if (!row.job.ParseFromString(r.Bytes(i, 3))) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                           "a stored job does not parse");
  }
  return row;
}

absl::StatusOr<std::vector<JobRow>> RowsFrom(const Result& r) {
  std::vector<JobRow> rows;
  for (int i = 0; i < r.rows(); ++i) {
    RESTYLE_ASSIGN_OR_RETURN(JobRow row, RowFrom(r, i));
    rows.push_back(std::move(row));
  }
  return rows;
}

std::optional<int64_t> MillisOf(const google::protobuf::Timestamp& t, bool present) {
  if (!present) return std::nullopt;
  return absl::ToUnixMillis(FromProtoTime(t));
}

std::string IdOf(const JobRow& row) { return row.job.name().substr(sizeof(kJobs)); }

// INSERT (with ON CONFLICT (request_id) DO NOTHING: a concurrent Create of
// the same request wins) or UPDATE of a job's row.
absl::StatusOr<Result> WriteRow(PgConnection& c, const JobRow& row, bool insert) {
  const v1::Job& job = row.job;
  std::optional<int64_t> lease;
  if (row.lease_expire) lease = absl::ToUnixMillis(*row.lease_expire);
  std::optional<int64_t> deadline;
  if (std::optional<absl::Time> next = NextDeadline(row)) deadline = absl::ToUnixMillis(*next);
  Params p;
  p.Add(static_cast<int64_t>(job.state()))
      .Add(job.spec().source_generator())
      .Add(static_cast<int64_t>(job.spec().priority()))
      .AddOptionalText(job.request_id())
      .Add(row.request_digest)
      .AddOptionalText(job.worker())
      .Add(static_cast<int64_t>(job.attempt()))
      .Add(lease)
      .Add(deadline)
      .Add(absl::ToUnixMillis(FromProtoTime(job.create_time())))
      .Add(MillisOf(job.start_time(), job.has_start_time()))
      .Add(MillisOf(job.end_time(), job.has_end_time()))
      .Add(absl::ToUnixMillis(
          FromProtoTime(job.has_update_time() ? job.update_time() : job.create_time())))
      .AddBytes(job.SerializeAsString())
      .Add(row.seq)
      .Add(IdOf(row));
  return c.Exec(insert ? "INSERT INTO jobs (state, source, priority, request_id, request_digest, "
                         "worker, attempt, lease_expire_ms, deadline_ms, create_ms, start_ms, "
                         "end_ms, update_ms, job, seq, id) VALUES ($1, $2, $3, $4, $5, $6, $7, "
                         "$8, $9, $10, $11, $12, $13, $14, $15, $16) "
                         "ON CONFLICT (request_id) DO NOTHING"
                       : "UPDATE jobs SET state = $1, source = $2, priority = $3, "
                         "request_id = $4, request_digest = $5, worker = $6, attempt = $7, "
                         "lease_expire_ms = $8, deadline_ms = $9, create_ms = $10, "
                         "start_ms = $11, end_ms = $12, update_ms = $13, job = $14, seq = $15 "
                         "WHERE id = $16",
                p);
}

// One INSERT for all of `events`.
absl::Status WriteEvents(PgConnection& c, const std::string& id, const Events& events) {
  if (events.empty()) return absl::OkStatus();
  Params p;
  p.Add(id);
  std::vector<std::string> rows;
  for (const v1::JobEvent& e : events) {
    p.Add(e.seq()).AddBytes(e.SerializeAsString());
    rows.push_back(absl::StrCat("($1, $", p.size() - 1, ", $", p.size(), ")"));
  }
  return c.Run(absl::StrCat("INSERT INTO job_events (job_id, seq, event) VALUES ",
                            absl::StrJoin(rows, ", ")),
               p);
}

// The job with this request_id, read after locking nothing.
absl::StatusOr<std::optional<JobRow>> ByRequestId(PgConnection& c, const std::string& request_id) {
  RESTYLE_ASSIGN_OR_RETURN(
      Result r, c.Exec(absl::StrCat("SELECT ", kRowColumns, " FROM jobs WHERE request_id = $1"),
                       Params().Add(request_id)));
  if (r.rows() == 0) return std::optional<JobRow>();
  RESTYLE_ASSIGN_OR_RETURN(JobRow row, RowFrom(r, 0));
  return row;
}

// The job locked FOR UPDATE (or FOR SHARE) until the transaction ends.
absl::StatusOr<std::optional<JobRow>> LockRow(PgConnection& c, const std::string& id,
                                              bool share = false) {
  RESTYLE_ASSIGN_OR_RETURN(
      Result r, c.Exec(absl::StrCat("SELECT ", kRowColumns, " FROM jobs WHERE id = $1 FOR ",
                                    share ? "SHARE" : "UPDATE"),
                       Params().Add(id)));
  if (r.rows() == 0) return std::optional<JobRow>();
  RESTYLE_ASSIGN_OR_RETURN(JobRow row, RowFrom(r, 0));
  return row;
}

// The stored job for a request_id retried with `row`'s: itself when the
// digests agree, REQUEST_ID_REUSED otherwise.
absl::StatusOr<JobRow> SameRequest(JobRow existing, const JobRow& row) {
  if (existing.request_digest != row.request_digest) {
    return ErrorWithReason(
        absl::StatusCode::kInvalidArgument, "REQUEST_ID_REUSED",
        absl::StrCat("request_id \"", row.job.request_id(), "\" was used for ", existing.job.name(),
                     " with another spec; use a new request_id "
                     "for a new job"),
        {{"request_id", row.job.request_id()}, {"job", existing.job.name()}});
  }
  return existing;
}

absl::StatusOr<JobUpdate> Mutate(PgConnection& c, JobRow row,
                                 const std::function<absl::Status(JobRow&, Events*)>& mutate) {
  JobUpdate update;
  RESTYLE_RETURN_IF_ERROR(mutate(row, &update.events));
  RESTYLE_RETURN_IF_ERROR(WriteRow(c, row, /*insert=*/false).status());
  RESTYLE_RETURN_IF_ERROR(WriteEvents(c, IdOf(row), update.events));
  update.row = std::move(row);
  return update;
}

// Announces a change to the other fronts, delivered when the transaction
// commits (and never if it rolls back).
absl::Status Announce(PgConnection& c, const std::string& origin, const JobUpdate& update) {
  if (update.events.empty()) return absl::OkStatus();
  const std::string payload = absl::StrCat(
      origin.empty() ? "-" : origin, " ", IdOf(update.row), " ", update.events.front().seq(), " ",
      update.events.back().seq(), " ", update.row.job.state() == v1::JOB_STATE_QUEUED ? 1 : 0);
  return c.Run("SELECT pg_notify($1, $2)", Params().Add(std::string(kChangesChannel)).Add(payload));
}

// A change announced by Announce; nullopt for a payload of another shape.
std::optional<StoreChange> ParseChange(absl::string_view payload) {
  std::vector<std::string> parts = absl::StrSplit(payload, ' ');
  StoreChange change;
  int queued = 0;
  if (parts.size() != 5 || !absl::SimpleAtoi(parts[2], &change.first_seq) ||
      !absl::SimpleAtoi(parts[3], &change.last_seq) || !absl::SimpleAtoi(parts[4], &queued)) {
    return std::nullopt;
  }
  change.origin = parts[0];
  change.job_id = parts[1];
  change.queued = queued != 0;
  return change;
}

absl::StatusOr<ArtifactRecord> ArtifactFrom(const Result& r, int i) {
  ArtifactRecord a;
  a.job_id = r.Text(i, 0);
  a.attempt = static_cast<int>(r.Int(i, 1));
  a.path = r.Text(i, 2);
  if (!a.artifact.ParseFromString(r.Bytes(i, 3))) {
    return ErrorWithReason(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                           "a stored artifact record does not parse");
  }
  return a;
}

constexpr char kPageTokenPrefix[] = "v1.";

}  // namespace

int PostgresJobStore::SchemaVersion() { return static_cast<int>(Migrations().size()); }

absl::StatusOr<std::unique_ptr<PostgresJobStore>> PostgresJobStore::Open(const Options& options) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.url.c_str(), &error);
  if (parsed == nullptr) {
    const std::string why =
        error ? std::string(absl::StripAsciiWhitespace(error)) : "out of memory";
    PQfreemem(error);
    return absl::InvalidArgumentError(
        absl::StrCat("--database-url is not a PostgreSQL connection URL (", why,
                     "); it looks like postgresql://USER@HOST:5432/DATABASE"));
  }
  PQconninfoFree(parsed);
  if (options.pool_size < 1) return absl::InvalidArgumentError("pool_size must be at least 1");
  std::unique_ptr<PostgresJobStore> store(new PostgresJobStore(options));
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, store->Acquire());
  RESTYLE_RETURN_IF_ERROR(store->Migrate(*c));
  // A job is acknowledged once its transaction commits: with commits that
  // do not wait for the disk (or, behind a failover, for the standby), an
  // acknowledged job can be lost.
  absl::StatusOr<Result> sync = c->Exec("SHOW synchronous_commit");
  if (sync.ok() && sync->rows() == 1 && (sync->Text(0, 0) == "off" || sync->Text(0, 0) == "local")) {
    spdlog::warn("the job database has synchronous_commit = {}: a job acknowledged just before the "
                 "server crashes (or fails over) can be lost. Set it to on (or remote_apply / "
                 "remote_write with a synchronous standby): docs/deploy.md",
                 sync->Text(0, 0));
  }
  return store;
}

PostgresJobStore::PostgresJobStore(const Options& options) : options_(options) {}

PostgresJobStore::~PostgresJobStore() {
  stop_listening_.Notify();
  if (listener_.joinable()) listener_.join();
  absl::MutexLock lock(&mu_);
  idle_.clear();
}

std::string PostgresJobStore::origin() const {
  absl::MutexLock lock(&origin_mu_);
  return origin_;
}

absl::StatusOr<std::unique_ptr<PgConnection>> PostgresJobStore::Connect() const {
  const std::string timeout =
      std::to_string(std::max<int64_t>(1, absl::ToInt64Seconds(options_.connect_timeout)));
  // With expand_dbname the URL's own settings override the defaults before it.
  // A dead peer must fail a call in seconds, not after TCP's ~15 minutes:
  // keepalives probe an idle connection (the LISTEN one included) after
  // 5 s, every 2 s, 3 times; tcp_user_timeout ends one whose sent data goes
  // unacknowledged for 10 s; statement_timeout bounds a statement the
  // server itself sits on, and kAnswerTimeout one nobody answers.
  const char* keys[] = {"connect_timeout", "fallback_application_name", "keepalives",
                        "keepalives_idle", "keepalives_interval", "keepalives_count",
                        "tcp_user_timeout", "options", "dbname", nullptr};
  const char* values[] = {timeout.c_str(), "restyled", "1", "5", "2", "3", "10000",
                          kStatementTimeoutOption, options_.url.c_str(), nullptr};
  PGconn* raw = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (raw == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
  auto c = std::make_unique<PgConnection>(raw);
  if (PQstatus(raw) != CONNECTION_OK) {
    return Unreachable(raw, absl::StripAsciiWhitespace(PQerrorMessage(raw)));
  }
  RESTYLE_RETURN_IF_ERROR(c->Configure());
  return c;
}

absl::StatusOr<PostgresJobStore::Borrowed> PostgresJobStore::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &PostgresJobStore::CanAcquire));
    if (!idle_.empty()) {
      std::unique_ptr<PgConnection> c = std::move(idle_.back());
      idle_.pop_back();
      c->StartCall(/*reused=*/true);
      return Borrowed(this, std::move(c));
    }
    ++open_;
  }
  absl::StatusOr<std::unique_ptr<PgConnection>> c = Connect();
  if (!c.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
    return c.status();
  }
  (*c)->StartCall(/*reused=*/false);
  return Borrowed(this, *std::move(c));
}

void PostgresJobStore::GiveBack(std::unique_ptr<PgConnection> connection) {
  if (!connection->Reusable()) connection.reset();  // closed outside the lock
  absl::MutexLock lock(&mu_);
  if (connection) {
    idle_.push_back(std::move(connection));
  } else {
    --open_;
  }
}

absl::Status PostgresJobStore::Migrate(PgConnection& c) {
  return c.Transaction([&]() -> absl::Status {
    // Fronts that start at once wait here for the first to finish.
    RESTYLE_RETURN_IF_ERROR(
        c.Run("SELECT pg_advisory_xact_lock($1)", Params().Add(kMigrationLock)));
    RESTYLE_RETURN_IF_ERROR(
        c.Run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"));
    RESTYLE_ASSIGN_OR_RETURN(Result r, c.Exec("SELECT version FROM schema_version"));
    int64_t version = 0;
    if (r.rows() > 0) {
      version = r.Int(0, 0);
    } else {
      RESTYLE_RETURN_IF_ERROR(c.Run("INSERT INTO schema_version VALUES (0)"));
    }
    const int64_t current = SchemaVersion();
    if (version > current) {
      return absl::FailedPreconditionError(
          absl::StrCat("the database has schema version ", version, ", this restyled knows ",
                       current, ": run a newer restyled (or restore a backup)"));
    }
    for (int64_t v = version; v < current; ++v) RESTYLE_RETURN_IF_ERROR(c.Run(Migrations()[v]));
    return c.Run("UPDATE schema_version SET version = $1", Params().Add(current));
  });
}

absl::StatusOr<JobStore::Created> PostgresJobStore::Create(const JobRow& row, const Events& events,
                                                           int64_t max_queued) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  Created out;
  RESTYLE_RETURN_IF_ERROR(c->Transaction([&]() -> absl::Status {
    const std::string& request_id = row.job.request_id();
    if (!request_id.empty()) {
      RESTYLE_ASSIGN_OR_RETURN(std::optional<JobRow> existing, ByRequestId(*c, request_id));
      if (existing) {
        RESTYLE_ASSIGN_OR_RETURN(out.update.row, SameRequest(*std::move(existing), row));
        return absl::OkStatus();
      }
    }
    RESTYLE_ASSIGN_OR_RETURN(Result count, c->Exec("SELECT COUNT(*) FROM jobs WHERE state = $1",
                                                   Params().Add(int64_t{v1::JOB_STATE_QUEUED})));
    if (count.Int(0, 0) >= max_queued) {
      return ErrorWithReason(
          absl::StatusCode::kResourceExhausted, "QUEUE_FULL",
          absl::StrCat("the adaptation queue is full (", count.Int(0, 0),
                       " jobs waiting); retry later, or ask the operator to add workers"),
          {{"lane", "adaptation"}, {"limit", std::to_string(max_queued)}}, absl::Seconds(30));
    }
    RESTYLE_ASSIGN_OR_RETURN(Result next, c->Exec("SELECT nextval('jobs_seq')"));
    JobRow stored = row;
    stored.seq = next.Int(0, 0);
    RESTYLE_ASSIGN_OR_RETURN(Result inserted, WriteRow(*c, stored, /*insert=*/true));
    if (inserted.affected() == 0) {
      // Another front stored this request_id first (its commit ended our
      // wait on the unique index): that job is the answer.
      RESTYLE_ASSIGN_OR_RETURN(std::optional<JobRow> winner, ByRequestId(*c, request_id));
      if (!winner) return absl::InternalError("a conflicting request_id vanished");
      RESTYLE_ASSIGN_OR_RETURN(out.update.row, SameRequest(*std::move(winner), row));
      return absl::OkStatus();
    }
    RESTYLE_RETURN_IF_ERROR(WriteEvents(*c, IdOf(stored), events));
    out.update.row = std::move(stored);
    out.update.events = events;
    out.created = true;
    return Announce(*c, origin(), out.update);
  }));
  return out;
}

absl::StatusOr<JobRow> PostgresJobStore::Get(const std::string& id) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(
      Result r,
      c->Exec(absl::StrCat("SELECT ", kRowColumns, " FROM jobs WHERE id = $1"), Params().Add(id)));
  if (r.rows() == 0) return JobNotFound(id);
  return RowFrom(r, 0);
}

absl::StatusOr<JobPage> PostgresJobStore::List(const JobFilter& filter, int page_size,
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
  Params p;
  p.Add(before);
  std::string sql = absl::StrCat("SELECT ", kRowColumns, " FROM jobs WHERE seq < $1");
  if (!filter.states.empty()) {
    std::vector<std::string> states;
    for (v1::JobState s : filter.states) states.push_back(std::to_string(static_cast<int>(s)));
    absl::StrAppend(&sql, " AND state IN (", absl::StrJoin(states, ","), ")");
  }
  if (!filter.source_generator.empty()) {
    p.Add(filter.source_generator);
    absl::StrAppend(&sql, " AND source = $", p.size());
  }
  p.Add(static_cast<int64_t>(page_size) + 1);
  absl::StrAppend(&sql, " ORDER BY seq DESC LIMIT $", p.size());
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(Result r, c->Exec(sql, p));
  JobPage page;
  for (int i = 0; i < r.rows(); ++i) {
    if (static_cast<int>(page.rows.size()) == page_size) {
      page.next_page_token = absl::StrCat(kPageTokenPrefix, page.rows.back().seq);
      break;
    }
    RESTYLE_ASSIGN_OR_RETURN(JobRow row, RowFrom(r, i));
    page.rows.push_back(std::move(row));
  }
  return page;
}

absl::StatusOr<Events> PostgresJobStore::ReadEvents(const std::string& id, int64_t after_seq,
                                                    int limit) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(
      Result r, c->Exec("SELECT event FROM job_events WHERE job_id = $1 AND seq > $2 "
                        "ORDER BY seq LIMIT $3",
                        Params().Add(id).Add(after_seq).Add(static_cast<int64_t>(limit))));
  Events events;
  for (int i = 0; i < r.rows(); ++i) {
    if (!events.emplace_back().ParseFromString(r.Bytes(i, 0))) {
      return ErrorWithReason(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                             absl::StrCat("an event of jobs/", id, " does not parse"));
    }
  }
  return events;
}

absl::StatusOr<int64_t> PostgresJobStore::QueuePosition(const JobRow& row) {
  if (row.job.state() != v1::JOB_STATE_QUEUED) return 0;
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(Result r,
                           c->Exec("SELECT COUNT(*) FROM jobs WHERE state = $1 AND "
                                   "(priority > $2 OR (priority = $2 AND seq < $3))",
                                   Params()
                                       .Add(int64_t{v1::JOB_STATE_QUEUED})
                                       .Add(static_cast<int64_t>(row.job.spec().priority()))
                                       .Add(row.seq)));
  return r.Int(0, 0) + 1;
}

absl::StatusOr<int64_t> PostgresJobStore::CountQueued() {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(Result r, c->Exec("SELECT COUNT(*) FROM jobs WHERE state = $1",
                                             Params().Add(int64_t{v1::JOB_STATE_QUEUED})));
  return r.Int(0, 0);
}

absl::StatusOr<std::optional<absl::Duration>> PostgresJobStore::MeanRunTime(int n) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(
      Result r,
      c->Exec("SELECT FLOOR(AVG(end_ms - start_ms))::BIGINT, COUNT(*) FROM (SELECT end_ms, "
              "start_ms FROM jobs WHERE state = $1 AND start_ms IS NOT NULL "
              "ORDER BY end_ms DESC LIMIT $2) AS recent",
              Params().Add(int64_t{v1::JOB_STATE_SUCCEEDED}).Add(static_cast<int64_t>(n))));
  if (r.Int(0, 1) == 0) return std::optional<absl::Duration>();
  return std::optional<absl::Duration>(absl::Milliseconds(r.Int(0, 0)));
}

absl::StatusOr<JobUpdate> PostgresJobStore::Update(const std::string& id, const Mutation& mutate) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  JobUpdate out;
  RESTYLE_RETURN_IF_ERROR(c->Transaction([&]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(std::optional<JobRow> row, LockRow(*c, id));
    if (!row) return JobNotFound(id);
    RESTYLE_ASSIGN_OR_RETURN(out, Mutate(*c, *std::move(row), mutate));
    return Announce(*c, origin(), out);
  }));
  return out;
}

absl::StatusOr<std::optional<JobUpdate>> PostgresJobStore::LeaseNext(
    const std::vector<std::string>& sources, const Mutation& mutate) {
  if (sources.empty()) return std::optional<JobUpdate>();
  Params p;
  p.Add(int64_t{v1::JOB_STATE_QUEUED});
  std::vector<std::string> marks;
  for (const std::string& source : sources) {
    p.Add(source);
    marks.push_back(absl::StrCat("$", p.size()));
  }
  // SKIP LOCKED: a job another front is leasing right now is passed over
  // (and, once its lease commits, no longer QUEUED), never leased twice.
  const std::string sql =
      absl::StrCat("SELECT ", kRowColumns, " FROM jobs WHERE state = $1 AND source IN (",
                   absl::StrJoin(marks, ", "),
                   ") ORDER BY priority DESC, seq LIMIT 1 "
                   "FOR UPDATE SKIP LOCKED");
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  std::optional<JobUpdate> out;
  RESTYLE_RETURN_IF_ERROR(c->Transaction([&]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(Result r, c->Exec(sql, p));
    if (r.rows() == 0) return absl::OkStatus();
    RESTYLE_ASSIGN_OR_RETURN(JobRow row, RowFrom(r, 0));
    RESTYLE_ASSIGN_OR_RETURN(out, Mutate(*c, std::move(row), mutate));
    return Announce(*c, origin(), *out);
  }));
  return out;
}

absl::StatusOr<std::vector<std::string>> PostgresJobStore::DueJobIds(absl::Time now) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(
      Result r, c->Exec("SELECT id FROM jobs WHERE deadline_ms IS NOT NULL AND deadline_ms <= $1",
                        Params().Add(absl::ToUnixMillis(now))));
  std::vector<std::string> ids;
  for (int i = 0; i < r.rows(); ++i) ids.push_back(r.Text(i, 0));
  return ids;
}

absl::Status PostgresJobStore::ExtendLeases(absl::Time until) {
  std::vector<std::string> ids;
  {
    RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
    RESTYLE_ASSIGN_OR_RETURN(Result r,
                             c->Exec("SELECT id FROM jobs WHERE lease_expire_ms IS NOT NULL AND "
                                     "lease_expire_ms < $1",
                                     Params().Add(absl::ToUnixMillis(until))));
    for (int i = 0; i < r.rows(); ++i) ids.push_back(r.Text(i, 0));
  }
  for (const std::string& id : ids) {
    RESTYLE_RETURN_IF_ERROR(Update(id, [&](JobRow& row, Events*) {
                              if (row.lease_expire) {
                                row.lease_expire = std::max(*row.lease_expire, until);
                              }
                              return absl::OkStatus();
                            }).status());
  }
  return absl::OkStatus();
}

absl::Status PostgresJobStore::PutArtifact(const ArtifactRecord& record,
                                           const std::string& worker) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  return c->Transaction([&]() -> absl::Status {
    if (!worker.empty()) {
      // FOR SHARE: the lease cannot move until the record is in.
      RESTYLE_ASSIGN_OR_RETURN(std::optional<JobRow> row,
                               LockRow(*c, record.job_id, /*share=*/true));
      if (!row) return JobNotFound(record.job_id);
      RESTYLE_RETURN_IF_ERROR(CheckLease(*row, worker, record.attempt));
    }
    return c->Run(
        "INSERT INTO artifacts (name, job_id, attempt, path, artifact) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET "
        "job_id = EXCLUDED.job_id, attempt = EXCLUDED.attempt, path = EXCLUDED.path, "
        "artifact = EXCLUDED.artifact",
        Params()
            .Add(record.artifact.name())
            .Add(record.job_id)
            .Add(static_cast<int64_t>(record.attempt))
            .Add(record.path)
            .AddBytes(record.artifact.SerializeAsString()));
  });
}

absl::StatusOr<ArtifactRecord> PostgresJobStore::GetArtifact(const std::string& name) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(
      Result r, c->Exec("SELECT job_id, attempt, path, artifact FROM artifacts WHERE name = $1",
                        Params().Add(name)));
  if (r.rows() == 0) {
    return ErrorWithReason(absl::StatusCode::kNotFound, "ARTIFACT_NOT_FOUND",
                           absl::StrCat("no artifact ", name), {{"artifact", name}});
  }
  return ArtifactFrom(r, 0);
}

absl::StatusOr<std::vector<ArtifactRecord>> PostgresJobStore::ListArtifacts(
    const std::string& job_id) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(Result r, c->Exec("SELECT job_id, attempt, path, artifact FROM "
                                             "artifacts WHERE job_id = $1 ORDER BY name",
                                             Params().Add(job_id)));
  std::vector<ArtifactRecord> out;
  for (int i = 0; i < r.rows(); ++i) {
    RESTYLE_ASSIGN_OR_RETURN(ArtifactRecord a, ArtifactFrom(r, i));
    out.push_back(std::move(a));
  }
  return out;
}

absl::Status PostgresJobStore::DeleteArtifacts(const std::string& job_id) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  return c->Run("DELETE FROM artifacts WHERE job_id = $1", Params().Add(job_id));
}

absl::Status PostgresJobStore::PutSource(const v1::Generator& generator) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  return c->Run(
      "INSERT INTO sources (id, generator, update_ms) VALUES ($1, $2, $3) "
      "ON CONFLICT (id) DO UPDATE SET generator = EXCLUDED.generator, "
      "update_ms = EXCLUDED.update_ms",
      Params()
          .Add(generator.name())
          .AddBytes(generator.SerializeAsString())
          .Add(absl::ToUnixMillis(absl::Now())));
}

absl::StatusOr<std::vector<v1::Generator>> PostgresJobStore::ListSources() {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(Result r, c->Exec("SELECT generator FROM sources ORDER BY id"));
  std::vector<v1::Generator> out;
  for (int i = 0; i < r.rows(); ++i) {
    if (!out.emplace_back().ParseFromString(r.Bytes(i, 0))) {
      return ErrorWithReason(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                             "a stored source generator does not parse");
    }
  }
  return out;
}

absl::StatusOr<std::vector<JobRow>> PostgresJobStore::ListAdapted(int64_t offset, int limit) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(
      Result r, c->Exec(absl::StrCat("SELECT ", kRowColumns,
                                     " FROM jobs WHERE state = $1 AND "
                                     "NOT generator_deleted ORDER BY seq DESC LIMIT $2 OFFSET $3"),
                        Params()
                            .Add(int64_t{v1::JOB_STATE_SUCCEEDED})
                            .Add(static_cast<int64_t>(limit))
                            .Add(offset)));
  return RowsFrom(r);
}

absl::Status PostgresJobStore::MarkGeneratorDeleted(const std::string& job_id, absl::Time now) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  return c->Transaction([&]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(std::optional<JobRow> row, LockRow(*c, job_id));
    if (!row || row->job.state() != v1::JOB_STATE_SUCCEEDED ||
        row->job.result().generator().empty()) {
      return ErrorWithReason(absl::StatusCode::kNotFound, "GENERATOR_NOT_FOUND",
                             absl::StrCat("no generator generators/", job_id));
    }
    row->job.mutable_result()->clear_generator();
    row->job.mutable_result()->clear_artifacts();
    *row->job.mutable_update_time() = ToProtoTime(now);
    RESTYLE_RETURN_IF_ERROR(WriteRow(*c, *row, /*insert=*/false).status());
    return c->Run("UPDATE jobs SET generator_deleted = TRUE WHERE id = $1", Params().Add(job_id));
  });
}

// --- several fronts ----------------------------------------------------------------

absl::Status PostgresJobStore::PutFront(const FrontRecord& front) {
  v1::ListWorkersResponse workers;
  for (const v1::Worker& w : front.workers) *workers.add_workers() = w;
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  return c->Run(
      "INSERT INTO fronts (id, address, start_ms, seen_ms, draining, workers) VALUES ($1, $2, $3, "
      "$4, $5, $6) ON CONFLICT (id) DO UPDATE SET address = $2, seen_ms = $4, draining = $5, "
      "workers = $6",
      Params()
          .Add(front.id)
          .Add(front.address)
          .Add(absl::ToUnixMillis(front.started))
          .Add(absl::ToUnixMillis(front.seen))
          .Add(std::string(front.draining ? "true" : "false"))
          .AddBytes(workers.SerializeAsString()));
}

absl::StatusOr<std::vector<FrontRecord>> PostgresJobStore::ListFronts(absl::Time since) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  RESTYLE_ASSIGN_OR_RETURN(
      Result r, c->Exec("SELECT id, address, start_ms, seen_ms, draining, workers FROM fronts "
                        "WHERE seen_ms >= $1 ORDER BY start_ms, id",
                        Params().Add(absl::ToUnixMillis(since))));
  std::vector<FrontRecord> fronts;
  for (int i = 0; i < r.rows(); ++i) {
    FrontRecord f;
    f.id = r.Text(i, 0);
    f.address = r.Text(i, 1);
    f.started = absl::FromUnixMillis(r.Int(i, 2));
    f.seen = absl::FromUnixMillis(r.Int(i, 3));
    f.draining = r.Text(i, 4) == "t";
    v1::ListWorkersResponse workers;
    if (!workers.ParseFromString(r.Bytes(i, 5))) {
      return ErrorWithReason(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                             absl::StrCat("front ", f.id, "'s record does not parse"));
    }
    f.workers.assign(workers.workers().begin(), workers.workers().end());
    fronts.push_back(std::move(f));
  }
  return fronts;
}

absl::Status PostgresJobStore::DeleteFront(const std::string& id, absl::Time stale_before) {
  RESTYLE_ASSIGN_OR_RETURN(Borrowed c, Acquire());
  return c->Run("DELETE FROM fronts WHERE id = $1 OR seen_ms < $2",
                Params().Add(id).Add(absl::ToUnixMillis(stale_before)));
}

absl::Status PostgresJobStore::WatchChanges(const std::string& origin, ChangeListener listener) {
  {
    absl::MutexLock lock(&origin_mu_);
    if (listener_.joinable()) return absl::FailedPreconditionError("WatchChanges was called already");
    origin_ = origin;
  }
  // The first connection is made here, so that a front that cannot listen
  // does not start.
  RESTYLE_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> c, Connect());
  RESTYLE_RETURN_IF_ERROR(c->Run(absl::StrCat("LISTEN ", kChangesChannel)));
  listener_ = std::thread([this, origin, listener = std::move(listener),
                           c = std::move(c)]() mutable { Listen(origin, listener, std::move(c)); });
  return absl::OkStatus();
}

void PostgresJobStore::Listen(const std::string& origin, const ChangeListener& listener,
                              std::unique_ptr<PgConnection> c) {
  absl::Duration backoff = absl::Milliseconds(200);
  while (!stop_listening_.HasBeenNotified()) {
    if (c == nullptr) {
      absl::StatusOr<std::unique_ptr<PgConnection>> next = Connect();
      if (next.ok()) {
        absl::Status listening = (*next)->Run(absl::StrCat("LISTEN ", kChangesChannel));
        if (listening.ok()) {
          c = *std::move(next);
          spdlog::info("following other fronts' changes again");
          backoff = absl::Milliseconds(200);
          if (listener.on_gap) listener.on_gap();
          continue;
        }
      }
      stop_listening_.WaitForNotificationWithTimeout(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(5));
      continue;
    }
    PGconn* raw = c->raw();
    pollfd fd{.fd = PQsocket(raw), .events = POLLIN, .revents = 0};
    if (fd.fd < 0 || poll(&fd, 1, 250) < 0 || PQconsumeInput(raw) == 0) {
      spdlog::warn("the connection that follows other fronts' changes was lost ({}); reconnecting",
                   std::string(absl::StripAsciiWhitespace(PQerrorMessage(raw))));
      c.reset();
      continue;
    }
    while (PGnotify* n = PQnotifies(raw)) {
      std::optional<StoreChange> change = ParseChange(n->extra);
      PQfreemem(n);
      if (change && change->origin != origin && listener.on_change) listener.on_change(*change);
    }
  }
}

}  // namespace restyle::server
