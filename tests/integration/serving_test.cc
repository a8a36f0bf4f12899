// Generate at serving grade, with real restyled and restyle-worker
// processes: requests that arrive together run as one batch and get the
// images each would get alone (the same PNG bytes); a generator a request
// still needs is never evicted; a request whose deadline passed is not
// drawn; a full worker queue is RESOURCE_EXHAUSTED with a retry hint; a
// request goes to the worker that holds its generator, and past a training
// worker to an idle one.
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/integration/service_fixture.h"

namespace restyle::testing {
namespace {

// The images and status of one Generate call.
struct Generated {
  std::map<uint64_t, std::string> png;  // by seed
  int images = 0;
  grpc::Status status;
  std::multimap<std::string, std::string> trailers;
  absl::Time ended;
};

Generated Generate(Front& front, const std::string& generator, const std::vector<uint64_t>& seeds,
                   absl::Duration deadline = absl::Seconds(60)) {
  v1::GenerateRequest request;
  request.set_generator(generator);
  for (uint64_t s : seeds) request.add_seeds(s);
  auto context = Ctx(deadline);
  auto reader = front.api().Generate(context.get(), request);
  Generated g;
  v1::GenerateResponse image;
  while (reader->Read(&image)) {
    g.png[image.seed()] = image.png();
    ++g.images;
  }
  g.status = reader->Finish();
  for (const auto& [key, value] : context->GetServerTrailingMetadata()) {
    g.trailers.emplace(std::string(key.data(), key.size()), std::string(value.data(), value.size()));
  }
  g.ended = absl::Now();
  return g;
}

// The value of the unlabelled sample `name` in a Prometheus text page (-1
// when absent).
double Sample(const std::string& page, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || !absl::ConsumePrefix(&line, " ")) continue;
    double v = 0;
    if (absl::SimpleAtod(line, &v)) return v;
  }
  return -1;
}

double WorkerSample(const Front& front, const std::string& worker, const std::string& name) {
  return Sample(HttpGet(WorkerMetricsPort(front, worker), "/metrics"), name);
}

// Polls `worker`'s sample `name` until it equals `want` (up to 10 s); the
// last value.
double AwaitSample(const Front& front, const std::string& worker, const std::string& name,
                   double want) {
  double v = -1;
  for (absl::Time until = absl::Now() + absl::Seconds(10); absl::Now() < until;) {
    v = WorkerSample(front, worker, name);
    if (v == want) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return v;
}

// The worker of the front named `id` ("workers/<id>") as the front sees it.
std::optional<v1::Worker> FrontWorker(Front& front, const std::string& id) {
  v1::ListWorkersRequest request;
  v1::ListWorkersResponse response;
  if (!front.api().ListWorkers(Ctx().get(), request, &response).ok()) return std::nullopt;
  for (const v1::Worker& w : response.workers()) {
    if (w.name() == "workers/" + id) return w;
  }
  return std::nullopt;
}

bool AwaitWorker(Front& front, const std::string& id,
                 const std::function<bool(const v1::Worker&)>& ok) {
  for (absl::Time until = absl::Now() + absl::Seconds(10); absl::Now() < until;) {
    std::optional<v1::Worker> w = FrontWorker(front, id);
    if (w && ok(*w)) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

// Adapts a short demo job to `target`; its generator's name.
std::string AdaptedGenerator(Front& front, const std::string& target) {
  absl::StatusOr<v1::Job> job = Adapt(front, SmallJob(2, target));
  EXPECT_TRUE(job.ok()) << job.status();
  if (!job.ok()) return "";
  const v1::Job done = WaitDone(front, job->name(), absl::Seconds(120));
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.DebugString();
  return done.result().generator();
}

class ServingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = FreshDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  std::string root_;
};

TEST_F(ServingTest, RequestsBatchedTogetherGetTheImagesTheyGetAlone) {
  Front front(root_ + "/front");
  // A long window, so requests sent together surely meet in one batch.
  auto worker = StartWorker(front, "w1", {"--generation-window-ms", "400",
                                          "--always-wait-for-company",
                                          "--max-generation-batch", "8"});
  ASSERT_TRUE(WaitServing(front)) << worker->Log();
  const std::string demo = "generators/demo";
  const std::vector<std::vector<uint64_t>> requests = {{5, 1}, {8}, {3, 12, 7}};

  std::map<uint64_t, std::string> alone;
  for (const auto& seeds : requests) {
    for (uint64_t seed : seeds) {
      Generated g = Generate(front, demo, {seed});
      ASSERT_TRUE(g.status.ok()) << g.status.error_message() << "\n" << worker->Log();
      alone[seed] = g.png.at(seed);
    }
  }
  const std::string count = "restyle_worker_generation_batch_size_count";
  ASSERT_EQ(AwaitSample(front, "w1", count, 6), 6) << "six requests alone: six batches of 1";

  std::vector<Generated> together(requests.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < requests.size(); ++i) {
    clients.emplace_back([&, i] { together[i] = Generate(front, demo, requests[i]); });
  }
  for (std::thread& t : clients) t.join();
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(together[i].status.ok()) << together[i].status.error_message();
    ASSERT_EQ(together[i].images, static_cast<int>(requests[i].size()));
    for (uint64_t seed : requests[i]) {
      EXPECT_EQ(together[i].png.at(seed), alone.at(seed))
          << "seed " << seed << ": batched, its image differs from the one drawn alone";
    }
  }
  const double batches = WorkerSample(front, "w1", count) - 6;
  EXPECT_GE(batches, 1);
  EXPECT_LT(batches, 3) << "the three requests did not share a batch";
  EXPECT_EQ(WorkerSample(front, "w1", "restyle_worker_generation_batch_size_sum"), 12);
}

TEST_F(ServingTest, ALoneRequestAtLowLoadDoesNotWaitTheWindow) {
  Front front(root_ + "/front");
  // A window far longer than a demo image takes: a request that waited it
  // would take ten seconds.
  auto worker = StartWorker(front, "w1", {"--generation-window-ms", "10000"});
  ASSERT_TRUE(WaitServing(front)) << worker->Log();
  for (uint64_t seed : {4, 2, 9}) {
    const absl::Time start = absl::Now();
    Generated g = Generate(front, "generators/demo", {seed});
    ASSERT_TRUE(g.status.ok()) << g.status.error_message();
    EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << "seed " << seed << " waited for company";
  }
}

TEST_F(ServingTest, AGeneratorARequestStillNeedsIsNeverEvicted) {
  Front front(root_ + "/front");
  // Room for no adapted generator at all, one image per batch: every load
  // evicts what no request needs.
  auto worker = StartWorker(front, "w1", {"--cache-memory", "1KiB", "--max-generation-batch", "1",
                                          "--generation-window-ms", "0"});
  ASSERT_TRUE(WaitServing(front)) << worker->Log();
  const std::string a = AdaptedGenerator(front, "ukiyo-e");
  const std::string b = AdaptedGenerator(front, "pixar");
  ASSERT_FALSE(a.empty() || b.empty());

  std::vector<uint64_t> many;
  for (uint64_t s = 0; s < 120; ++s) many.push_back(s);
  Generated long_request, short_request;
  std::thread first([&] { long_request = Generate(front, a, many); });
  absl::SleepFor(absl::Milliseconds(100));
  short_request = Generate(front, b, {0, 1, 2});
  first.join();
  ASSERT_TRUE(long_request.status.ok()) << long_request.status.error_message() << worker->Log();
  ASSERT_TRUE(short_request.status.ok()) << short_request.status.error_message();
  EXPECT_EQ(long_request.images, 120);
  EXPECT_EQ(short_request.images, 3);
  EXPECT_LT(short_request.ended, long_request.ended)
      << "the short request waited for the long one instead of taking turns with it";
  // Each was loaded once: the long request's generator stayed while b's
  // load pushed the cache over its budget.
  EXPECT_EQ(WorkerSample(front, "w1", "restyle_generator_loads_total"), 2);
  // Once no request needs them, both go.
  EXPECT_EQ(AwaitSample(front, "w1", "restyle_generator_evictions_total", 2), 2);
  EXPECT_EQ(AwaitSample(front, "w1", "restyle_generators_resident", 0), 0);

  // Loaded again from the worker's disk: the same image.
  Generated again = Generate(front, a, {7});
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.png.at(7), long_request.png.at(7));
  EXPECT_EQ(WorkerSample(front, "w1", "restyle_generator_loads_total"), 3);
}

TEST_F(ServingTest, ARequestPastItsDeadlineIsNotDrawn) {
  Front front(root_ + "/front");
  // The first request waits 1.5 s for company; the second joins it with a
  // deadline that passes before the batch runs.
  auto worker = StartWorker(front, "w1", {"--generation-window-ms", "1500", "--always-wait-for-company"});
  ASSERT_TRUE(WaitServing(front)) << worker->Log();
  Generated patient, hurried;
  std::thread first([&] { patient = Generate(front, "generators/demo", {0}); });
  absl::SleepFor(absl::Milliseconds(100));
  hurried = Generate(front, "generators/demo", {1}, absl::Milliseconds(500));
  first.join();
  ASSERT_TRUE(patient.status.ok()) << patient.status.error_message();
  EXPECT_EQ(patient.images, 1);
  EXPECT_EQ(hurried.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << hurried.status.error_message();
  EXPECT_EQ(hurried.images, 0);
  EXPECT_EQ(AwaitSample(front, "w1", "restyle_worker_generation_expired_total", 1), 1)
      << worker->Log();
  EXPECT_EQ(WorkerSample(front, "w1", "restyle_worker_images_generated_total"), 1)
      << "the expired request's image was drawn";
}

TEST_F(ServingTest, AFullWorkerQueueIsResourceExhaustedWithARetryHint) {
  Front front(root_ + "/front");
  auto worker = StartWorker(front, "w1", {"--max-generation-tasks", "2",
                                          "--generation-window-ms", "2000",
                                          "--always-wait-for-company"});
  ASSERT_TRUE(WaitServing(front)) << worker->Log();
  Generated held[2];
  std::vector<std::thread> clients;
  for (int i = 0; i < 2; ++i) {
    clients.emplace_back([&, i] { held[i] = Generate(front, "generators/demo", {uint64_t(i)}); });
  }
  // Both taken by the worker, which waits for company with them.
  ASSERT_TRUE(AwaitWorker(front, "w1", [](const v1::Worker& w) { return w.generation_queue() == 2; }))
      << worker->Log();
  Generated refused = Generate(front, "generators/demo", {9});
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.status.error_message();
  EXPECT_EQ(ReasonOf(refused.status), "QUEUE_FULL");
  EXPECT_EQ(refused.trailers.count("grpc-retry-pushback-ms"), 1u);
  for (std::thread& t : clients) t.join();
  for (const Generated& g : held) {
    EXPECT_TRUE(g.status.ok()) << g.status.error_message();
    EXPECT_EQ(g.images, 1);
  }
  // With room again, the same request is served.
  EXPECT_TRUE(Generate(front, "generators/demo", {9}).status.ok());
}

TEST_F(ServingTest, RequestsGoToTheWorkerHoldingTheGeneratorAndPastATrainingOne) {
  Front front(root_ + "/front");
  auto w1 = StartWorker(front, "w1", {"--generation-window-ms", "0"});
  auto w2 = StartWorker(front, "w2", {"--generation-window-ms", "0"});
  ASSERT_TRUE(WaitServing(front)) << w1->Log();
  ASSERT_TRUE(AwaitWorker(front, "w2", [](const v1::Worker&) { return true; }));
  const std::string a = AdaptedGenerator(front, "ukiyo-e");
  ASSERT_FALSE(a.empty());

  ASSERT_TRUE(Generate(front, a, {0}).status.ok());
  const std::string holder =
      WorkerSample(front, "w1", "restyle_generator_loads_total") == 1 ? "w1" : "w2";
  const std::string other = holder == "w1" ? "w2" : "w1";
  ASSERT_TRUE(AwaitWorker(front, holder, [&](const v1::Worker& w) {
    return w.resident_generators_size() == 1 && w.resident_generators(0) == a;
  }));
  for (uint64_t seed = 1; seed <= 4; ++seed) ASSERT_TRUE(Generate(front, a, {seed}).status.ok());
  EXPECT_EQ(WorkerSample(front, holder, "restyle_generator_loads_total"), 1);
  EXPECT_EQ(WorkerSample(front, other, "restyle_generator_loads_total"), 0)
      << "a request went to the worker without the generator";

  // A long job trains on one worker; Generate goes to the other.
  absl::StatusOr<v1::Job> job = Adapt(front, SmallJob(400));
  ASSERT_TRUE(job.ok()) << job.status();
  v1::Job running = WaitUntil(front, job->name(), [](const v1::Job& j) {
    return j.state() == v1::JOB_STATE_RUNNING;
  });
  ASSERT_EQ(running.state(), v1::JOB_STATE_RUNNING);
  const std::string trainer = running.worker().substr(running.worker().find('/') + 1);
  const std::string idle = trainer == "w1" ? "w2" : "w1";
  ASSERT_TRUE(AwaitWorker(front, trainer, [&](const v1::Worker& w) { return !w.job().empty(); }));
  const double before = WorkerSample(front, idle, "restyle_worker_images_generated_total");
  const double trainer_before = WorkerSample(front, trainer, "restyle_worker_images_generated_total");
  for (uint64_t seed = 0; seed < 3; ++seed) {
    ASSERT_TRUE(Generate(front, "generators/demo", {seed, seed + 10}).status.ok());
  }
  EXPECT_EQ(WorkerSample(front, idle, "restyle_worker_images_generated_total") - before, 6);
  EXPECT_EQ(WorkerSample(front, trainer, "restyle_worker_images_generated_total"), trainer_before);
  v1::CancelJobRequest cancel;
  cancel.set_name(job->name());
  v1::Job cancelled;
  front.api().CancelJob(Ctx().get(), cancel, &cancelled);
}

}  // namespace
}  // namespace restyle::testing
