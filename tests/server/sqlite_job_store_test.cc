// What only the SQLite store has: a database file that is not one.
#include "server/sqlite_job_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/status.h"

namespace restyle::server {
namespace {

TEST(SqliteJobStoreTest, AFileThatIsNoDatabaseIsRefused) {
  const std::string dir = ::testing::TempDir() + "/sqlite_store_not_a_db";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/restyle.db") << std::string(8192, 'x');
  auto store = SqliteJobStore::Open({.path = dir + "/restyle.db"});
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss) << store.status();
  EXPECT_EQ(ErrorReason(store.status()), "STORE_CORRUPT");
}

}  // namespace
}  // namespace restyle::server
