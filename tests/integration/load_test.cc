// Load and soak with real processes (docs/reliability.md). Load: Generate
// clients (bench's restyle-load) and adaptation submissions at once for a
// fixed time against a front and two workers: no error but an explicit
// RESOURCE_EXHAUSTED, every accepted job succeeds, and the front's and the
// workers' memory stays bounded (sampled from /proc all along). Soak: many
// small jobs through front and worker restarts: every job ends once and the
// data directory passes `restyled --check`.
//
// RESTYLE_LOAD_SECONDS (default 20) and RESTYLE_SOAK_JOBS (default 60) make
// them longer (docs/reliability.md runs 120 s and 300 jobs).
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/service_fixture.h"

namespace restyle::testing {
namespace {


// VmRSS of a process in bytes (0 when it is gone).
int64_t ResidentBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    int64_t kb = 0;
    if (line.rfind("VmRSS:", 0) == 0 && absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::StripSuffix(absl::string_view(line).substr(6), "kB")), &kb)) {
      return kb * 1024;
    }
  }
  return 0;
}

TEST(LoadTest, GenerateAndAdaptTogetherStayBoundedAndLoseNothing) {
  const int seconds = EnvInt("RESTYLE_LOAD_SECONDS", 20);
  const std::string root = FreshDir("load");
  Front front(root + "/front");
  auto w1 = StartWorker(front, "w1");
  auto w2 = StartWorker(front, "w2");
  ASSERT_TRUE(WaitServing(front));

  // Memory of the three processes, every 250 ms.
  std::atomic<bool> done{false};
  std::map<std::string, std::vector<int64_t>> rss;
  std::thread sampler([&] {
    while (!done) {
      rss["front"].push_back(ResidentBytes(front.process().pid()));
      rss["w1"].push_back(ResidentBytes(w1->pid()));
      rss["w2"].push_back(ResidentBytes(w2->pid()));
      absl::SleepFor(absl::Milliseconds(250));
    }
  });
  // Adaptations: one every 400 ms; a full queue is an answer, not an error.
  std::vector<std::string> accepted;
  std::map<std::string, int> refused;
  std::thread submitter([&] {
    for (int i = 0; !done; ++i) {
      v1::Job job;
      const grpc::Status s = front.api().Adapt(Ctx().get(), SmallJob(6, absl::StrCat("load ", i)), &job);
      if (s.ok()) {
        accepted.push_back(job.name());
      } else {
        ++refused[absl::StrCat(s.error_code(), " ", ReasonOf(s))];
      }
      absl::SleepFor(absl::Milliseconds(400));
    }
  });
  // Generate: 8 closed-loop clients for the whole time.
  Process load("restyle-load",
               {RESTYLE_LOAD_BIN, "--server", front.api_address(), "--generator", "generators/demo",
                "--clients", "8", "--duration", std::to_string(seconds), "--seeds-per-request", "2"},
               root + "/load.log");
  const std::optional<int> status = load.Wait(absl::Seconds(seconds + 60));
  done = true;
  submitter.join();
  sampler.join();
  ASSERT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << load.Log();
  std::string last;
  {
    std::ifstream in(load.log_path());
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line[0] == '{') last = line;
    }
  }
  const nlohmann::json result = nlohmann::json::parse(last);
  for (const auto& [code, n] : result["errors"].items()) {
    EXPECT_EQ(code, "RESOURCE_EXHAUSTED") << n << " Generate calls failed with " << code;
  }
  EXPECT_GT(result["images_per_s"].get<double>(), 0);
  for (const auto& [why, n] : refused) {
    EXPECT_NE(why.find("QUEUE_FULL"), std::string::npos) << n << " Adapt calls refused: " << why;
  }
  // Every accepted job ends, and succeeds.
  for (const std::string& name : accepted) {
    EXPECT_EQ(WaitDone(front, name, absl::Seconds(180)).state(), v1::JOB_STATE_SUCCEEDED) << name;
  }
  // Memory: no growth from the first half of the run to the second beyond
  // 64 MB (caches warm up in the first), and the front well under 1 GB.
  std::printf("%d s: %.0f images/s, latency p50 %.1f ms p99 %.1f ms, %lld requests, errors %s; "
              "%zu adaptations accepted, %zu refusal kinds\n",
              seconds, result["images_per_s"].get<double>(), result["latency_ms"]["p50"].get<double>(),
              result["latency_ms"]["p99"].get<double>(), static_cast<long long>(result["requests_ok"].get<int64_t>()),
              result["errors"].dump().c_str(), accepted.size(), refused.size());
  for (const auto& [who, series] : rss) {
    ASSERT_GE(series.size(), 8u);
    const size_t half = series.size() / 2;
    const int64_t first = *std::max_element(series.begin(), series.begin() + static_cast<long>(half));
    const int64_t second = *std::max_element(series.begin() + static_cast<long>(half), series.end());
    std::printf("  %s RSS: max %.0f MB in the first half, %.0f MB in the second\n", who.c_str(),
                static_cast<double>(first) / (1 << 20), static_cast<double>(second) / (1 << 20));
    EXPECT_LE(second, first + (int64_t{64} << 20)) << who << "'s memory grows under steady load";
    if (who == "front") EXPECT_LT(second, int64_t{1} << 30);
  }
  w1->Stop();
  w2->Stop();
}

TEST(LoadTest, ASoakOfSmallJobsThroughRestartsKeepsEverythingConsistent) {
  const int jobs = EnvInt("RESTYLE_SOAK_JOBS", 60);
  const std::string root = FreshDir("soak");
  std::mt19937 random(EnvInt("RESTYLE_FAULT_SEED", 1));
  auto front = std::make_unique<Front>(root + "/front");
  auto worker = StartWorker(*front, "w0");
  ASSERT_TRUE(WaitServing(*front));
  std::vector<std::string> names;
  int restarts = 0;
  for (int i = 0; i < jobs; ++i) {
    v1::AdaptRequest request = SmallJob(2, absl::StrCat("soak ", i));
    request.set_request_id(absl::StrCat("soak-", i));
    // Retry through restarts with the same request id.
    for (int tries = 0;; ++tries) {
      v1::Job job;
      const grpc::Status s = front->api().Adapt(Ctx(absl::Seconds(5)).get(), request, &job);
      if (s.ok()) {
        if (names.empty() || names.back() != job.name()) names.push_back(job.name());
        break;
      }
      ASSERT_LT(tries, 100) << s.error_message();
      absl::SleepFor(absl::Milliseconds(100));
    }
    // Now and then, kill the front or the worker.
    const int dice = std::uniform_int_distribution<int>(0, 9)(random);
    if (dice == 0) {
      front->Kill();
      front->Restart();
      ++restarts;
    } else if (dice == 1) {
      worker->Signal(SIGKILL);
      worker->Wait(absl::Seconds(10));
      worker = StartWorker(*front, absl::StrCat("w", i + 1));
      ++restarts;
    }
  }
  int succeeded = 0, failed = 0;
  for (const std::string& name : names) {
    const v1::Job end = WaitDone(*front, name, absl::Seconds(240));
    succeeded += end.state() == v1::JOB_STATE_SUCCEEDED;
    failed += end.state() == v1::JOB_STATE_FAILED;
    EXPECT_TRUE(end.state() == v1::JOB_STATE_SUCCEEDED ||
                (end.state() == v1::JOB_STATE_FAILED && !end.error().reason().empty()))
        << end.DebugString();
  }
  EXPECT_EQ(static_cast<int>(names.size()), jobs) << "a request id made two jobs, or none";
  worker->Stop();
  front->Terminate();
  std::string report;
  EXPECT_EQ(CheckDataDir(front->data_dir(), &report), 0) << report;
  std::printf("%d jobs through %d restarts: %d succeeded, %d failed after their attempts; %s", jobs, restarts,
              succeeded, failed, report.c_str());
}

}  // namespace
}  // namespace restyle::testing
