// Which job store restyled runs on, chosen by --database-url: none is the
// embedded SQLite database in the data directory (one front); a
// postgresql:// URL is a PostgreSQL server the operator runs (the store a
// replicated front will need; see docs/architecture.md for what is done).
#ifndef RESTYLE_SERVER_OPEN_JOB_STORE_H_
#define RESTYLE_SERVER_OPEN_JOB_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/job_store.h"

namespace restyle::server {

enum class StoreKind { kSqlite, kPostgres };

struct StoreOptions {
  // "": SQLite, <data_dir>/restyle.db. "postgresql://..." or "postgres://...":
  // PostgreSQL (a libpq connection URI; the password best from PGPASSWORD or
  // PGPASSFILE, which libpq reads).
  std::string database_url;
  // The front's data directory (artifacts, and the SQLite database).
  std::string data_dir;
};

// The kind a URL names; INVALID_ARGUMENT for another scheme.
absl::StatusOr<StoreKind> StoreKindOf(const std::string& database_url);

// Opens (creating or migrating) the store the options name.
absl::StatusOr<std::unique_ptr<JobStore>> OpenJobStore(const StoreOptions& options);

// For logs: "SQLite <path>" or "PostgreSQL <host:port/database>", never a
// password.
std::string DescribeStore(const StoreOptions& options);

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_OPEN_JOB_STORE_H_
