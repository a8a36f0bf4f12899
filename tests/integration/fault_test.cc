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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <sqlite3.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/postgres_server.h"
#include "tests/integration/service_fixture.h"

namespace restyle::testing {
namespace {


// a learnt that its lease had moved on, from a heartbeat ("the lease is
// lost") or from a refused report (LEASE_LOST); waits up to `patience`.
bool WaitFenced(Process& worker, absl::Duration patience) {
  auto fenced = [&] {
    const std::string log = worker.Log();
    return log.find("the lease is lost") != std::string::npos || log.find("LEASE_LOST") != std::string::npos;
  };
  for (const absl::Time until = absl::Now() + patience; !fenced() && absl::Now() < until;) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  return fenced();
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
  std::map<std::string, int> kills_at;
  for (int round = 0; round < rounds; ++round) {
    const Point point = static_cast<Point>(std::uniform_int_distribution<int>(0, 4)(random));
    const int step = std::uniform_int_distribution<int>(1, kIterations)(random);
    auto worker = StartWorker(front, absl::StrCat("w", round));
    // Kill it when its job reaches the point (or when it has nothing left).
    const absl::Time until = absl::Now() + absl::Seconds(60);
    std::optional<v1::Job> victim;
    // One pass over the jobs per poll: this worker's job at the point, or
    // whether any job is left at all.
    for (bool left = true; left && !victim && absl::Now() < until;) {
      left = false;
      for (const std::string& name : jobs) {
        absl::StatusOr<v1::Job> j = GetJob(front, name);
        if (!j.ok()) continue;
        left = left || (j->state() != v1::JOB_STATE_SUCCEEDED && j->state() != v1::JOB_STATE_FAILED);
        if (j->worker() == absl::StrCat("workers/w", round) && Reached(*j, point, step)) {
          victim = *j;
          break;
        }
      }
      if (!victim) absl::SleepFor(absl::Milliseconds(5));
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
  // a learnt that its lease had moved on and stopped without a result.
  EXPECT_TRUE(WaitFenced(*a, absl::Seconds(20))) << a->Log();
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

TEST_F(FaultTest, AFrontKilledDuringProgressAndUploadsLosesNothing) {
  const int seed = EnvInt("RESTYLE_FAULT_SEED", 1);
  std::mt19937 random(seed + 1);
  auto front = std::make_unique<Front>(root_ + "/front");
  auto worker = StartWorker(*front, "w1");
  ASSERT_TRUE(WaitServing(*front)) << worker->Log();
  std::vector<std::string> jobs;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<v1::Job> j = Adapt(*front, SmallJob(60, absl::StrCat("style ", i)));
    ASSERT_TRUE(j.ok()) << j.status();
    jobs.push_back(j->name());
  }
  // Four kills at seeded moments while the jobs train, report progress and
  // upload previews, checkpoints and results; the worker trains on alone
  // and reconnects to each new front.
  for (int kill = 0; kill < 4; ++kill) {
    absl::SleepFor(absl::Milliseconds(std::uniform_int_distribution<int>(200, 1500)(random)));
    front->Kill();
    absl::SleepFor(absl::Milliseconds(std::uniform_int_distribution<int>(0, 500)(random)));
    front->Restart();
  }
  for (const std::string& name : jobs) {
    const v1::Job end = WaitDone(*front, name, absl::Seconds(120));
    EXPECT_EQ(end.state(), v1::JOB_STATE_SUCCEEDED) << end.DebugString() << worker->Log();
  }
  worker->Stop();
  front->Terminate();
  std::string report;
  EXPECT_EQ(CheckDataDir(front->data_dir(), &report), 0) << report;
  std::printf("%s", report.c_str());
}

TEST_F(FaultTest, ACorruptedArtifactIsReportedAndTheRestKeepsWorking) {
  Front front(root_ + "/front");
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front));
  absl::StatusOr<v1::Job> a = Adapt(front, SmallJob(4, "ukiyo-e"));
  absl::StatusOr<v1::Job> b = Adapt(front, SmallJob(4, "sketch"));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(WaitDone(front, a->name()).state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(WaitDone(front, b->name()).state(), v1::JOB_STATE_SUCCEEDED);
  // Flip one byte of a's generator delta on the front's disk.
  std::string delta;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(front.data_dir() + "/artifacts/" + a->name().substr(5))) {
    if (entry.path().filename().string().find("delta") != std::string::npos) delta = entry.path();
  }
  ASSERT_FALSE(delta.empty());
  {
    std::fstream f(delta, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  // Generate from it fails with DATA_LOSS naming the artifact; b still works.
  auto generate = [&](const std::string& job) {
    v1::GenerateRequest r;
    r.set_generator("generators/" + job.substr(5));
    r.set_count(2);
    auto c = Ctx(absl::Seconds(30));
    auto reader = front.api().Generate(c.get(), r);
    v1::GenerateResponse image;
    int images = 0;
    while (reader->Read(&image)) ++images;
    grpc::Status s = reader->Finish();
    return std::make_pair(s, images);
  };
  const auto [broken, none] = generate(a->name());
  EXPECT_EQ(broken.error_code(), grpc::StatusCode::DATA_LOSS) << broken.error_message();
  EXPECT_NE(broken.error_message().find("sha256"), std::string::npos) << broken.error_message();
  EXPECT_EQ(none, 0);
  const auto [fine, two] = generate(b->name());
  EXPECT_TRUE(fine.ok()) << fine.error_message();
  EXPECT_EQ(two, 2);
  worker->Stop();
  front.Terminate();
  // --check names exactly that artifact.
  std::string report;
  EXPECT_EQ(CheckDataDir(front.data_dir(), &report), 1) << report;
  EXPECT_NE(report.find(a->name()), std::string::npos) << report;
  EXPECT_NE(report.find("1 problem(s)"), std::string::npos) << report;
}

TEST_F(FaultTest, ACorruptedModelFileStopsOnlyItsWorker) {
  Front front(root_ + "/front");
  // A model directory whose generator file is not safetensors.
  const std::string models = root_ + "/models";
  std::filesystem::create_directories(models);
  std::ofstream(models + "/manifest.json")
      << R"({"generators": [{"id": "broken-256", "file": "g.safetensors", "source_text": "photo"}],)"
      << R"( "clip": [{"file": "c.safetensors", "weight": 1.0}]})";
  std::ofstream(models + "/g.safetensors") << std::string(64, '\x7f') << "not safetensors";
  std::ofstream(models + "/c.safetensors") << "neither";
  auto broken = StartWorker(front, "broken", {"--models", models});
  EXPECT_NE(broken->Wait(absl::Seconds(30)).value_or(0), 0) << "a worker with a corrupt model must not start";
  EXPECT_NE(broken->Log().find("c.safetensors: truncated"), std::string::npos) << broken->Log();
  // The front and a healthy worker carry on.
  auto healthy = StartWorker(front, "healthy");
  ASSERT_TRUE(WaitServing(front)) << healthy->Log();
  absl::StatusOr<v1::Job> job = Adapt(front, SmallJob(2));
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(WaitDone(front, job->name()).state(), v1::JOB_STATE_SUCCEEDED);
  healthy->Stop();
}


// A TCP proxy on loopback in front of the front's worker port that can
// stall: while cut, no byte moves either way and new connections wait, as
// when a network drops packets (no reset reaches either side).
class StallingProxy {
 public:
  explicit StallingProxy(int upstream_port) : upstream_port_(upstream_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listen_fd_, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    threads_.emplace_back([this] { AcceptLoop(); });
  }
  ~StallingProxy() {
    stop_ = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : fds_) shutdown(fd, SHUT_RDWR);
    }
    shutdown(listen_fd_, SHUT_RDWR);
    for (std::thread& t : threads_) t.join();
    for (int fd : fds_) close(fd);
    close(listen_fd_);
  }
  int port() const { return port_; }
  void Cut(bool on) { cut_ = on; }
  // While on, every byte read either way is thrown away (a black hole that
  // keeps the connections open: what is sent meanwhile is lost).
  void Drop(bool on) { drop_ = on; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) continue;
      while (cut_ && !stop_) absl::SleepFor(absl::Milliseconds(10));
      const int upstream = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(upstream_port_));
      if (connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(client);
        close(upstream);
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      fds_.push_back(client);
      fds_.push_back(upstream);
      threads_.emplace_back([this, client, upstream] { Pump(client, upstream); });
      threads_.emplace_back([this, client, upstream] { Pump(upstream, client); });
    }
  }
  void Pump(int from, int to) {
    char buffer[16384];
    while (!stop_) {
      pollfd p{from, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = read(from, buffer, sizeof(buffer));
      if (n <= 0) {
        shutdown(to, SHUT_WR);
        return;
      }
      while (cut_ && !stop_) absl::SleepFor(absl::Milliseconds(10));
      if (drop_) continue;
      for (ssize_t done = 0; done < n && !stop_;) {
        const ssize_t w = write(to, buffer + done, static_cast<size_t>(n - done));
        if (w <= 0) return;
        done += w;
      }
    }
  }

  const int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> cut_{false}, drop_{false}, stop_{false};
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<int> fds_;
};

// A worker behind the proxy, training a job of `stage2_iterations` steps,
// when stage 2 has begun.
struct CutSetup {
  std::unique_ptr<StallingProxy> proxy;
  std::unique_ptr<Process> worker;
  std::string job;
};
CutSetup StartJobBehindAProxy(Front& front, int stage2_iterations) {
  CutSetup c;
  c.proxy = std::make_unique<StallingProxy>(front.ports().worker);
  c.worker = StartWorkerVia(front, absl::StrCat("127.0.0.1:", c.proxy->port()), "wa");
  EXPECT_TRUE(WaitServing(front)) << c.worker->Log();
  v1::AdaptRequest request = SmallJob(4);
  request.mutable_spec()->mutable_settings()->mutable_stage2()->set_iterations(stage2_iterations);
  absl::StatusOr<v1::Job> job = Adapt(front, request);
  EXPECT_TRUE(job.ok()) << job.status();
  if (!job.ok()) return c;
  c.job = job->name();
  WaitUntil(front, c.job, [](const v1::Job& j) {
    return j.progress().stage() == v1::JOB_STAGE_FINE_TUNING_GENERATOR && j.progress().step() >= 3;
  });
  return c;
}

TEST_F(FaultTest, AShortNetworkCutBetweenWorkerAndFrontLetsTheJobGoOn) {
  Front front(root_ + "/front");
  CutSetup c = StartJobBehindAProxy(front, 200);
  ASSERT_FALSE(c.job.empty());
  c.proxy->Cut(true);
  absl::SleepFor(absl::Milliseconds(1000));  // half the lease TTL (2 s)
  c.proxy->Cut(false);
  const v1::Job end = WaitDone(front, c.job, absl::Seconds(120));
  EXPECT_EQ(end.state(), v1::JOB_STATE_SUCCEEDED) << end.DebugString();
  EXPECT_EQ(end.attempt(), 1) << "a cut shorter than the lease moves nothing";
  c.worker->Stop();
  front.Terminate();
  std::string report;
  EXPECT_EQ(CheckDataDir(front.data_dir(), &report), 0) << report;
}

TEST_F(FaultTest, ALongNetworkCutMovesTheJobAndTheCutOffWorkerIsFenced) {
  Front front(root_ + "/front");
  CutSetup c = StartJobBehindAProxy(front, 300);
  ASSERT_FALSE(c.job.empty());
  c.proxy->Cut(true);
  auto b = StartWorker(front, "wb");  // on the front's side of the cut
  const v1::Job moved = WaitUntil(front, c.job, [](const v1::Job& j) {
    return j.attempt() == 2 && j.state() == v1::JOB_STATE_RUNNING;
  });
  EXPECT_EQ(moved.worker(), "workers/wb");
  absl::SleepFor(absl::Seconds(1));
  c.proxy->Cut(false);  // wa's reports arrive late, for a lease that moved on
  const v1::Job end = WaitDone(front, c.job, absl::Seconds(120));
  EXPECT_EQ(end.state(), v1::JOB_STATE_SUCCEEDED) << end.DebugString();
  EXPECT_EQ(end.attempt(), 2);
  EXPECT_TRUE(WaitFenced(*c.worker, absl::Seconds(30))) << c.worker->Log();
  b->Stop();
  c.worker->Stop();
  front.Terminate();
  std::string report;
  EXPECT_EQ(CheckDataDir(front.data_dir(), &report), 0) << report;
}

// The front's data directory on a small tmpfs (needs root; skipped
// without it, outside CI).
TEST_F(FaultTest, AFullDiskKeepsJobsWaitingAndDamagesNothing) {
  const std::string data = root_ + "/front";
  std::filesystem::create_directories(data);
  Process mount("mount", {"/bin/mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", data}, root_ + "/mount.log");
  if (mount.Wait(absl::Seconds(10)).value_or(-1) != 0) {
    if (RunningInCi()) FAIL() << "CI=true, and a tmpfs cannot be mounted (needs root): " << mount.Log();
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root): " << mount.Log();
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { std::system(("/bin/umount -l " + dir).c_str()); }
  } unmount{data};
  Front front(data);
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front));
  // Jobs until one cannot run: the front accepts it (or refuses it with
  // DISK_FULL), keeps it QUEUED, and says why in its log.
  std::vector<std::string> succeeded;
  std::string stuck;
  bool refused = false;
  for (int i = 0; i < 40 && stuck.empty() && !refused; ++i) {
    v1::Job job;
    const grpc::Status s = front.api().Adapt(Ctx().get(), SmallJob(4, absl::StrCat("style ", i)), &job);
    if (!s.ok()) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
      EXPECT_EQ(ReasonOf(s), "DISK_FULL") << s.error_message();
      refused = true;
      continue;
    }
    v1::Job end = job;  // (not WaitUntil: that a job waits is what this looks for)
    for (const absl::Time until = absl::Now() + absl::Seconds(15); absl::Now() < until;) {
      absl::StatusOr<v1::Job> now = GetJob(front, job.name());
      if (now.ok()) end = *now;
      if (end.state() == v1::JOB_STATE_SUCCEEDED || end.state() == v1::JOB_STATE_FAILED) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    if (end.state() == v1::JOB_STATE_SUCCEEDED) {
      succeeded.push_back(end.name());
    } else {
      EXPECT_NE(end.state(), v1::JOB_STATE_FAILED) << "a full disk must not fail an accepted job: " << end.DebugString();
      stuck = end.name();
    }
  }
  std::printf("%zu jobs fitted in 6 MB; then %s\n", succeeded.size(),
              refused ? "a create was refused (DISK_FULL)" : (stuck + " waited").c_str());
  ASSERT_TRUE(refused || !stuck.empty()) << "the disk never filled: this test saw nothing";
  ASSERT_GE(succeeded.size(), 1u);
  if (!stuck.empty()) {
    EXPECT_NE(front.process().Log().find("DISK_FULL"), std::string::npos) << "the front's log must say why";
  }
  // Reads go on, and what was stored is whole.
  for (const std::string& name : succeeded) {
    absl::StatusOr<v1::Job> j = GetJob(front, name);
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_EQ(j->state(), v1::JOB_STATE_SUCCEEDED);
  }
  std::string report;
  EXPECT_EQ(CheckDataDir(data, &report), 0) << report;
  // The operator grows the volume: the waiting job runs, nothing was lost.
  Process grow("mount", {"/bin/mount", "-o", "remount,size=32m", data}, root_ + "/grow.log");
  ASSERT_EQ(grow.Wait(absl::Seconds(10)).value_or(-1), 0) << grow.Log();
  if (!stuck.empty()) {
    EXPECT_EQ(WaitDone(front, stuck, absl::Seconds(90)).state(), v1::JOB_STATE_SUCCEEDED) << front.process().Log();
  }
  absl::StatusOr<v1::Job> again = Adapt(front, SmallJob(4, "after"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(WaitDone(front, again->name()).state(), v1::JOB_STATE_SUCCEEDED);
  worker->Stop();
  front.Terminate();
  EXPECT_EQ(CheckDataDir(data, &report), 0) << report;
  std::printf("%s", report.c_str());
}

// A job of `iterations` steps per stage, once its worker is training it.
v1::Job TrainingJob(Front& front, int iterations) {
  absl::StatusOr<v1::Job> job = Adapt(front, SmallJob(iterations));
  EXPECT_TRUE(job.ok()) << job.status();
  if (!job.ok()) return {};
  return WaitUntil(front, job->name(), [](const v1::Job& j) {
    return j.state() == v1::JOB_STATE_RUNNING && j.progress().step() > 0;
  });
}

// The end of a job the store failed under while it trained: a store error
// is not a lost lease, so the job finishes in its first attempt and its
// worker never stopped.
void ExpectFinishedInItsFirstAttempt(Front& front, const v1::Job& job, Process& worker) {
  const v1::Job end = WaitDone(front, job.name(), absl::Seconds(180));
  EXPECT_EQ(end.state(), v1::JOB_STATE_SUCCEEDED) << end.DebugString() << front.process().Log();
  EXPECT_EQ(end.attempt(), 1) << "the store's failure cost the job an attempt: " << end.DebugString();
  EXPECT_EQ(end.failed_attempts(), 0) << end.DebugString();
  EXPECT_EQ(worker.Log().find("the lease is lost"), std::string::npos) << worker.Log();
}

// PostgreSQL stopped for 2 s under a 6 s lease while a job trains: renewals
// fail with STORE_UNAVAILABLE meanwhile, the worker goes on as with an
// unreachable front, and the lease is renewed once the database is back.
TEST_F(FaultTest, APostgresOutageShorterThanTheLeaseCostsNoAttempt) {
  absl::StatusOr<PostgresServer*> pg = SharedPostgres();
  RESTYLE_REQUIRE_POSTGRES(pg);
  ASSERT_TRUE((*pg)->CreateDatabase("outage").ok());
  Front front(root_ + "/front", {"--database-url", (*pg)->Url("outage"), "--lease-ttl", "6"});
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front)) << worker->Log();
  const v1::Job job = TrainingJob(front, 300);
  ASSERT_EQ(job.state(), v1::JOB_STATE_RUNNING) << job.DebugString();
  ASSERT_TRUE((*pg)->Stop().ok());
  absl::SleepFor(absl::Seconds(2));
  ASSERT_TRUE((*pg)->Restart().ok()) << (*pg)->Log();
  ExpectFinishedInItsFirstAttempt(front, job, *worker);
  // A renewal did fail meanwhile: this test saw the outage.
  EXPECT_NE(worker->Log().find("renewing the lease on"), std::string::npos) << worker->Log();
  worker->Stop();
}

// The same under SQLite: another process holds the database's write lock
// for 21 s, past the front's 5 s busy timeout, under a 40 s lease. The
// front's store thread fails one write every 5 s meanwhile (STORE_BUSY), so
// within 21 s every call queued when the lock was taken has failed, a
// lease renewal among them (as with a full disk or an I/O error: a store
// that cannot write).
TEST_F(FaultTest, ASqliteDatabaseLockedPastItsBusyTimeoutCostsNoAttempt) {
  Front front(root_ + "/front", {"--lease-ttl", "40"});
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front)) << worker->Log();
  const v1::Job job = TrainingJob(front, 300);
  ASSERT_EQ(job.state(), v1::JOB_STATE_RUNNING) << job.DebugString();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((front.data_dir() + "/restyle.db").c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);  // the front may be writing this moment
  ASSERT_EQ(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  absl::SleepFor(absl::Seconds(21));
  EXPECT_EQ(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  ExpectFinishedInItsFirstAttempt(front, job, *worker);
  // A renewal did fail meanwhile: this test saw what it is about.
  EXPECT_NE(worker->Log().find("renewing the lease on"), std::string::npos) << worker->Log();
  EXPECT_NE(worker->Log().find("STORE_BUSY"), std::string::npos) << worker->Log();
  worker->Stop();
}

// The temporary file of an upload a crash cut short is removed when the
// front starts again (not only counted by --check).
TEST_F(FaultTest, TemporaryFilesOfInterruptedUploadsAreRemovedAtStart) {
  const std::string data = root_ + "/front";
  const std::string attempt = data + "/artifacts/jobabc/attempt-1";
  std::filesystem::create_directories(attempt);
  std::ofstream(attempt + "/generator.safetensors.tmp-x1y2z3ab") << "half an upload";
  Front front(data);
  EXPECT_FALSE(std::filesystem::exists(attempt + "/generator.safetensors.tmp-x1y2z3ab"));
  EXPECT_NE(front.process().Log().find("removed 1 temporary file(s)"), std::string::npos)
      << front.process().Log();
  front.Terminate();
  std::string report;
  CheckDataDir(data, &report);
  EXPECT_NE(report.find("0 temporary file(s)"), std::string::npos) << report;
}

// Two replicas on PostgreSQL over TCP, one of them (b) through a proxy that
// turns into a black hole: every byte between b and the database is lost
// while the connections stay open (a partition, a NAT that forgot the flow).
// b's calls fail within seconds (STORE_UNAVAILABLE), not after TCP's
// minutes; the job, run through a, ends meanwhile, so b never hears of its
// end; once the path is back, b's watcher still reaches the job's end.
TEST_F(FaultTest, AReplicaCutOffFromItsDatabaseFailsFastAndItsWatcherStillSeesTheEnd) {
  PostgresServer::Options options;
  options.tcp = true;
  absl::StatusOr<std::unique_ptr<PostgresServer>> started = PostgresServer::Start(options);
  absl::StatusOr<PostgresServer*> pg =
      started.ok() ? absl::StatusOr<PostgresServer*>(started->get())
                   : absl::StatusOr<PostgresServer*>(started.status());
  RESTYLE_REQUIRE_POSTGRES(pg);
  ASSERT_TRUE((*pg)->CreateDatabase("cut").ok());
  StallingProxy proxy((*pg)->port());
  const std::string data = root_ + "/data";
  Front a(data, {"--database-url", (*pg)->TcpUrl("cut", (*pg)->port()), "--lease-ttl", "6"}, {},
          "a");
  Front b(data, {"--database-url", (*pg)->TcpUrl("cut", proxy.port()), "--lease-ttl", "6"}, {},
          "b");
  auto worker = StartWorker(a, "w1");
  ASSERT_TRUE(WaitServing(a)) << worker->Log();
  const v1::Job job = TrainingJob(a, 100);
  ASSERT_EQ(job.state(), v1::JOB_STATE_RUNNING) << job.DebugString();

  // b's watcher, following the job from before the cut.
  std::vector<v1::JobEvent> events;
  grpc::Status watched;
  std::thread watcher([&] {
    v1::WatchJobRequest request;
    request.set_name(job.name());
    auto context = Ctx(absl::Seconds(180));
    auto reader = b.api().WatchJob(context.get(), request);
    v1::JobEvent e;
    while (reader->Read(&e)) events.push_back(e);
    watched = reader->Finish();
  });
  absl::SleepFor(absl::Seconds(1));

  proxy.Drop(true);
  const absl::Time cut = absl::Now();
  v1::GetJobRequest get;
  get.set_name(job.name());
  v1::Job ignored;
  const grpc::Status during = b.api().GetJob(Ctx(absl::Seconds(120)).get(), get, &ignored);
  const absl::Duration took = absl::Now() - cut;
  std::printf("a GetJob on the cut-off replica: %s after %s\n", ReasonOf(during).c_str(),
              absl::FormatDuration(took).c_str());
  EXPECT_EQ(during.error_code(), grpc::StatusCode::UNAVAILABLE) << during.error_message();
  EXPECT_EQ(ReasonOf(during), "STORE_UNAVAILABLE") << during.error_message();
  EXPECT_LT(took, absl::Seconds(20));

  // The job ends through a while b hears nothing.
  EXPECT_EQ(WaitDone(a, job.name(), absl::Seconds(120)).state(), v1::JOB_STATE_SUCCEEDED)
      << worker->Log();
  absl::SleepFor(absl::Seconds(1));
  proxy.Drop(false);
  const absl::Time healed = absl::Now();
  watcher.join();
  std::printf("b's watcher ended %s after the path came back, with %zu events\n",
              absl::FormatDuration(absl::Now() - healed).c_str(), events.size());
  EXPECT_TRUE(watched.ok()) << watched.error_message();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().job().state(), v1::JOB_STATE_SUCCEEDED) << events.back().DebugString();
  EXPECT_LT(absl::Now() - healed, absl::Seconds(60));
  worker->Stop();
}

}  // namespace
}  // namespace restyle::testing
