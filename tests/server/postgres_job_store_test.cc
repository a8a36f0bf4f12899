// What matters for PostgreSQL beyond the shared suite (job_store_test.cc):
// two stores on one database, as two fronts, racing to lease and to create
// the same request; fronts that start at once migrating the schema once;
// errors and reconnection when the server goes away; bad URLs.
#include "server/postgres_job_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "server/open_job_store.h"
#include "tests/integration/postgres_server.h"
#include "tests/server/job_store_fixture.h"

namespace restyle::server {
namespace {

using PostgresStoreTest = StoreTest;

// Two stores (as two fronts), several threads each, leasing until the queue is
// empty: every job is leased exactly once, to the worker the store says.
TEST_P(PostgresStoreTest, ConcurrentLeasesFromTwoStoresNeverShareAJob) {
  constexpr int kJobs = 100, kThreadsPerStore = 4;  // Add queues 100 at most
  for (int i = 0; i < kJobs; ++i) Add(absl::StrCat("j", i), i % 3);
  auto other = OpenAnother();
  ASSERT_TRUE(other.ok()) << other.status();
  JobStore* stores[] = {store_.get(), other->get()};

  std::mutex mu;
  std::map<std::string, std::vector<std::string>> leased;  // job -> workers
  std::atomic<int> errors{0};
  absl::Barrier* start = new absl::Barrier(2 * kThreadsPerStore);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2 * kThreadsPerStore; ++t) {
    threads.emplace_back([&, t] {
      JobStore* store = stores[t % 2];
      const std::string worker = absl::StrCat("workers/w", t);
      if (start->Block()) delete start;
      while (true) {
        auto lease = store->Lease(worker, {kSource}, kT0, kTtl);
        if (!lease.ok()) {
          ++errors;
          ADD_FAILURE() << lease.status();
          return;
        }
        if (!*lease) return;
        std::lock_guard<std::mutex> lock(mu);
        leased[(*lease)->row.job.name()].push_back(worker);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(leased.size(), size_t{kJobs});
  for (const auto& [job, workers] : leased) {
    ASSERT_EQ(workers.size(), 1u) << job << " was leased " << workers.size() << " times";
    const v1::Job stored = Job(job.substr(5));
    EXPECT_EQ(stored.state(), v1::JOB_STATE_RUNNING);
    EXPECT_EQ(stored.attempt(), 1);
    EXPECT_EQ(stored.worker(), workers[0]);
  }
  EXPECT_EQ(*store_->CountQueued(), 0);
}

// The same request_id from both stores at once, round after round: one job
// per request, every caller answered with it, its creation event stored once.
TEST_P(PostgresStoreTest, ConcurrentCreatesOfOneRequestMakeOneJob) {
  constexpr int kRounds = 10, kThreadsPerStore = 3;
  auto other = OpenAnother();
  ASSERT_TRUE(other.ok()) << other.status();
  JobStore* stores[] = {store_.get(), other->get()};
  for (int round = 0; round < kRounds; ++round) {
    const std::string request = absl::StrCat("req-", round);
    std::vector<absl::StatusOr<JobStore::Created>> answers(2 * kThreadsPerStore);
    absl::Barrier* start = new absl::Barrier(2 * kThreadsPerStore);
    std::vector<std::thread> threads;
    for (int t = 0; t < 2 * kThreadsPerStore; ++t) {
      threads.emplace_back([&, t] {
        NewJobRow job =
            MakeJob(absl::StrCat("r", round, "-", t), 0, kSource, kT0, request, "digest");
        if (start->Block()) delete start;
        answers[t] = stores[t % 2]->Create(job.row, job.events, 1000);
      });
    }
    for (std::thread& t : threads) t.join();
    int created = 0;
    std::string name;
    for (const auto& answer : answers) {
      ASSERT_TRUE(answer.ok()) << answer.status();
      created += answer->created ? 1 : 0;
      if (name.empty()) name = answer->update.row.job.name();
      EXPECT_EQ(answer->update.row.job.name(), name);
    }
    EXPECT_EQ(created, 1) << "round " << round;
    EXPECT_EQ(store_->ReadEvents(name.substr(5), 0, 10)->size(), 1u);
  }
  auto all = store_->List({}, 100, "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->rows.size(), size_t{kRounds});
}

// Fronts starting together on an empty database: each Open succeeds and the
// schema is made once (a second CREATE TABLE jobs would fail the loser).
TEST_P(PostgresStoreTest, FrontsStartingAtOnceMigrateOnce) {
  auto pg = testing::SharedPostgres();
  ASSERT_TRUE(pg.ok());
  ASSERT_TRUE((*pg)->CreateDatabase("migrate_at_once").ok());
  constexpr int kFronts = 6;
  std::vector<absl::Status> opened(kFronts);
  absl::Barrier* start = new absl::Barrier(kFronts);
  std::vector<std::thread> threads;
  for (int i = 0; i < kFronts; ++i) {
    threads.emplace_back([&, i] {
      if (start->Block()) delete start;
      opened[i] = PostgresJobStore::Open({.url = (*pg)->Url("migrate_at_once")}).status();
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : opened) EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE((*pg)
                  ->Execute("migrate_at_once",
                            absl::StrCat("DO $$ BEGIN IF (SELECT version FROM schema_version) <> ",
                                         PostgresJobStore::SchemaVersion(),
                                         " OR (SELECT COUNT(*) FROM schema_version) <> 1 THEN "
                                         "RAISE 'wrong schema_version'; END IF; END $$"))
                  .ok());
}

// The server goes away: calls fail UNAVAILABLE (STORE_UNAVAILABLE) with
// what to check, and work again once it is back, without reopening the store.
TEST_P(PostgresStoreTest, UnavailableWhileTheServerIsDownThenReconnects) {
  auto pg = testing::SharedPostgres();
  ASSERT_TRUE(pg.ok());
  Add("a");
  ASSERT_TRUE((*pg)->Stop().ok());
  absl::StatusOr<JobRow> down = store_->Get("a");
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
  EXPECT_EQ(ErrorReason(down.status()), "STORE_UNAVAILABLE");
  EXPECT_NE(down.status().message().find((*pg)->dir()), absl::string_view::npos) << down.status();
  EXPECT_NE(down.status().message().find("--database-url"), absl::string_view::npos);
  EXPECT_EQ(store_->Lease(kW1, {kSource}, kT0, kTtl).status().code(),
            absl::StatusCode::kUnavailable);
  ASSERT_TRUE((*pg)->Restart().ok()) << (*pg)->Log();
  EXPECT_EQ(Job("a").state(), v1::JOB_STATE_QUEUED);
  // A restart between two calls: the pooled connection is dead, and the
  // next call reconnects by itself.
  ASSERT_TRUE((*pg)->Restart().ok()) << (*pg)->Log();
  EXPECT_EQ(LeaseId(kW1), "a");
}

// The fronts table: each front's record with its workers, refreshed in
// place, listed when seen recently, removed by id or when stale.
TEST_P(PostgresStoreTest, FrontsRecordThemselvesAndAgeOut) {
  EXPECT_TRUE(store_->shared());
  v1::Worker w;
  w.set_name("workers/w1");
  w.add_sources(kSource);
  ASSERT_TRUE(store_->PutFront({.id = "a", .address = "10.0.0.1:8700", .started = kT0,
                                .seen = kT0 + absl::Seconds(10), .workers = {w}})
                  .ok());
  ASSERT_TRUE(store_->PutFront({.id = "b", .address = "10.0.0.2:8700", .started = kT0,
                                .seen = kT0, .draining = true})
                  .ok());
  auto recent = store_->ListFronts(kT0 + absl::Seconds(5));
  ASSERT_TRUE(recent.ok()) << recent.status();
  ASSERT_EQ(recent->size(), 1u);
  EXPECT_EQ((*recent)[0].address, "10.0.0.1:8700");
  ASSERT_EQ((*recent)[0].workers.size(), 1u);
  EXPECT_EQ((*recent)[0].workers[0].sources(0), kSource);
  // Refreshed in place: still one record for "a", now without workers.
  ASSERT_TRUE(store_->PutFront({.id = "a", .address = "10.0.0.1:8700", .started = kT0,
                                .seen = kT0 + absl::Seconds(20)})
                  .ok());
  auto all = store_->ListFronts(absl::InfinitePast());
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  for (const FrontRecord& f : *all) {
    if (f.id == "a") {
      EXPECT_EQ(f.seen, kT0 + absl::Seconds(20));
      EXPECT_TRUE(f.workers.empty());
      EXPECT_FALSE(f.draining);
    } else {
      EXPECT_EQ(f.id, "b");
      EXPECT_TRUE(f.draining);
    }
  }
  // "a" stops cleanly; "b" was not seen since kT0.
  ASSERT_TRUE(store_->DeleteFront("a", kT0 + absl::Seconds(1)).ok());
  EXPECT_TRUE(store_->ListFronts(absl::InfinitePast())->empty());
}

// Changes one store commits reach another's listener (not its own), with
// the job, the events' sequence numbers and whether the job is queued.
TEST_P(PostgresStoreTest, ChangesReachTheOtherFrontsListenersAtCommit) {
  struct Heard {
    absl::Mutex mu;
    std::vector<StoreChange> changes;
    // Waits up to 10 s for `n` changes.
    bool Has(size_t n) {
      for (int i = 0; i < 200; ++i) {
        {
          absl::MutexLock lock(&mu);
          if (changes.size() >= n) return true;
        }
        absl::SleepFor(absl::Milliseconds(50));
      }
      return false;
    }
  };
  Heard by_a, by_b;
  auto listen = [](Heard* h) {
    return ChangeListener{.on_change = [h](const StoreChange& c) {
      absl::MutexLock lock(&h->mu);
      h->changes.push_back(c);
    }};
  };
  auto other = OpenAnother();
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE(store_->WatchChanges("a", listen(&by_a)).ok());
  ASSERT_TRUE((*other)->WatchChanges("b", listen(&by_b)).ok());

  // Created through b: a hears it, queued, event 1.
  NewJobRow job = MakeJob("x");
  ASSERT_TRUE((*other)->Create(job.row, job.events, 100).ok());
  ASSERT_TRUE(by_a.Has(1));
  {
    absl::MutexLock lock(&by_a.mu);
    const StoreChange& c = by_a.changes[0];
    EXPECT_EQ(c.origin, "b");
    EXPECT_EQ(c.job_id, "x");
    EXPECT_EQ(c.first_seq, 1);
    EXPECT_EQ(c.last_seq, 1);
    EXPECT_TRUE(c.queued);
  }
  // Leased and renewed through a: b hears the lease (events appended), not
  // the renewal (none); a does not hear itself.
  EXPECT_EQ(LeaseId(kW1), "x");
  ASSERT_TRUE(store_->Renew("x", kW1, 1, kT0 + kTtl).ok());
  ASSERT_TRUE(by_b.Has(1));
  absl::SleepFor(absl::Milliseconds(300));
  {
    absl::MutexLock lock(&by_b.mu);
    ASSERT_EQ(by_b.changes.size(), 1u);
    EXPECT_EQ(by_b.changes[0].origin, "a");
    EXPECT_EQ(by_b.changes[0].first_seq, 2);
    EXPECT_FALSE(by_b.changes[0].queued);
  }
  {
    absl::MutexLock lock(&by_a.mu);
    EXPECT_EQ(by_a.changes.size(), 1u) << "a heard its own change";
  }
  store_.reset();  // its listener calls into by_a: stopped before by_a goes
}

INSTANTIATE_TEST_SUITE_P(Backends, PostgresStoreTest, ::testing::Values(Backend::kPostgres),
                         BackendName);

TEST(PostgresJobStoreOpenTest, ABadUrlIsInvalidAndAnAbsentServerUnavailable) {
  auto bad = PostgresJobStore::Open({.url = "postgresql://[::1/restyle"});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_EQ(StoreKindOf("mysql://db/restyle").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*StoreKindOf("postgres://db/restyle"), StoreKind::kPostgres);
  EXPECT_EQ(*StoreKindOf(""), StoreKind::kSqlite);
  // A socket directory with no server in it.
  auto absent = PostgresJobStore::Open(
      {.url = absl::StrCat("postgresql:///restyle?host=", ::testing::TempDir(), "/no-server")});
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kUnavailable) << absent.status();
  EXPECT_EQ(ErrorReason(absent.status()), "STORE_UNAVAILABLE");
  EXPECT_EQ(DescribeStore({.database_url = "postgresql://restyle:secret@db:5433/jobs"}),
            "PostgreSQL db:5433/jobs");
}

}  // namespace
}  // namespace restyle::server
