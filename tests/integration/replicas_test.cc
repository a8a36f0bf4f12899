// Several restyled replicas over one PostgreSQL database (a real server,
// postgres_server.h), sharing one data directory, with workers that reach
// them through a list of their worker ports (gRPC's pick_first: the first
// that answers, the next when it goes away):
//   - jobs submitted round-robin across the replicas all finish, each once;
//   - a watch on a replica without workers follows a job leased through
//     another, every event in order, none twice; WaitJob there too;
//   - every replica lists every worker and is SERVING; a Generate call on a
//     replica without workers is served by another's (forwarded);
//   - many workers and tiny jobs across the replicas: no job is leased
//     twice;
//   - kill -9 of the replica a training worker talks to loses nothing: the
//     worker carries on through another, every job finishes once, and the
//     replica restarted leaves the others' leases as they are;
//   - a worker dying with its replica: the lease lapses, seen by the other
//     replicas, and another worker runs the job again.
#include <gtest/gtest.h>

#include <signal.h>

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/integration/postgres_server.h"
#include "tests/integration/service_fixture.h"

namespace restyle::testing {
namespace {

constexpr int kReplicas = 3;

struct Watched {
  std::vector<v1::JobEvent> events;
  grpc::Status status;
};

Watched Watch(Front& front, const std::string& job) {
  v1::WatchJobRequest request;
  request.set_name(job);
  auto context = Ctx(absl::Seconds(120));
  auto reader = front.api().WatchJob(context.get(), request);
  Watched w;
  v1::JobEvent e;
  while (reader->Read(&e)) w.events.push_back(e);
  w.status = reader->Finish();
  return w;
}

// How many events show the job entering `state`.
int Entered(const std::vector<v1::JobEvent>& events, v1::JobState state) {
  int n = 0;
  for (const v1::JobEvent& e : events) n += e.has_job() && e.job().state() == state;
  return n;
}

// The stored events must be 1, 2, 3, ... (queue updates repeat a seq).
void ExpectInOrderOnce(const std::vector<v1::JobEvent>& events, const std::string& job) {
  int64_t expected = 1;
  for (const v1::JobEvent& e : events) {
    if (e.has_queue()) continue;
    ASSERT_EQ(e.seq(), expected) << job << ": an event out of order, missing or twice";
    ++expected;
  }
}

class ReplicasTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<PostgresServer*> pg = SharedPostgres();
    if (!pg.ok()) return;  // each test says why
    pg_ = *pg;
    root_ = new std::string(FreshDir("replicas_test"));
    ASSERT_TRUE(pg_->CreateDatabase("replicas").ok());
    for (int i = 0; i < kReplicas; ++i) {
      fronts_[i] = new Front(*root_ + "/data",
                             // A worker whose replica dies has 5 s and more to reach
                             // another before its lease lapses (2 s, the tests'
                             // usual lease, is too close on a loaded machine).
                             {"--database-url", pg_->Url("replicas"), "--max-attempts", "3",
                              "--lease-ttl", "6"},
                             {},
                             absl::StrCat("replica", i));
    }
  }
  static void TearDownTestSuite() {
    for (auto& [name, w] : *workers_) w->Stop();
    workers_->clear();
    for (Front*& f : fronts_) {
      delete f;
      f = nullptr;
    }
  }

  void SetUp() override {
    absl::StatusOr<PostgresServer*> pg = SharedPostgres();
    RESTYLE_REQUIRE_POSTGRES(pg);
    ASSERT_NE(fronts_[kReplicas - 1], nullptr);
    // Every test has workers on replicas 0 and 1; replica 2 has none of
    // its own.
    if (!workers_->count("w0")) AddWorker("w0", 0);
    if (!workers_->count("w1")) AddWorker("w1", 1);
  }

  // The replicas' worker ports, starting with replica `first`: the order a
  // worker tries them in.
  static std::string WorkerTarget(int first) {
    std::vector<std::string> addresses;
    for (int i = 0; i < kReplicas; ++i) {
      addresses.push_back(absl::StrCat("127.0.0.1:", fronts_[(first + i) % kReplicas]->ports().worker));
    }
    return absl::StrCat("ipv4:", absl::StrJoin(addresses, ","));
  }
  static void AddWorker(const std::string& name, int first) {
    (*workers_)[name] = StartWorkerVia(*fronts_[first], WorkerTarget(first), name);
  }
  // Waits until every replica lists `n` workers.
  static bool WaitWorkers(size_t n, absl::Duration timeout = absl::Seconds(60)) {
    const absl::Time until = absl::Now() + timeout;
    while (absl::Now() < until) {
      bool all = true;
      for (Front* f : fronts_) {
        v1::ListWorkersResponse list;
        all &= f->api().ListWorkers(Ctx().get(), {}, &list).ok() &&
               static_cast<size_t>(list.workers_size()) == n;
      }
      if (all) return true;
      absl::SleepFor(absl::Milliseconds(200));
    }
    return false;
  }
  std::string Logs() const {
    std::string out;
    for (Front* f : fronts_) {
      if (f != nullptr) out += f->process().Log();
    }
    for (auto& [name, w] : *workers_) out += w->Log();
    return out;
  }

  static PostgresServer* pg_;
  static std::string* root_;
  static Front* fronts_[kReplicas];
  static std::map<std::string, std::unique_ptr<Process>>* workers_;
};

PostgresServer* ReplicasTest::pg_ = nullptr;
std::string* ReplicasTest::root_ = nullptr;
Front* ReplicasTest::fronts_[kReplicas] = {};
std::map<std::string, std::unique_ptr<Process>>* ReplicasTest::workers_ =
    new std::map<std::string, std::unique_ptr<Process>>();

TEST_F(ReplicasTest, JobsSubmittedRoundRobinAllFinishOnceAndAWatchFollowsThemAnywhere) {
  ASSERT_TRUE(WaitWorkers(2)) << Logs();
  for (Front* f : fronts_) EXPECT_TRUE(WaitServing(*f)) << "a replica is not SERVING";
  // Replica 2 lists both workers, each with the replica it talks to.
  v1::ListWorkersResponse listed;
  ASSERT_TRUE(fronts_[2]->api().ListWorkers(Ctx().get(), {}, &listed).ok());
  ASSERT_EQ(listed.workers_size(), 2);
  EXPECT_FALSE(listed.workers(0).front().empty());
  EXPECT_FALSE(listed.workers(1).front().empty());
  EXPECT_NE(listed.workers(0).front(), listed.workers(1).front());

  std::vector<std::string> jobs;
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<v1::Job> job =
        Adapt(*fronts_[i % kReplicas], SmallJob(3, absl::StrCat("style ", i)));
    ASSERT_TRUE(job.ok()) << job.status();
    jobs.push_back(job->name());
  }
  // Replica 2 leases nothing (no worker talks to it): its watch follows
  // jobs that the others leased, from the first event to the last.
  for (size_t i = 0; i < jobs.size(); ++i) {
    Watched w = Watch(*fronts_[2], jobs[i]);
    ASSERT_TRUE(w.status.ok()) << w.status.error_message();
    ExpectInOrderOnce(w.events, jobs[i]);
    EXPECT_EQ(Entered(w.events, v1::JOB_STATE_RUNNING), 1) << jobs[i] << " leased twice";
    EXPECT_EQ(Entered(w.events, v1::JOB_STATE_SUCCEEDED), 1) << jobs[i];
    int progress = 0;
    for (const v1::JobEvent& e : w.events) progress += e.has_progress();
    EXPECT_GE(progress, 6) << jobs[i] << ": the workers' progress did not reach the watch";
    // Every replica answers the same.
    for (Front* f : fronts_) {
      absl::StatusOr<v1::Job> job = GetJob(*f, jobs[i]);
      ASSERT_TRUE(job.ok());
      EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED);
      EXPECT_EQ(job->attempt(), 1);
    }
  }
}

TEST_F(ReplicasTest, AReplicaWithoutWorkersWatchesWaitsAndGeneratesThroughTheOthers) {
  ASSERT_TRUE(WaitWorkers(2)) << Logs();
  absl::StatusOr<v1::Job> job = Adapt(*fronts_[0], SmallJob(8, "watched live"));
  ASSERT_TRUE(job.ok()) << job.status();
  // Following from the start, live: the events arrive as the worker
  // reports them through another replica.
  Watched w = Watch(*fronts_[2], job->name());
  ASSERT_TRUE(w.status.ok()) << w.status.error_message();
  ExpectInOrderOnce(w.events, job->name());
  int stage2 = 0;
  for (const v1::JobEvent& e : w.events) {
    stage2 += e.has_progress() && e.progress().stage() == v1::JOB_STAGE_FINE_TUNING_GENERATOR;
  }
  EXPECT_EQ(stage2, 8);
  ASSERT_EQ(Entered(w.events, v1::JOB_STATE_SUCCEEDED), 1);

  // WaitJob on replica 2 for a job leased elsewhere.
  absl::StatusOr<v1::Job> waited = Adapt(*fronts_[1], SmallJob(3, "waited for"));
  ASSERT_TRUE(waited.ok());
  v1::WaitJobRequest wait;
  wait.set_name(waited->name());  // until the call's deadline
  v1::Job done;
  grpc::Status status = fronts_[2]->api().WaitJob(Ctx(absl::Seconds(70)).get(), wait, &done);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);

  // Generate on replica 2: no worker of its own, so another replica's
  // worker draws the images.
  const v1::Job finished = WaitDone(*fronts_[2], job->name());
  v1::GenerateRequest gen;
  gen.set_generator(finished.result().generator());
  for (uint64_t seed : {5, 6, 7}) gen.add_seeds(seed);
  auto context = Ctx(absl::Seconds(60));
  auto reader = fronts_[2]->api().Generate(context.get(), gen);
  std::vector<uint64_t> seeds;
  v1::GenerateResponse image;
  while (reader->Read(&image)) {
    seeds.push_back(image.seed());
    EXPECT_GT(image.png().size(), 8u);
  }
  status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message() << Logs();
  EXPECT_EQ(seeds, (std::vector<uint64_t>{5, 6, 7}));
  // Its metrics say so, and how many fronts it sees.
  const std::string metrics = HttpGet(fronts_[2]->ports().metrics, "/metrics");
  EXPECT_NE(metrics.find("restyle_generate_forwarded_total 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("restyle_front_replicas 3"), std::string::npos) << metrics;

  // The source generators and their ready workers, the same everywhere.
  for (Front* f : fronts_) {
    v1::ListGeneratorsRequest request;
    request.set_kind(v1::GENERATOR_KIND_SOURCE);
    v1::ListGeneratorsResponse list;
    ASSERT_TRUE(f->api().ListGenerators(Ctx().get(), request, &list).ok());
    ASSERT_EQ(list.generators_size(), 1);
    EXPECT_EQ(list.generators(0).ready_workers(), 2);
  }
}

TEST_F(ReplicasTest, ManyWorkersAndTinyJobsAcrossReplicasNeverLeaseAJobTwice) {
  // Two more workers, one of them on replica 2: four workers polling
  // three replicas, leasing from one queue.
  AddWorker("w2", 2);
  AddWorker("w3", 0);
  ASSERT_TRUE(WaitWorkers(4)) << Logs();
  const int n = EnvInt("RESTYLE_REPLICA_JOBS", 24);
  std::vector<std::string> jobs;
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<v1::Job> job =
        Adapt(*fronts_[i % kReplicas], SmallJob(1, absl::StrCat("tiny ", i)));
    ASSERT_TRUE(job.ok()) << job.status();
    jobs.push_back(job->name());
  }
  std::set<std::string> leased_by;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const v1::Job end = WaitDone(*fronts_[(i + 1) % kReplicas], jobs[i], absl::Seconds(180));
    ASSERT_EQ(end.state(), v1::JOB_STATE_SUCCEEDED) << end.DebugString() << Logs();
    EXPECT_EQ(end.attempt(), 1) << jobs[i];
    EXPECT_EQ(end.failed_attempts(), 0) << jobs[i];
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    Watched w = Watch(*fronts_[i % kReplicas], jobs[i]);
    EXPECT_EQ(Entered(w.events, v1::JOB_STATE_RUNNING), 1) << jobs[i] << " leased twice";
    EXPECT_EQ(Entered(w.events, v1::JOB_STATE_SUCCEEDED), 1) << jobs[i];
    for (const v1::JobEvent& e : w.events) {
      if (e.has_job() && e.job().state() == v1::JOB_STATE_RUNNING) leased_by.insert(e.job().worker());
    }
  }
  EXPECT_GE(leased_by.size(), 2u) << "one worker ran every job";
  (*workers_)["w2"]->Stop();
  (*workers_)["w3"]->Stop();
  workers_->erase("w2");
  workers_->erase("w3");
}

TEST_F(ReplicasTest, KillingTheReplicaOfATrainingWorkerLosesNothing) {
  ASSERT_TRUE(WaitWorkers(2)) << Logs();
  std::vector<std::string> jobs;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<v1::Job> job =
        Adapt(*fronts_[i % kReplicas], SmallJob(30, absl::StrCat("through a crash ", i)));
    ASSERT_TRUE(job.ok()) << job.status();
    jobs.push_back(job->name());
  }
  // The first job trains on a worker; kill -9 the replica that worker talks
  // to (w0 -> replica 0, w1 -> replica 1).
  const v1::Job running = WaitUntil(
      *fronts_[2], jobs[0], [](const v1::Job& j) { return j.progress().step() >= 3; },
      absl::Seconds(60));
  ASSERT_EQ(running.state(), v1::JOB_STATE_RUNNING) << running.DebugString();
  const int victim = running.worker() == "workers/w0" ? 0 : 1;
  fronts_[victim]->Kill();

  Front& survivor = *fronts_[2];
  for (const std::string& name : jobs) {
    const v1::Job end = WaitDone(survivor, name, absl::Seconds(150));
    EXPECT_EQ(end.state(), v1::JOB_STATE_SUCCEEDED) << end.DebugString() << Logs();
    Watched w = Watch(survivor, name);
    ExpectInOrderOnce(w.events, name);
    EXPECT_EQ(Entered(w.events, v1::JOB_STATE_SUCCEEDED), 1) << name;
  }
  // The worker of the killed replica reached another one in time: its job
  // kept its lease.
  const v1::Job first = WaitDone(survivor, jobs[0]);
  EXPECT_EQ(first.attempt(), 1) << "the job was leased again after the replica died";
  v1::ListJobsResponse all;
  ASSERT_TRUE(survivor.api().ListJobs(Ctx().get(), {}, &all).ok());
  int ours = 0;
  for (const v1::Job& j : all.jobs()) {
    ours += std::find(jobs.begin(), jobs.end(), j.name()) != jobs.end();
  }
  EXPECT_EQ(ours, 4);

  // Back: it finds the others live and leaves their leases alone.
  fronts_[victim]->Restart();
  EXPECT_NE(fronts_[victim]->process().Log().find("held leases left as they are"),
            std::string::npos)
      << fronts_[victim]->process().Log();
  EXPECT_TRUE(WaitWorkers(2)) << Logs();
}

// The worker and the replica that leased it the job die together: the
// other replicas see the lease lapse and queue the job again, and another
// worker finishes it (the second attempt); the dead worker's attempt is
// fenced off.
TEST_F(ReplicasTest, ALeaseLapsesWhenItsWorkerAndReplicaDieTogether) {
  ASSERT_TRUE(WaitWorkers(2)) << Logs();
  absl::StatusOr<v1::Job> job = Adapt(*fronts_[2], SmallJob(40, "orphaned"));
  ASSERT_TRUE(job.ok()) << job.status();
  const v1::Job running = WaitUntil(
      *fronts_[2], job->name(), [](const v1::Job& j) { return j.progress().step() >= 2; },
      absl::Seconds(60));
  ASSERT_EQ(running.state(), v1::JOB_STATE_RUNNING) << running.DebugString();
  const int victim = running.worker() == "workers/w0" ? 0 : 1;
  const std::string worker = victim == 0 ? "w0" : "w1";
  (*workers_)[worker]->Signal(SIGKILL);
  fronts_[victim]->Kill();
  (*workers_)[worker]->Wait(absl::Seconds(10));
  workers_->erase(worker);

  const v1::Job end = WaitDone(*fronts_[2], job->name(), absl::Seconds(150));
  EXPECT_EQ(end.state(), v1::JOB_STATE_SUCCEEDED) << end.DebugString() << Logs();
  EXPECT_EQ(end.attempt(), 2);
  EXPECT_EQ(end.failed_attempts(), 1);
  Watched w = Watch(*fronts_[2], job->name());
  ExpectInOrderOnce(w.events, job->name());
  EXPECT_EQ(Entered(w.events, v1::JOB_STATE_RUNNING), 2);
  EXPECT_EQ(Entered(w.events, v1::JOB_STATE_SUCCEEDED), 1);
  fronts_[victim]->Restart();
}

}  // namespace
}  // namespace restyle::testing
