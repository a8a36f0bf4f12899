// A real PostgreSQL server for tests: Debian's initdb and postgres (package
// `postgresql`, which `make deps` installs) in a fresh temporary directory,
// listening on a unix socket in that directory and on no TCP port, with
// fsync off. initdb and postgres refuse to run as root, so when the tests do
// (as here and in CI) both run as an unprivileged user: $RESTYLE_POSTGRES_USER,
// else `postgres` (the package's), else `nobody`. The server is stopped when
// the object goes (fast shutdown, then SIGKILL), and killed with the test
// process if that dies first.
//
//   auto pg = SharedPostgres();            // one server per test binary
//   RESTYLE_REQUIRE_POSTGRES(pg);          // skip, or fail under CI=true
//   ASSERT_TRUE((*pg)->CreateDatabase("t1").ok());
//   PostgresJobStore::Open({.url = (*pg)->Url("t1")});
//
// Thread-safety: a PostgresServer is used from one thread (the test's);
// SharedPostgres from the test thread.
#ifndef RESTYLE_TESTS_INTEGRATION_POSTGRES_SERVER_H_
#define RESTYLE_TESTS_INTEGRATION_POSTGRES_SERVER_H_

#include <gtest/gtest.h>
#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace restyle::testing {

class PostgresServer {
 public:
  struct Options {
    // Where initdb and postgres are. "": $RESTYLE_POSTGRES_BIN_DIR, else the
    // newest /usr/lib/postgresql/<version>/bin.
    std::string bin_dir;
    // initdb and the start, each at most.
    absl::Duration start_timeout = absl::Seconds(60);
    // Also listen on 127.0.0.1, on a port the OS picked (TcpUrl).
    bool tcp = false;
  };

  // Makes a cluster in a new directory under the system's temporary
  // directory and starts it. NOT_FOUND when no PostgreSQL is installed (the
  // message says what to install); another error, with the server's log,
  // when it is installed and does not start.
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start(const Options& options);
  // Stops the server and removes its directory.
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // A libpq URL for `database`, as the superuser "restyle" (no password),
  // over the unix socket.
  std::string Url(const std::string& database = "postgres") const;
  // With Options::tcp: a libpq URL for `database` over TCP to 127.0.0.1:`port`
  // (the server's port(), or a proxy's in front of it).
  std::string TcpUrl(const std::string& database, int port) const;
  int port() const { return port_; }
  // Creates an empty database (dropping one of that name first).
  absl::Status CreateDatabase(const std::string& name);
  // Runs `sql` (statements separated by ';') in `database`.
  absl::Status Execute(const std::string& database, const std::string& sql);

  // Stops the server (fast shutdown; SIGKILL after 20 s); Restart starts it
  // again on the same data and socket.
  absl::Status Stop();
  absl::Status Restart();
  bool running() const { return pid_ > 0; }

  // The directory: data/, the socket, initdb.log and postgres.log.
  const std::string& dir() const { return dir_; }
  // The server's log so far.
  std::string Log() const;

 private:
  PostgresServer(Options options, std::string bin_dir, std::string dir, uid_t uid, gid_t gid)
      : options_(std::move(options)),
        bin_dir_(std::move(bin_dir)),
        dir_(std::move(dir)),
        uid_(uid),
        gid_(gid) {}
  absl::Status InitDb();
  absl::Status Launch();

  const Options options_;
  const std::string bin_dir_;
  const std::string dir_;
  const uid_t uid_;  // who initdb and postgres run as
  const gid_t gid_;
  pid_t pid_ = -1;
  int port_ = 5432;  // with tcp, one the OS picked at Start (kept by Restart)
};

// The server this test binary shares: started by the first call, stopped by
// a GoogleTest global environment after the last test. A failed start is
// returned again by later calls, without trying again.
absl::StatusOr<PostgresServer*> SharedPostgres();

// True under CI=true: a missing PostgreSQL then fails a test that needs one
// instead of skipping it.
bool PostgresRequired();

// In a test (or its SetUp) with `server` from SharedPostgres(): skips when no
// PostgreSQL is installed (fails under CI=true); fails when one is installed
// and did not start.
#define RESTYLE_REQUIRE_POSTGRES(server)                             \
  do {                                                               \
    if (!(server).ok()) {                                            \
      if ((server).status().code() != absl::StatusCode::kNotFound || \
          ::restyle::testing::PostgresRequired()) {                  \
        FAIL() << "PostgreSQL did not start: " << (server).status(); \
      }                                                              \
      GTEST_SKIP() << "no PostgreSQL: " << (server).status();        \
    }                                                                \
  } while (0)

}  // namespace restyle::testing

#endif  // RESTYLE_TESTS_INTEGRATION_POSTGRES_SERVER_H_
