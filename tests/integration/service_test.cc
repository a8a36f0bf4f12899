// The service end to end: real restyled and restyle-worker processes on
// loopback with the demo models. Adapt and watch to the end, then generate
// (the same pixels as restyle-generate); resume a watch; cancel queued and
// running jobs; two workers on one queue; a worker and the front killed
// mid-job; request ids; a full lane; malformed requests.
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "tests/integration/service_fixture.h"
#include "worker/engine/image/png.h"

namespace restyle::testing {
namespace {

namespace fs = std::filesystem;

// Every event of a watch until the stream ends; `stop_after` > 0 cancels
// the call after that many events.
struct Watched {
  std::vector<v1::JobEvent> events;
  grpc::Status status;
};
Watched Watch(Front& front, const std::string& job, int64_t after_seq, int stop_after = 0) {
  v1::WatchJobRequest request;
  request.set_name(job);
  request.set_after_seq(after_seq);
  auto context = Ctx(absl::Seconds(90));
  auto reader = front.api().WatchJob(context.get(), request);
  Watched w;
  v1::JobEvent e;
  while (reader->Read(&e)) {
    w.events.push_back(e);
    if (stop_after > 0 && static_cast<int>(w.events.size()) == stop_after) {
      context->TryCancel();
    }
  }
  w.status = reader->Finish();
  return w;
}

// The sequenced events only (queue updates repeat the last seq).
std::vector<int64_t> Seqs(const std::vector<v1::JobEvent>& events) {
  std::vector<int64_t> seqs;
  for (const v1::JobEvent& e : events) {
    if (!e.has_queue()) seqs.push_back(e.seq());
  }
  return seqs;
}

void ExpectConsecutive(const std::vector<int64_t>& seqs, int64_t first) {
  for (size_t i = 0; i < seqs.size(); ++i) {
    ASSERT_EQ(seqs[i], first + static_cast<int64_t>(i)) << "gap or repeat at " << i;
  }
}

std::string Download(Front& front, const std::string& name) {
  v1::DownloadArtifactRequest request;
  request.set_name(name);
  auto context = Ctx();
  auto reader = front.api().DownloadArtifact(context.get(), request);
  v1::DownloadArtifactResponse chunk;
  std::string bytes;
  v1::Artifact artifact;
  while (reader->Read(&chunk)) {
    if (chunk.has_artifact()) artifact = chunk.artifact();
    bytes += chunk.data();
  }
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << name << ": " << status.error_message();
  EXPECT_EQ(static_cast<int64_t>(bytes.size()), artifact.size_bytes()) << name;
  return bytes;
}

// Makes the demo source known to `front` (a worker registers it, and the
// front keeps it), then stops that worker: jobs stay queued afterwards.
void MakeDemoSourceKnown(Front& front) {
  auto worker = StartWorker(front, "registrar");
  ASSERT_TRUE(WaitServing(front)) << worker->Log();
  worker->Stop();
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = FreshDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  std::string root_;
};

TEST_F(ServiceTest, AdaptWatchToTheEndThenGenerateTheImagesOfRestyleGenerate) {
  Front front(root_ + "/front");
  EXPECT_FALSE(WaitServing(front, absl::Milliseconds(300))) << "SERVING without a worker";
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front)) << worker->Log();

  absl::StatusOr<v1::Job> job = Adapt(front, SmallJob(6));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job->spec().source_text(), "photo");  // the source's default
  Watched w = Watch(front, job->name(), 0);
  ASSERT_TRUE(w.status.ok()) << w.status.error_message();
  ASSERT_FALSE(w.events.empty());
  ExpectConsecutive(Seqs(w.events), 1);
  int stage1 = 0, stage2 = 0, previews = 0;
  for (const v1::JobEvent& e : w.events) {
    if (!e.has_progress()) continue;
    stage1 += e.progress().stage() == v1::JOB_STAGE_TRAINING_MAPPER;
    stage2 += e.progress().stage() == v1::JOB_STAGE_FINE_TUNING_GENERATOR;
    previews += !e.progress().preview().empty();
  }
  EXPECT_EQ(stage1, 6);
  EXPECT_EQ(stage2, 6);
  EXPECT_EQ(previews, 3);  // steps 2, 4, 6
  const v1::JobEvent& last = w.events.back();
  ASSERT_TRUE(last.has_job());
  EXPECT_EQ(last.job().state(), v1::JOB_STATE_SUCCEEDED) << last.DebugString();
  const v1::Job done = *GetJob(front, job->name());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  const std::string generator = done.result().generator();
  EXPECT_EQ(generator, "generators/" + job->name().substr(5));
  EXPECT_FALSE(done.result().generator_digest().empty());
  EXPECT_NE(done.result().samples(), "");
  EXPECT_EQ(done.progress().latest_preview(), done.name() + "/artifacts/previews/step_000006.png");

  // The adapted generator is a resource with its lineage.
  v1::GetGeneratorRequest get;
  get.set_name(generator);
  v1::Generator g;
  ASSERT_TRUE(front.api().GetGenerator(Ctx().get(), get, &g).ok());
  EXPECT_EQ(g.kind(), v1::GENERATOR_KIND_ADAPTED);
  EXPECT_EQ(g.resolution(), 32);
  EXPECT_EQ(g.lineage().job(), job->name());
  EXPECT_EQ(g.lineage().target_text(), "ukiyo-e");
  EXPECT_EQ(g.digest(), done.result().generator_digest());

  // Generate seeds 3, 9, 4 ...
  v1::GenerateRequest gen;
  gen.set_generator(generator);
  for (uint64_t seed : {3, 9, 4}) gen.add_seeds(seed);
  auto context = Ctx(absl::Seconds(60));
  auto reader = front.api().Generate(context.get(), gen);
  std::vector<v1::GenerateResponse> images;
  v1::GenerateResponse image;
  while (reader->Read(&image)) images.push_back(image);
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << worker->Log();
  ASSERT_EQ(images.size(), 3u);
  EXPECT_EQ(images[1].seed(), 9u);
  EXPECT_EQ(images[1].index(), 1);
  EXPECT_EQ(images[1].width(), 32);

  // ... and restyle-generate draws the same pixels from the job's files.
  const std::string job_dir = root_ + "/job";
  fs::create_directories(job_dir);
  for (const char* file : {"result.json", "generator_delta.safetensors"}) {
    std::ofstream(job_dir + "/" + file, std::ios::binary)
        << Download(front, done.name() + "/artifacts/" + file);
  }
  Process generate("restyle-generate",
                   {GenerateBinary(), "--job", job_dir, "--seeds", "3,9,4", "--out", root_ + "/pngs"},
                   root_ + "/generate.log");
  ASSERT_EQ(generate.Wait(absl::Seconds(60)).value_or(-1), 0) << generate.Log();
  for (const v1::GenerateResponse& img : images) {
    std::vector<std::string> candidates;
    for (const auto& entry : fs::directory_iterator(root_ + "/pngs")) {
      const std::string f = entry.path().filename().string();
      if (f.find(std::to_string(img.seed())) != std::string::npos && f.find("source") == std::string::npos) {
        candidates.push_back(entry.path().string());
      }
    }
    ASSERT_EQ(candidates.size(), 1u) << "seed " << img.seed();
    std::ifstream in(candidates[0], std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    const torch::Tensor a = engine::DecodePng(img.png());
    const torch::Tensor b = engine::DecodePng(bytes.str());
    EXPECT_TRUE(a.equal(b)) << "seed " << img.seed() << ": the service's image differs";
  }

  // A smaller size on request.
  gen.set_max_resolution(16);
  gen.clear_seeds();
  gen.add_seeds(3);
  auto context2 = Ctx(absl::Seconds(60));
  auto reader2 = front.api().Generate(context2.get(), gen);
  const bool read = reader2->Read(&image);
  const grpc::Status small = reader2->Finish();
  ASSERT_TRUE(read && small.ok()) << small.error_message();
  EXPECT_EQ(image.width(), 16);
  worker->Stop();
}

TEST_F(ServiceTest, AWatchResumesWithoutGapsOrRepeats) {
  Front front(root_ + "/front");
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front));
  absl::StatusOr<v1::Job> job = Adapt(front, SmallJob(30));
  ASSERT_TRUE(job.ok()) << job.status();
  std::vector<int64_t> seqs;
  int64_t after = 0;
  for (int round = 0; round < 50; ++round) {
    Watched part = Watch(front, job->name(), after, /*stop_after=*/5);
    for (int64_t s : Seqs(part.events)) seqs.push_back(s);
    if (!seqs.empty()) after = seqs.back();
    if (part.status.ok()) break;  // the job ended and the stream with it
    EXPECT_EQ(part.status.error_code(), grpc::StatusCode::CANCELLED);
  }
  ExpectConsecutive(seqs, 1);
  EXPECT_EQ(WaitDone(front, job->name()).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(seqs.back(), GetJob(front, job->name())->event_seq());
  worker->Stop();
}

TEST_F(ServiceTest, CancelAQueuedAndARunningJob) {
  Front front(root_ + "/front");
  MakeDemoSourceKnown(front);
  // No worker now: the job waits, and cancelling it is immediate.
  absl::StatusOr<v1::Job> queued = Adapt(front, SmallJob(4));
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(queued->queue_position(), 1);
  v1::CancelJobRequest cancel;
  cancel.set_name(queued->name());
  v1::Job after;
  ASSERT_TRUE(front.api().CancelJob(Ctx().get(), cancel, &after).ok());
  EXPECT_EQ(after.state(), v1::JOB_STATE_CANCELLED);
  ASSERT_TRUE(front.api().CancelJob(Ctx().get(), cancel, &after).ok());  // idempotent
  EXPECT_EQ(after.state(), v1::JOB_STATE_CANCELLED);

  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front));
  absl::StatusOr<v1::Job> running = Adapt(front, SmallJob(100000));
  ASSERT_TRUE(running.ok());
  WaitUntil(front, running->name(), [](const v1::Job& j) { return j.progress().step() >= 2; });
  cancel.set_name(running->name());
  const absl::Time asked = absl::Now();
  ASSERT_TRUE(front.api().CancelJob(Ctx().get(), cancel, &after).ok());
  EXPECT_EQ(after.state(), v1::JOB_STATE_CANCELLING);
  const v1::Job end = WaitDone(front, running->name(), absl::Seconds(20));
  EXPECT_EQ(end.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(end.error().reason(), "CANCELLED");
  EXPECT_LT(absl::Now() - asked, absl::Seconds(10));
  // The worker is free again.
  absl::StatusOr<v1::Job> next = Adapt(front, SmallJob(2));
  EXPECT_EQ(WaitDone(front, next->name()).state(), v1::JOB_STATE_SUCCEEDED);
  worker->Stop();
}

TEST_F(ServiceTest, TwoWorkersShareAQueue) {
  Front front(root_ + "/front");
  auto a = StartWorker(front, "wa");
  auto b = StartWorker(front, "wb");
  ASSERT_TRUE(WaitServing(front));
  std::vector<std::string> jobs;
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<v1::Job> j = Adapt(front, SmallJob(8, "style " + std::to_string(i)));
    ASSERT_TRUE(j.ok());
    jobs.push_back(j->name());
  }
  std::set<std::string> workers;
  for (const std::string& name : jobs) {
    EXPECT_EQ(WaitDone(front, name).state(), v1::JOB_STATE_SUCCEEDED);
    for (const v1::JobEvent& e : Watch(front, name, 0).events) {
      if (e.has_job() && e.job().state() == v1::JOB_STATE_RUNNING) workers.insert(e.job().worker());
    }
  }
  EXPECT_EQ(workers, (std::set<std::string>{"workers/wa", "workers/wb"}));
  v1::ListWorkersResponse list;
  ASSERT_TRUE(front.api().ListWorkers(Ctx().get(), {}, &list).ok());
  EXPECT_EQ(list.workers_size(), 2);
  a->Stop();
  b->Stop();
}

TEST_F(ServiceTest, AKilledWorkersJobFinishesOnAnotherFromTheStage1Checkpoint) {
  Front front(root_ + "/front");
  auto a = StartWorker(front, "wa");
  ASSERT_TRUE(WaitServing(front));
  v1::AdaptRequest request = SmallJob(4);
  request.mutable_spec()->mutable_settings()->mutable_stage2()->set_iterations(100000);
  absl::StatusOr<v1::Job> job = Adapt(front, request);
  ASSERT_TRUE(job.ok());
  // Stage 2 runs once the stage-1 checkpoint is on the front.
  WaitUntil(front, job->name(), [](const v1::Job& j) {
    return j.progress().stage() == v1::JOB_STAGE_FINE_TUNING_GENERATOR && j.progress().step() >= 3;
  });
  const std::string checkpoint = job->name() + "/artifacts/stage1_checkpoint.safetensors";
  WaitUntil(front, job->name(), [&](const v1::Job&) {
    v1::DownloadArtifactRequest r;
    r.set_name(checkpoint);
    auto c = Ctx();
    auto reader = front.api().DownloadArtifact(c.get(), r);
    v1::DownloadArtifactResponse chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish().ok();
  });
  a->Signal(SIGKILL);
  a->Wait(absl::Seconds(10));
  // The lease expires (2 s) and the job moves to wb, which loads the
  // stage-1 checkpoint instead of training stage 1 again.
  auto b = StartWorker(front, "wb");
  const v1::Job moved = WaitUntil(front, job->name(), [](const v1::Job& j) {
    return j.attempt() == 2 && j.state() == v1::JOB_STATE_RUNNING &&
           j.progress().stage() == v1::JOB_STAGE_FINE_TUNING_GENERATOR;
  });
  EXPECT_EQ(moved.worker(), "workers/wb");
  EXPECT_EQ(moved.failed_attempts(), 1);
  EXPECT_EQ(moved.error().reason(), "LEASE_EXPIRED");
  // No stage-1 step ran on wb: it loaded the checkpoint.
  bool stage1_on_b = false, loaded = false;
  v1::WatchJobRequest r;
  r.set_name(job->name());
  auto c = Ctx(absl::Seconds(5));
  auto reader = front.api().WatchJob(c.get(), r);
  v1::JobEvent e;
  bool on_b = false;
  while (reader->Read(&e)) {
    if (e.has_job()) on_b = e.job().attempt() == 2;
    if (on_b && e.has_progress() && e.progress().stage() == v1::JOB_STAGE_TRAINING_MAPPER) stage1_on_b = true;
    if (on_b && e.has_log() && e.log().find("stage 1 loaded") != std::string::npos) loaded = true;
    if (on_b && e.has_progress() && e.progress().stage() == v1::JOB_STAGE_FINE_TUNING_GENERATOR) break;
  }
  c->TryCancel();
  reader->Finish();
  EXPECT_FALSE(stage1_on_b);
  EXPECT_TRUE(loaded);
  // (Its 100,000 stage-2 steps are not waited for.)
  v1::CancelJobRequest cancel;
  cancel.set_name(job->name());
  v1::Job ignored;
  ASSERT_TRUE(front.api().CancelJob(Ctx().get(), cancel, &ignored).ok());
  EXPECT_EQ(WaitDone(front, job->name()).state(), v1::JOB_STATE_CANCELLED);
  b->Stop();
}

TEST_F(ServiceTest, AKilledFrontLosesNothingAndCompletesNothingTwice) {
  auto front = std::make_unique<Front>(root_ + "/front");
  auto worker = StartWorker(*front, "w1");
  ASSERT_TRUE(WaitServing(*front));
  std::vector<std::string> jobs;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<v1::Job> j = Adapt(*front, SmallJob(30, "style " + std::to_string(i)));
    ASSERT_TRUE(j.ok());
    jobs.push_back(j->name());
  }
  WaitUntil(*front, jobs[0], [](const v1::Job& j) { return j.progress().step() >= 5; });
  front->Kill();
  absl::SleepFor(absl::Milliseconds(500));  // the worker trains on alone
  front->Restart();
  for (const std::string& name : jobs) {
    const v1::Job end = WaitDone(*front, name, absl::Seconds(90));
    EXPECT_EQ(end.state(), v1::JOB_STATE_SUCCEEDED) << end.DebugString();
    int succeeded = 0;
    for (const v1::JobEvent& e : Watch(*front, name, 0).events) {
      succeeded += e.has_job() && e.job().state() == v1::JOB_STATE_SUCCEEDED;
    }
    EXPECT_EQ(succeeded, 1) << name;
  }
  v1::ListJobsRequest list;
  v1::ListJobsResponse all;
  ASSERT_TRUE(front->api().ListJobs(Ctx().get(), list, &all).ok());
  EXPECT_EQ(all.jobs_size(), 4);
  worker->Stop();
}

TEST_F(ServiceTest, RequestIdsMakeRetriesSafe) {
  Front front(root_ + "/front");
  MakeDemoSourceKnown(front);
  v1::AdaptRequest request = SmallJob(3);
  request.set_request_id("3f2b8c1e-6d1a-4a57-9c3e-0b7a1d2e4f5a");
  absl::StatusOr<v1::Job> first = Adapt(front, request);
  absl::StatusOr<v1::Job> again = Adapt(front, request);
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_EQ(first->name(), again->name());
  request.mutable_spec()->set_target_text("another style");
  v1::Job job;
  grpc::Status reused = front.api().Adapt(Ctx().get(), request, &job);
  EXPECT_EQ(reused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ReasonOf(reused), "REQUEST_ID_REUSED");
  EXPECT_NE(reused.error_message().find(first->name()), std::string::npos);
}

TEST_F(ServiceTest, AFullLaneIsResourceExhaustedWithARetryHint) {
  Front front(root_ + "/front", {"--max-queued-jobs", "2"});
  MakeDemoSourceKnown(front);
  ASSERT_TRUE(Adapt(front, SmallJob(3)).ok());
  ASSERT_TRUE(Adapt(front, SmallJob(3)).ok());
  v1::Job job;
  auto context = Ctx();
  grpc::Status full = front.api().Adapt(context.get(), SmallJob(3), &job);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ReasonOf(full), "QUEUE_FULL");
  const auto& trailers = context->GetServerTrailingMetadata();
  EXPECT_EQ(trailers.count("grpc-retry-pushback-ms"), 1u);
}

TEST_F(ServiceTest, EveryMalformedFieldIsInvalidArgumentNamingIt) {
  Front front(root_ + "/front");
  auto worker = StartWorker(front, "w1");  // so that the demo source is known
  ASSERT_TRUE(WaitServing(front));
  struct Case {
    std::string field;
    std::function<void(v1::AdaptRequest&)> spoil;
  };
  const std::vector<Case> cases = {
      {"spec.source_generator", [](v1::AdaptRequest& r) { r.mutable_spec()->clear_source_generator(); }},
      {"spec.source_generator", [](v1::AdaptRequest& r) { r.mutable_spec()->set_source_generator("jobs/x"); }},
      {"spec.target_text", [](v1::AdaptRequest& r) { r.mutable_spec()->clear_target_text(); }},
      {"spec.target_text", [](v1::AdaptRequest& r) { r.mutable_spec()->set_target_text(std::string(2000, 'a')); }},
      // Too many tokens for CLIP (77), though short in bytes.
      {"spec.target_text", [](v1::AdaptRequest& r) {
         std::string words;
         for (int i = 0; i < 80; ++i) words += "ukiyo ";
         r.mutable_spec()->set_target_text(words);
       }},
      {"spec.source_text", [](v1::AdaptRequest& r) {
         std::string words;
         for (int i = 0; i < 80; ++i) words += "photo ";
         r.mutable_spec()->set_source_text(words);
       }},
      {"spec.priority", [](v1::AdaptRequest& r) { r.mutable_spec()->set_priority(5000); }},
      {"spec.max_run_time", [](v1::AdaptRequest& r) { r.mutable_spec()->mutable_max_run_time()->set_seconds(-1); }},
      {"spec.method", [](v1::AdaptRequest& r) { r.mutable_spec()->set_method(static_cast<v1::Method>(7)); }},
      {"spec.seed", [](v1::AdaptRequest& r) { r.mutable_spec()->set_seed(-1); }},
      {"spec.settings.stage1.lr", [](v1::AdaptRequest& r) { r.mutable_spec()->mutable_settings()->mutable_stage1()->set_lr(0); }},
      {"spec.settings.stage2.ema_decay", [](v1::AdaptRequest& r) { r.mutable_spec()->mutable_settings()->mutable_stage2()->set_ema_decay(2); }},
      {"spec.settings.stage2.betas", [](v1::AdaptRequest& r) { r.mutable_spec()->mutable_settings()->mutable_stage2()->add_betas(0.5); }},
      {"spec.settings.stage2.auto_layer_k", [](v1::AdaptRequest& r) { r.mutable_spec()->mutable_settings()->mutable_stage2()->set_auto_layer_k(9); }},
      {"spec.settings.quality_samples", [](v1::AdaptRequest& r) { r.mutable_spec()->mutable_settings()->set_quality_samples(1); }},
      {"request_id", [](v1::AdaptRequest& r) { r.set_request_id("not a uuid!"); }},
  };
  for (const Case& c : cases) {
    v1::AdaptRequest request = SmallJob(2);
    c.spoil(request);
    v1::Job job;
    grpc::Status s = front.api().Adapt(Ctx().get(), request, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field << ": " << s.error_message();
    EXPECT_EQ(ReasonOf(s), "INVALID_FIELD") << c.field;
    EXPECT_EQ(MetadataOf(s)["field"], c.field) << s.error_message();
    EXPECT_NE(s.error_message().find(c.field), std::string::npos) << s.error_message();
  }
  // An unknown source is NOT_FOUND, an unknown job too.
  v1::AdaptRequest unknown = SmallJob(2);
  unknown.mutable_spec()->set_source_generator("generators/nope");
  v1::Job job;
  grpc::Status s = front.api().Adapt(Ctx().get(), unknown, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ReasonOf(s), "GENERATOR_NOT_FOUND");
  v1::GetJobRequest get;
  get.set_name("jobs/nope");
  EXPECT_EQ(front.api().GetJob(Ctx().get(), get, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  // Generate: malformed, and a generator whose job has not succeeded.
  v1::GenerateRequest gen;
  gen.set_generator("generators/demo");
  gen.set_count(5000);
  auto context = Ctx();
  v1::GenerateResponse image;
  auto reader = front.api().Generate(context.get(), gen);
  while (reader->Read(&image)) {
  }
  grpc::Status g = reader->Finish();
  EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(MetadataOf(g)["field"], "count");
  absl::StatusOr<v1::Job> pending = Adapt(front, SmallJob(100000));
  ASSERT_TRUE(pending.ok());
  gen.set_generator("generators/" + pending->name().substr(5));
  gen.set_count(1);
  auto context2 = Ctx();
  auto reader2 = front.api().Generate(context2.get(), gen);
  while (reader2->Read(&image)) {
  }
  grpc::Status not_ready = reader2->Finish();
  EXPECT_EQ(not_ready.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << not_ready.error_message();
  EXPECT_EQ(ReasonOf(not_ready), "GENERATOR_NOT_READY");
  worker->Stop();
}

// A watcher that does not read falls behind and is dropped with a status
// that says how to resume; the worker and another watcher go on unhindered.
TEST_F(ServiceTest, ASlowWatcherIsDroppedAndOthersAreNotSlowed) {
  Front front(root_ + "/front", {"--max-watch-backlog", "20"});
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front));
  v1::AdaptRequest request = SmallJob(3);
  request.mutable_spec()->mutable_settings()->mutable_stage1()->set_iterations(200);
  request.mutable_spec()->mutable_settings()->mutable_stage1()->set_batch(2);
  absl::StatusOr<v1::Job> job = Adapt(front, request);
  ASSERT_TRUE(job.ok());
  // The slow one opens the stream and does not read until the job is done;
  // its channel takes ~1 KB ahead (no window growth), so the front's queue
  // for it fills.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  auto slow_stub = v1::RestyleService::NewStub(
      grpc::CreateCustomChannel(front.api_address(), grpc::InsecureChannelCredentials(), args));
  v1::WatchJobRequest watch;
  watch.set_name(job->name());
  auto slow_context = Ctx(absl::Seconds(120));
  auto slow = slow_stub->WatchJob(slow_context.get(), watch);
  Watched fast = Watch(front, job->name(), 0);
  ASSERT_TRUE(fast.status.ok()) << fast.status.error_message();
  ExpectConsecutive(Seqs(fast.events), 1);
  EXPECT_EQ(fast.events.back().job().state(), v1::JOB_STATE_SUCCEEDED);
  v1::JobEvent e;
  int64_t last = 0;
  while (slow->Read(&e)) last = e.seq();
  grpc::Status dropped = slow->Finish();
  EXPECT_EQ(dropped.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << dropped.error_message();
  EXPECT_EQ(ReasonOf(dropped), "WATCHER_TOO_SLOW");
  EXPECT_NE(dropped.error_message().find("after_seq"), std::string::npos);
  // It resumes where it was, losing nothing.
  Watched rest = Watch(front, job->name(), last);
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message() << " after " << rest.events.size();
  ExpectConsecutive(Seqs(rest.events), last + 1);
  worker->Stop();
}

TEST_F(ServiceTest, GeneratorsAreListedAndAdaptedOnesDeleted) {
  Front front(root_ + "/front");
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front));
  absl::StatusOr<v1::Job> job = Adapt(front, SmallJob(2));
  ASSERT_TRUE(job.ok());
  ASSERT_EQ(WaitDone(front, job->name()).state(), v1::JOB_STATE_SUCCEEDED);
  const std::string name = "generators/" + job->name().substr(5);
  v1::ListGeneratorsRequest list;
  list.set_page_size(1);
  std::vector<std::string> names;
  for (int page = 0; page < 5; ++page) {
    v1::ListGeneratorsResponse response;
    ASSERT_TRUE(front.api().ListGenerators(Ctx().get(), list, &response).ok());
    for (const v1::Generator& g : response.generators()) names.push_back(g.name());
    if (response.next_page_token().empty()) break;
    list.set_page_token(response.next_page_token());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"generators/demo", name}));
  v1::DeleteGeneratorRequest del;
  del.set_name("generators/demo");
  v1::DeleteGeneratorResponse ignored;
  grpc::Status source = front.api().DeleteGenerator(Ctx().get(), del, &ignored);
  EXPECT_EQ(source.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ReasonOf(source), "SOURCE_GENERATOR");
  del.set_name(name);
  ASSERT_TRUE(front.api().DeleteGenerator(Ctx().get(), del, &ignored).ok());
  EXPECT_EQ(front.api().DeleteGenerator(Ctx().get(), del, &ignored).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::GetGeneratorRequest get;
  get.set_name(name);
  v1::Generator g;
  EXPECT_EQ(front.api().GetGenerator(Ctx().get(), get, &g).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::GenerateRequest gen;
  gen.set_generator(name);
  gen.set_count(1);
  auto context = Ctx();
  auto reader = front.api().Generate(context.get(), gen);
  v1::GenerateResponse image;
  while (reader->Read(&image)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GetJob(front, job->name())->state(), v1::JOB_STATE_SUCCEEDED);  // the job stays
  // Its files go off the store's thread, soon after the reply.
  const std::string files = front.data_dir() + "/artifacts/" + job->name().substr(5);
  for (int i = 0; i < 100 && fs::exists(files); ++i) absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(fs::exists(files));
  worker->Stop();
}

// The API as a user's first tool sees it: buf curl, with no generated code,
// reads the services through server reflection and calls them.
TEST_F(ServiceTest, ReflectionServesTheApiToBufCurl) {
  const std::string buf = BufBinary();
  if (buf.empty()) {
    if (RunningInCi()) FAIL() << "buf is not installed (make deps installs it into tools/node_modules)";
    GTEST_SKIP() << "buf is not installed (make deps)";
  }
  Front front(root_ + "/front");
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front));
  const std::string url = "http://" + front.api_address();
  Process list("buf", {buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods", url},
               root_ + "/list.log");
  ASSERT_EQ(list.Wait(absl::Seconds(60)).value_or(-1), 0) << list.Log();
  for (const char* method : {"restyle.v1.RestyleService/Adapt", "restyle.v1.RestyleService/WatchJob",
                             "restyle.v1.RestyleService/Generate", "grpc.health.v1.Health/Check"}) {
    EXPECT_NE(list.Log().find(method), std::string::npos) << list.Log();
  }
  Process call("buf", {buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d",
                       R"({"kind": "GENERATOR_KIND_SOURCE"})",
                       url + "/restyle.v1.RestyleService/ListGenerators"},
               root_ + "/call.log");
  ASSERT_EQ(call.Wait(absl::Seconds(60)).value_or(-1), 0) << call.Log();
  EXPECT_NE(call.Log().find("\"name\": \"generators/demo\""), std::string::npos) << call.Log();
  // An error comes with its message and its ErrorDetail.
  Process bad("buf", {buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d",
                      R"({"spec": {"source_generator": "demo"}})",
                      url + "/restyle.v1.RestyleService/Adapt"},
              root_ + "/bad.log");
  bad.Wait(absl::Seconds(60));
  EXPECT_NE(bad.Log().find("invalid_argument"), std::string::npos) << bad.Log();
  EXPECT_NE(bad.Log().find("spec.target_text is required"), std::string::npos) << bad.Log();
  EXPECT_NE(bad.Log().find("restyle.v1.ErrorDetail"), std::string::npos) << bad.Log();
  // Reflection is the API port's alone: the worker protocol and the
  // unauthenticated health port describe nothing.
  for (const auto& [port, name] : {std::pair{front.ports().worker, "worker"},
                                   std::pair{front.ports().health, "health"}}) {
    Process other("buf", {buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge",
                          "--list-methods", absl::StrCat("http://127.0.0.1:", port)},
                  absl::StrCat(root_, "/list-", name, ".log"));
    EXPECT_NE(other.Wait(absl::Seconds(60)).value_or(0), 0) << name << ": " << other.Log();
    EXPECT_EQ(other.Log().find("WorkerService/"), std::string::npos) << other.Log();
    EXPECT_EQ(other.Log().find("RestyleService/"), std::string::npos) << other.Log();
  }
  worker->Stop();
}

}  // namespace
}  // namespace restyle::testing
