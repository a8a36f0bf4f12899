// Faults with real processes (docs/reliability.md): workers killed with
// SIGKILL at seeded random points of their jobs, a worker stopped with
// SIGSTOP past its lease and woken again, the front killed while clients
// create jobs. After each: every accepted job ends SUCCEEDED, or FAILED
// with a reason once its attempts are spent; none is lost, none completes
// twice, a create retried with its request_id never makes two, and
// `restyled --check` finds every artifact whole, of its recorded digest.
//
// RESTYLE_FAULT_SEED picks the random points (printed, so a failure can be
// replayed); RESTYLE_FAULT_ROUNDS sets the number of kills (default 6;
// docs/reliability.md runs 20).
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/service_fixture.h"

namespace restyle::testing {
namespace {

int EnvInt(const char* name, int fallback) {
  int value = fallback;
  const char* text = std::getenv(name);
  if (text != nullptr && !absl::SimpleAtoi(text, &value)) value = fallback;
  return value;
}

// restyled --check on a data directory: its exit status, the output in `out`.
int CheckDataDir(const std::string& data_dir, std::string* out) {
  Process check("restyled --check", {RestyledBinary(), "--check", "--data-dir", data_dir},
                data_dir + "/../check.log");
  const int status = check.Wait(absl::Seconds(60)).value_or(-1);
  *out = check.Log();
  return status;
}

// Where in a job a worker is killed.
enum class Point { kLoading, kStage1, kStage2Start, kStage2, kExporting };
const char* PointName(Point p) {
  switch (p) {
    case Point::kLoading: return "loading";
    case Point::kStage1: return "stage 1";
    case Point::kStage2Start: return "the stage-1 checkpoint upload";
    case Point::kStage2: return "stage 2";
    case Point::kExporting: return "exporting and the result upload";
  }
  return "?";
}

bool Reached(const v1::Job& j, Point p, int step) {
  if (j.state() != v1::JOB_STATE_RUNNING) return false;
  const v1::JobProgress& g = j.progress();
  switch (p) {
    case Point::kLoading: return true;  // leased: loading or later
    case Point::kStage1: return g.stage() == v1::JOB_STAGE_TRAINING_MAPPER && g.step() >= step;
    case Point::kStage2Start: return g.stage() >= v1::JOB_STAGE_FINE_TUNING_GENERATOR;
    case Point::kStage2: return g.stage() == v1::JOB_STAGE_FINE_TUNING_GENERATOR && g.step() >= step;
    case Point::kExporting: return g.stage() == v1::JOB_STAGE_EXPORTING;
  }
  return false;
}

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override { root_ = FreshDir(::testing::UnitTest::GetInstance()->current_test_info()->name()); }
  std::string root_;
};

TEST_F(FaultTest, WorkersKilledAtRandomPointsLoseNoJobAndFinishNoneTwice) {
  const int seed = EnvInt("RESTYLE_FAULT_SEED", 1);
  const int rounds = EnvInt("RESTYLE_FAULT_ROUNDS", 6);
  std::printf("seed %d, %d kills (RESTYLE_FAULT_SEED, RESTYLE_FAULT_ROUNDS)\n", seed, rounds);
  std::mt19937 random(seed);
  Front front(root_ + "/front");
  // Enough jobs that every kill finds one running; each is a few seconds.
  constexpr int kIterations = 40;
  std::vector<std::string> jobs;
  {
    auto registrar = StartWorker(front, "registrar");
    ASSERT_TRUE(WaitServing(front)) << registrar->Log();
    registrar->Stop();
  }
  for (int i = 0; i < rounds + 2; ++i) {
    absl::StatusOr<v1::Job> j = Adapt(front, SmallJob(kIterations, absl::StrCat("style ", i)));
    ASSERT_TRUE(j.ok()) << j.status();
    jobs.push_back(j->name());
  }
  auto running_job = [&]() -> std::optional<v1::Job> {
    for (const std::string& name : jobs) {
      absl::StatusOr<v1::Job> j = GetJob(front, name);
      if (j.ok() && j->state() == v1::JOB_STATE_RUNNING) return *j;
    }
    return std::nullopt;
  };
  std::map<std::string, int> kills_at;
  for (int round = 0; round < rounds; ++round) {
    const Point point = static_cast<Point>(std::uniform_int_distribution<int>(0, 4)(random));
    const int step = std::uniform_int_distribution<int>(1, kIterations)(random);
    auto worker = StartWorker(front, absl::StrCat("w", round));
    // Kill it when its job reaches the point (or when it has nothing left).
    const absl::Time until = absl::Now() + absl::Seconds(60);
    std::optional<v1::Job> victim;
    while (absl::Now() < until) {
      victim = running_job();
      if (victim && victim->worker() == absl::StrCat("workers/w", round) && Reached(*victim, point, step)) break;
      victim.reset();
      bool all_done = true;
      for (const std::string& name : jobs) {
        absl::StatusOr<v1::Job> j = GetJob(front, name);
        all_done = all_done && j.ok() && (j->state() == v1::JOB_STATE_SUCCEEDED || j->state() == v1::JOB_STATE_FAILED);
      }
      if (all_done) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    worker->Signal(SIGKILL);
    worker->Wait(absl::Seconds(10));
    if (victim) {
      ++kills_at[PointName(point)];
      std::printf("round %d: killed w%d at %s (%s, attempt %d, %s step %lld)\n", round, round, PointName(point),
                  victim->name().c_str(), victim->attempt(), v1::JobStage_Name(victim->progress().stage()).c_str(),
                  static_cast<long long>(victim->progress().step()));
    } else {
      std::printf("round %d: no job left to kill w%d in\n", round, round);
    }
  }
  // One worker finishes what is left.
  auto last = StartWorker(front, "last");
  int succeeded = 0, failed = 0;
  for (const std::string& name : jobs) {
    const v1::Job end = WaitDone(front, name, absl::Seconds(180));
    ASSERT_TRUE(end.state() == v1::JOB_STATE_SUCCEEDED || end.state() == v1::JOB_STATE_FAILED)
        << name << " did not end: " << end.DebugString() << last->Log();
    if (end.state() == v1::JOB_STATE_FAILED) {
      ++failed;
      EXPECT_FALSE(end.error().reason().empty()) << end.DebugString();
      EXPECT_EQ(end.failed_attempts(), end.max_attempts()) << end.DebugString();
    } else {
      ++succeeded;
      EXPECT_LT(end.failed_attempts(), end.max_attempts()) << end.DebugString();
    }
  }
  std::printf("%zu jobs: %d succeeded, %d failed after their attempts; kills:", jobs.size(), succeeded, failed);
  for (const auto& [where, n] : kills_at) std::printf(" %s %d,", where.c_str(), n);
  std::printf("\n");
  last->Stop();
  front.Terminate();
  std::string report;
  EXPECT_EQ(CheckDataDir(front.data_dir(), &report), 0) << report;
  std::printf("%s", report.c_str());
}

TEST_F(FaultTest, AStoppedWorkerLosesItsLeaseAndIsFencedWhenItWakes) {
  Front front(root_ + "/front");
  auto a = StartWorker(front, "wa");
  ASSERT_TRUE(WaitServing(front));
  v1::AdaptRequest request = SmallJob(4);
  request.mutable_spec()->mutable_settings()->mutable_stage2()->set_iterations(400);
  absl::StatusOr<v1::Job> job = Adapt(front, request);
  ASSERT_TRUE(job.ok());
  WaitUntil(front, job->name(), [](const v1::Job& j) {
    return j.progress().stage() == v1::JOB_STAGE_FINE_TUNING_GENERATOR && j.progress().step() >= 3;
  });
  a->Signal(SIGSTOP);  // alive, silent
  auto b = StartWorker(front, "wb");
  const v1::Job moved = WaitUntil(front, job->name(), [](const v1::Job& j) {
    return j.attempt() == 2 && j.state() == v1::JOB_STATE_RUNNING;
  });
  EXPECT_EQ(moved.worker(), "workers/wb");
  EXPECT_EQ(moved.error().reason(), "LEASE_EXPIRED");
  a->Signal(SIGCONT);  // it wakes mid-step and reports what it did
  const v1::Job end = WaitDone(front, job->name(), absl::Seconds(120));
  EXPECT_EQ(end.state(), v1::JOB_STATE_SUCCEEDED) << end.DebugString();
  EXPECT_EQ(end.attempt(), 2);
  // a learnt that its lease had moved on, from a heartbeat ("the lease is
  // lost") or from a refused report (LEASE_LOST), and stopped the job
  // without a result.
  auto fenced = [&] {
    const std::string log = a->Log();
    return log.find("the lease is lost") != std::string::npos || log.find("LEASE_LOST") != std::string::npos;
  };
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (!fenced() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_TRUE(fenced()) << a->Log();
  b->Stop();
  a->Stop();
  front.Terminate();
  std::string report;
  EXPECT_EQ(CheckDataDir(front.data_dir(), &report), 0) << report;
}

TEST_F(FaultTest, AFrontKilledWhileClientsCreateLosesNoAcknowledgedJobAndMakesNoneTwice) {
  const int seed = EnvInt("RESTYLE_FAULT_SEED", 1);
  std::mt19937 random(seed);
  auto front = std::make_unique<Front>(root_ + "/front");
  {
    auto registrar = StartWorker(*front, "registrar");
    ASSERT_TRUE(WaitServing(*front)) << registrar->Log();
    registrar->Stop();
  }
  // Clients create jobs, each with its request_id, retrying until the
  // front acknowledges it; the front is killed twice meanwhile.
  constexpr int kClients = 3, kJobsEach = 8;
  std::atomic<bool> stop{false};
  std::vector<std::map<std::string, std::string>> acknowledged(kClients);  // request id -> job
  std::mutex front_mu;
  auto stub = [&] {
    std::lock_guard<std::mutex> lock(front_mu);
    return v1::RestyleService::NewStub(grpc::CreateChannel(front->api_address(), grpc::InsecureChannelCredentials()));
  };
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kJobsEach && !stop; ++i) {
        v1::AdaptRequest request = SmallJob(2, absl::StrCat("client ", c, " job ", i));
        request.set_request_id(absl::StrCat("c", c, "-", i));
        const absl::Time until = absl::Now() + absl::Seconds(60);
        while (!stop && absl::Now() < until) {
          v1::Job job;
          const grpc::Status s = stub()->Adapt(Ctx(absl::Seconds(2)).get(), request, &job);
          if (s.ok()) {
            acknowledged[c][request.request_id()] = job.name();
            break;
          }
          absl::SleepFor(absl::Milliseconds(50));  // unreachable, or draining: retry the same request
        }
      }
    });
  }
  for (int kill = 0; kill < 2; ++kill) {
    absl::SleepFor(absl::Milliseconds(std::uniform_int_distribution<int>(100, 600)(random)));
    std::lock_guard<std::mutex> lock(front_mu);
    front->Kill();
    front->Restart();
  }
  for (std::thread& t : clients) t.join();
  stop = true;
  // Every acknowledged create is there, once; every request id made one job.
  v1::ListJobsRequest list;
  list.set_page_size(1000);
  v1::ListJobsResponse all;
  ASSERT_TRUE(front->api().ListJobs(Ctx().get(), list, &all).ok());
  std::map<std::string, int> by_name;
  for (const v1::Job& j : all.jobs()) ++by_name[j.name()];
  int acked = 0;
  for (const auto& client : acknowledged) {
    for (const auto& [request_id, name] : client) {
      ++acked;
      EXPECT_EQ(by_name[name], 1) << request_id << " -> " << name;
    }
  }
  EXPECT_EQ(acked, kClients * kJobsEach);
  EXPECT_EQ(all.jobs_size(), kClients * kJobsEach) << "a retried create made a second job";
  std::printf("%d creates acknowledged across 2 front kills, %d jobs stored\n", acked, all.jobs_size());
  // And they all run to the end on one worker.
  auto worker = StartWorker(*front, "w1");
  for (const v1::Job& j : all.jobs()) {
    EXPECT_EQ(WaitDone(*front, j.name(), absl::Seconds(120)).state(), v1::JOB_STATE_SUCCEEDED) << j.name();
  }
  worker->Stop();
  front->Terminate();
  std::string report;
  EXPECT_EQ(CheckDataDir(front->data_dir(), &report), 0) << report;
}

}  // namespace
}  // namespace restyle::testing
