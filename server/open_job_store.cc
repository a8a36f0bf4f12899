#include "server/open_job_store.h"

#include <libpq-fe.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/postgres_job_store.h"
#include "server/sqlite_job_store.h"

namespace restyle::server {

absl::StatusOr<StoreKind> StoreKindOf(const std::string& database_url) {
  if (database_url.empty()) return StoreKind::kSqlite;
  if (absl::StartsWith(database_url, "postgresql://") ||
      absl::StartsWith(database_url, "postgres://")) {
    return StoreKind::kPostgres;
  }
  return absl::InvalidArgumentError(
      "--database-url takes a PostgreSQL URL, postgresql://USER@HOST:5432/DATABASE (leave it "
      "out for the SQLite database in --data-dir)");
}

absl::StatusOr<std::unique_ptr<JobStore>> OpenJobStore(const StoreOptions& options) {
  RESTYLE_ASSIGN_OR_RETURN(StoreKind kind, StoreKindOf(options.database_url));
  if (kind == StoreKind::kPostgres) {
    RESTYLE_ASSIGN_OR_RETURN(std::unique_ptr<PostgresJobStore> store,
                             PostgresJobStore::Open({.url = options.database_url}));
    return std::unique_ptr<JobStore>(std::move(store));
  }
  RESTYLE_ASSIGN_OR_RETURN(std::unique_ptr<SqliteJobStore> store,
                           SqliteJobStore::Open({.path = options.data_dir + "/restyle.db"}));
  return std::unique_ptr<JobStore>(std::move(store));
}

std::string DescribeStore(const StoreOptions& options) {
  if (options.database_url.empty()) return absl::StrCat("SQLite ", options.data_dir, "/restyle.db");
  std::string where = "PostgreSQL";
  char* error = nullptr;
  if (PQconninfoOption* parsed = PQconninfoParse(options.database_url.c_str(), &error)) {
    std::string host, port, db;
    for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
      if (o->val == nullptr) continue;
      const std::string keyword = o->keyword;
      if (keyword == "host") host = o->val;
      if (keyword == "port") port = o->val;
      if (keyword == "dbname") db = o->val;
    }
    PQconninfoFree(parsed);
    absl::StrAppend(&where, " ", host.empty() ? "(default host)" : host, port.empty() ? "" : ":",
                    port, "/", db);
  }
  PQfreemem(error);
  return where;
}

}  // namespace restyle::server
