// restyled on PostgreSQL: --database-url (and $RESTYLE_DATABASE_URL) reach
// the store, the front starts, says where its jobs are (without the
// password), stops cleanly, and `restyled --check` reads the same database;
// a URL of another kind is a usage error. No worker: this is the flag's
// path, not the replicated front.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "tests/integration/postgres_server.h"

namespace restyle::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs a shell command line; its exit status.
int Shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class PostgresFrontTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<PostgresServer*> pg = SharedPostgres();
    RESTYLE_REQUIRE_POSTGRES(pg);
    pg_ = *pg;
    ASSERT_TRUE(pg_->CreateDatabase("front").ok());
    dir_ = ::testing::TempDir() + "/postgres_front_test";
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  PostgresServer* pg_ = nullptr;
  std::string dir_;
};

TEST_F(PostgresFrontTest, StartsStopsAndChecksOnTheDatabaseItIsGiven) {
  const std::string url = pg_->Url("front");
  // Up (its port file written), SIGTERM, its exit status; 30 s at most.
  const std::string start =
      absl::StrCat(RESTYLED_BIN, " --data-dir ", dir_, "/data --database-url '", url,
                   "' --host 127.0.0.1 --port 0 --worker-port 0 --health-port 0 --metrics-port -1 "
                   "--drain-delay 0 --port-file ",
                   dir_, "/ports.json > ", dir_,
                   "/front.log 2>&1 & pid=$!; "
                   "for i in $(seq 300); do [ -s ",
                   dir_,
                   "/ports.json ] && break; sleep 0.1; done; "
                   "kill -TERM $pid; wait $pid");
  EXPECT_EQ(Shell(start), 0) << ReadAll(dir_ + "/front.log");
  const std::string log = ReadAll(dir_ + "/front.log");
  EXPECT_NE(log.find("restyled serving"), std::string::npos) << log;
  EXPECT_NE(log.find(absl::StrCat("jobs in PostgreSQL ", pg_->dir(), "/front")), std::string::npos)
      << log;
  EXPECT_TRUE(pg_->Execute("front", "SELECT 1 FROM jobs LIMIT 1").ok()) << "no schema made";

  // --check on the same database, named by the environment this time.
  EXPECT_EQ(Shell(absl::StrCat("RESTYLE_DATABASE_URL='", url, "' ", RESTYLED_BIN,
                               " --check --data-dir ", dir_, "/data > ", dir_, "/check.log 2>&1")),
            0)
      << ReadAll(dir_ + "/check.log");
  EXPECT_NE(ReadAll(dir_ + "/check.log").find("0 jobs"), std::string::npos)
      << ReadAll(dir_ + "/check.log");

  // Another kind of URL: a usage error, saying what it takes.
  EXPECT_EQ(Shell(absl::StrCat(RESTYLED_BIN, " --data-dir ", dir_,
                               "/data --database-url mysql://db/jobs --port 0 --worker-port 0 "
                               "--health-port 0 --metrics-port -1 > ",
                               dir_, "/bad.log 2>&1")),
            2);
  EXPECT_NE(ReadAll(dir_ + "/bad.log").find("postgresql://"), std::string::npos)
      << ReadAll(dir_ + "/bad.log");
}

}  // namespace
}  // namespace restyle::testing
