// Metrics on live processes: the front's and a worker's /metrics pass
// `promtool check metrics`, their values move as a job runs and images are
// drawn, and every metric the Grafana dashboard and the manifests (alerts,
// autoscaling; deploy/) use is in those scrapes.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/integration/service_fixture.h"

namespace restyle::testing {
namespace {

// The value of the series `series` (name{labels} as written, labels sorted
// by name) in a scrape; -1 when absent.
double Value(const std::string& scrape, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (absl::StartsWith(line, series + " ")) return std::stod(std::string(line.substr(series.size() + 1)));
  }
  return -1;
}

// promtool check metrics on a scrape: "" when clean, else what it says.
std::string Promtool(const std::string& scrape, const std::string& dir) {
  const std::string in = dir + "/scrape.txt";
  std::ofstream(in) << scrape;
  Process p("promtool", {"/bin/sh", "-c", "promtool check metrics < " + in}, dir + "/promtool.log");
  const int status = p.Wait(absl::Seconds(60)).value_or(-1);
  return status == 0 && p.Log().empty() ? "" : absl::StrCat("status ", status, ": ", p.Log());
}

std::set<std::string> MetricNames(const std::string& scrape) {
  std::set<std::string> names;
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      if (parts.size() >= 3) names.insert(parts[2]);
    }
  }
  return names;
}

TEST(MetricsTest, LiveScrapesPassPromtoolMoveWithTheWorkAndCoverTheDashboard) {
  const std::string root = FreshDir("metrics");
  Front front(root + "/front");
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front));
  const int worker_port = WorkerMetricsPort(front, "w1");
  ASSERT_GT(worker_port, 0);
  std::string front_before;
  for (int i = 0; i < 50; ++i) {  // the gauges refresh every second
    front_before = HttpGet(front.ports().metrics, "/metrics");
    if (Value(front_before, "restyle_workers{state=\"idle\"}") == 1) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  const std::string worker_before = HttpGet(worker_port, "/metrics");
  ASSERT_FALSE(front_before.empty());
  ASSERT_FALSE(worker_before.empty());
  EXPECT_EQ(Promtool(front_before, root), "");
  EXPECT_EQ(Promtool(worker_before, root), "");
  EXPECT_EQ(Value(front_before, "restyle_jobs_created_total{method=\"ipl\"}"), 0);
  EXPECT_EQ(Value(front_before, "restyle_workers{state=\"idle\"}"), 1);

  absl::StatusOr<v1::Job> job = Adapt(front, SmallJob(5));
  ASSERT_TRUE(job.ok());
  ASSERT_EQ(WaitDone(front, job->name()).state(), v1::JOB_STATE_SUCCEEDED);
  v1::GenerateRequest gen;
  gen.set_generator("generators/" + job->name().substr(5));
  gen.set_count(6);
  auto context = Ctx(absl::Seconds(60));
  auto reader = front.api().Generate(context.get(), gen);
  v1::GenerateResponse image;
  while (reader->Read(&image)) {
  }
  ASSERT_TRUE(reader->Finish().ok());
  absl::SleepFor(absl::Milliseconds(2500));  // the gauges refresh every second, workers' by heartbeat

  const std::string front_after = HttpGet(front.ports().metrics, "/metrics");
  const std::string worker_after = HttpGet(worker_port, "/metrics");
  EXPECT_EQ(Promtool(front_after, root), "");
  EXPECT_EQ(Promtool(worker_after, root), "");
  EXPECT_EQ(Value(front_after, "restyle_jobs_created_total{method=\"ipl\"}"), 1);
  EXPECT_EQ(Value(front_after, "restyle_jobs_finished_total{method=\"ipl\",state=\"succeeded\"}"), 1);
  EXPECT_EQ(Value(front_after, "restyle_training_steps_total{stage=\"mapper\"}"), 5);
  EXPECT_EQ(Value(front_after, "restyle_training_steps_total{stage=\"generator\"}"), 5);
  EXPECT_EQ(Value(front_after, "restyle_job_stage_seconds_count{stage=\"generator\"}"), 1);
  EXPECT_EQ(Value(front_after, "restyle_images_generated_total"), 6);
  EXPECT_EQ(Value(front_after, "restyle_generation_seconds_count"), 1);
  EXPECT_GE(Value(front_after, "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Adapt\","
                               "grpc_service=\"restyle.v1.RestyleService\",grpc_type=\"unary\"}"),
            1);
  EXPECT_GE(Value(front_after, "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"ReportProgress\","
                               "grpc_service=\"restyle.worker.v1.WorkerService\",grpc_type=\"unary\"}"),
            1);
  EXPECT_EQ(Value(worker_after, "restyle_worker_training_steps_total{stage=\"generator\"}"), 5);
  EXPECT_EQ(Value(worker_after, "restyle_worker_jobs_total{outcome=\"succeeded\"}"), 1);
  EXPECT_EQ(Value(worker_after, "restyle_worker_images_generated_total"), 6);
  EXPECT_EQ(Value(worker_after, "restyle_generator_loads_total"), 1);
  EXPECT_EQ(Value(worker_after, "restyle_generators_resident"), 1);
  EXPECT_GT(Value(worker_after, "restyle_process_resident_memory_bytes"), 1 << 20);
  // No job, generator or text in any label.
  for (const std::string* scrape : {&front_after, &worker_after}) {
    EXPECT_EQ(scrape->find(job->name().substr(5)), std::string::npos);
    EXPECT_EQ(scrape->find("ukiyo"), std::string::npos);
  }

  // Every metric the dashboard queries exists.
  std::set<std::string> names = MetricNames(front_after);
  for (const std::string& n : MetricNames(worker_after)) names.insert(n);
  std::ifstream in(std::string(RESTYLE_SOURCE_DIR) + "/deploy/components/monitoring/restyle-dashboard.json");
  const nlohmann::json dashboard = nlohmann::json::parse(in);
  const std::regex metric(R"(\b(restyle_[a-z0-9_]+|grpc_server_[a-z0-9_]+)\b)");
  int queried = 0;
  for (const auto& panel : dashboard["panels"]) {
    for (const auto& target : panel["targets"]) {
      const std::string expr = target["expr"];
      for (auto it = std::sregex_iterator(expr.begin(), expr.end(), metric); it != std::sregex_iterator(); ++it) {
        std::string name = (*it)[1];
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
          if (absl::EndsWith(name, suffix) && !names.count(name)) name = name.substr(0, name.size() - strlen(suffix));
        }
        EXPECT_TRUE(names.count(name)) << panel["title"] << ": " << name << " is in no live scrape";
        ++queried;
      }
    }
  }
  EXPECT_GT(queried, 15);
  // And every metric the manifests use (alerts, recording rules, autoscaling).
  int alerted = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(std::string(RESTYLE_SOURCE_DIR) + "/deploy")) {
    if (entry.path().extension() != ".yaml") continue;
    std::ifstream file(entry.path());
    std::stringstream content;
    content << file.rdbuf();
    const std::string text = content.str();
    for (auto it = std::sregex_iterator(text.begin(), text.end(), metric); it != std::sregex_iterator(); ++it) {
      std::string name = (*it)[1];
      if (absl::EndsWith(name, "_bucket") && !names.count(name)) name = name.substr(0, name.size() - 7);
      EXPECT_TRUE(names.count(name)) << entry.path() << ": " << name << " is in no live scrape";
      ++alerted;
    }
  }
  EXPECT_GT(alerted, 5);
  worker->Stop();
}

}  // namespace
}  // namespace restyle::testing
