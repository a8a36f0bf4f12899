// Graceful stops. SIGTERM to the front: health NOT_SERVING, new work refused
// with UNAVAILABLE, the running job keeps its lease, and the restarted front
// picks up where it was. SIGTERM to a worker: it finishes the step, uploads
// its stage-1 checkpoint, releases the lease, and the job resumes elsewhere
// without a failed attempt. Deadlines: queue and run time limits.
#include <signal.h>
#include <sys/wait.h>

#include "absl/strings/str_cat.h"
#include "common/time.h"
#include "tests/integration/service_fixture.h"

namespace restyle::testing {
namespace {

TEST(ShutdownTest, ASigtermedFrontRefusesNewWorkAndTheRestartedOneCarriesOn) {
  const std::string root = FreshDir("front_sigterm");
  auto front = std::make_unique<Front>(root + "/front");
  auto worker = StartWorker(*front, "w1");
  ASSERT_TRUE(WaitServing(*front));
  absl::StatusOr<v1::Job> job = Adapt(*front, SmallJob(60));
  ASSERT_TRUE(job.ok());
  WaitUntil(*front, job->name(), [](const v1::Job& j) { return j.progress().step() >= 3; });

  front->process().Signal(SIGTERM);
  // Once it drains (the signal takes a moment to arrive), new work is
  // refused as UNAVAILABLE, and stays refused.
  int refused = 0;
  for (int i = 0; i < 200 && refused < 5; ++i) {
    v1::Job created;
    grpc::Status s = front->api().Adapt(Ctx(absl::Seconds(2)).get(), SmallJob(2), &created);
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      ++refused;
      if (refused == 1) EXPECT_EQ(ReasonOf(s), "DRAINING") << s.error_message();
    } else if (s.ok() && refused > 0) {
      ADD_FAILURE() << "accepted new work while draining: " << created.name();
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GT(refused, 0);
  const std::optional<int> status = front->process().Wait(absl::Seconds(10));
  ASSERT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << front->process().Log();
  EXPECT_NE(front->process().Log().find("the store is closed"), std::string::npos);

  front->Restart();
  const v1::Job done = WaitDone(*front, job->name(), absl::Seconds(90));
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.attempt(), 1) << "the lease survived the restart";
  EXPECT_EQ(done.failed_attempts(), 0);
  worker->Stop();
}

TEST(ShutdownTest, ASigtermedWorkerReleasesItsJobWithTheStage1Checkpoint) {
  const std::string root = FreshDir("worker_sigterm");
  Front front(root + "/front");
  auto a = StartWorker(front, "wa");
  ASSERT_TRUE(WaitServing(front));
  v1::AdaptRequest request = SmallJob(4);
  request.mutable_spec()->mutable_settings()->mutable_stage2()->set_iterations(40);
  absl::StatusOr<v1::Job> job = Adapt(front, request);
  ASSERT_TRUE(job.ok());
  WaitUntil(front, job->name(), [](const v1::Job& j) {
    return j.progress().stage() == v1::JOB_STAGE_FINE_TUNING_GENERATOR && j.progress().step() >= 2;
  });
  const int status = a->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << a->Log();
  EXPECT_NE(a->Log().find("released"), std::string::npos) << a->Log();
  const v1::Job queued = *GetJob(front, job->name());
  EXPECT_EQ(queued.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(queued.failed_attempts(), 0);

  auto b = StartWorker(front, "wb");
  const v1::Job done = WaitDone(front, job->name());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.attempt(), 2);
  EXPECT_TRUE(done.result().stage1_resumed()) << "stage 1 ran again on wb";
  b->Stop();
}

TEST(ShutdownTest, TimeLimitsAndDivergingJobsFailWithTheirReasons) {
  const std::string root = FreshDir("limits");
  Front front(root + "/front");
  auto registrar = StartWorker(front, "registrar");
  ASSERT_TRUE(WaitServing(front));
  registrar->Stop();

  v1::AdaptRequest waits = SmallJob(2);
  *waits.mutable_spec()->mutable_max_queue_time() = ToProtoDuration(absl::Seconds(1));
  absl::StatusOr<v1::Job> stale = Adapt(front, waits);
  ASSERT_TRUE(stale.ok());
  const v1::Job timed_out = WaitDone(front, stale->name(), absl::Seconds(20));
  EXPECT_EQ(timed_out.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(timed_out.error().reason(), "QUEUE_TIMEOUT");

  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front));
  v1::AdaptRequest slow = SmallJob(100000);
  *slow.mutable_spec()->mutable_max_run_time() = ToProtoDuration(absl::Seconds(2));
  absl::StatusOr<v1::Job> long_job = Adapt(front, slow);
  ASSERT_TRUE(long_job.ok());
  const v1::Job ran_out = WaitDone(front, long_job->name(), absl::Seconds(30));
  EXPECT_EQ(ran_out.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(ran_out.error().reason(), "RUN_TIMEOUT");

  // A learning rate far too large: the job fails at the first non-finite loss.
  v1::AdaptRequest diverges = SmallJob(6);
  diverges.mutable_spec()->mutable_settings()->mutable_stage2()->set_lr(1e30);
  absl::StatusOr<v1::Job> nan_job = Adapt(front, diverges);
  ASSERT_TRUE(nan_job.ok());
  const v1::Job failed = WaitDone(front, nan_job->name());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.error().reason(), "NON_FINITE_LOSS");
  EXPECT_EQ(failed.failed_attempts(), 0) << "a diverging job is not retried";
  EXPECT_NE(failed.error().message().find("stage2.lr"), std::string::npos) << failed.error().message();
  // The worker took the next job after each of them.
  absl::StatusOr<v1::Job> after = Adapt(front, SmallJob(2));
  EXPECT_EQ(WaitDone(front, after->name()).state(), v1::JOB_STATE_SUCCEEDED);
  worker->Stop();
}

// A worker stopped with SIGTERM says goodbye: it is gone from ListWorkers at
// once, not a lease period later.
TEST(ShutdownTest, ASigtermedWorkerLeavesTheWorkerListAtOnce) {
  const std::string root = FreshDir("goodbye");
  Front front(root + "/front", {"--lease-ttl", "30", "--heartbeat-interval", "1"});
  auto worker = StartWorker(front, "w1");
  ASSERT_TRUE(WaitServing(front)) << worker->Log();
  EXPECT_EQ(worker->Stop(), 0);
  v1::ListWorkersResponse listed;
  ASSERT_TRUE(front.api().ListWorkers(Ctx().get(), {}, &listed).ok());
  EXPECT_EQ(listed.workers_size(), 0) << listed.DebugString();
  EXPECT_NE(front.process().Log().find("worker workers/w1 left"), std::string::npos)
      << front.process().Log();
}

}  // namespace
}  // namespace restyle::testing
