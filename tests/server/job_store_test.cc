// The job lifecycle on every store backend (SQLite and PostgreSQL, the same
// cases): creation and idempotent retries, leasing order and fencing,
// progress events, completion, retries after lost leases, cancellation, time
// limits, listing, durability across reopen, schema versions.
#include <gtest/gtest.h>

#include "common/status.h"
#include "common/time.h"
#include "tests/server/job_store_fixture.h"

namespace restyle::server {
namespace {

using restyle::worker::v1::ProgressEvent;

TEST_P(StoreTest, CreateGetAndRequestIds) {
  Add("a", 0, kSource, kT0, "req-1", "digest-1");
  const v1::Job a = Job("a");
  EXPECT_EQ(a.name(), "jobs/a");
  EXPECT_EQ(a.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(a.event_seq(), 1);
  EXPECT_EQ(a.request_id(), "req-1");

  // The same request id and digest: the same job, nothing new stored.
  v1::JobSpec spec = a.spec();
  Events events;
  JobRow retry = NewJob("b", spec, "req-1", "digest-1", 2, kT0, &events);
  auto again = store_->Create(retry, events, 100);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->update.row.job.name(), "jobs/a");
  EXPECT_EQ(store_->Get("b").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorReason(store_->Get("b").status()), "JOB_NOT_FOUND");

  // The same request id, another payload: refused.
  events.clear();
  JobRow reuse = NewJob("c", spec, "req-1", "digest-2", 2, kT0, &events);
  auto refused = store_->Create(reuse, events, 100);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(refused.status()), "REQUEST_ID_REUSED");
}

TEST_P(StoreTest, AFullQueueRefusesWithARetryDelay) {
  Add("a");
  Add("b");
  v1::JobSpec spec;
  spec.set_source_generator(kSource);
  Events events;
  auto full = store_->Create(NewJob("c", spec, "", "", 2, kT0, &events), events, 2);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorReason(full.status()), "QUEUE_FULL");
  EXPECT_TRUE(ErrorDetailOf(full.status()).has_retry_delay());
}

TEST_P(StoreTest, LeasesGoByPriorityThenAgeAndOnlyToWorkersWithTheSource) {
  Add("old");
  Add("other", 5, "generators/ffhq");
  Add("urgent", 3);
  Add("new");
  auto position = [&](const std::string& id) { return *store_->QueuePosition(*store_->Get(id)); };
  EXPECT_EQ(position("other"), 1);
  EXPECT_EQ(position("urgent"), 2);
  EXPECT_EQ(position("old"), 3);
  EXPECT_EQ(position("new"), 4);
  EXPECT_EQ(LeaseId(kW1), "urgent");
  EXPECT_EQ(LeaseId(kW1), "old");
  EXPECT_EQ(LeaseId(kW1), "new");
  EXPECT_EQ(LeaseId(kW1), "");  // "other" needs generators/ffhq
  EXPECT_EQ(LeaseId(kW2, kT0, {"generators/ffhq"}), "other");
  const v1::Job j = Job("urgent");
  EXPECT_EQ(j.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(j.attempt(), 1);
  EXPECT_EQ(j.worker(), kW1);
  EXPECT_EQ(j.stage(), v1::JOB_STAGE_LOADING);
  EXPECT_EQ(position("urgent"), 0);
}

TEST_P(StoreTest, ProgressIsSequencedAndFenced) {
  Add("a");
  ASSERT_EQ(LeaseId(kW1), "a");
  std::vector<ProgressEvent> reported(3);
  for (int i = 0; i < 2; ++i) {
    reported[i].mutable_progress()->set_stage(v1::JOB_STAGE_TRAINING_MAPPER);
    reported[i].mutable_progress()->set_step(i + 1);
    reported[i].mutable_progress()->set_total(10);
  }
  reported[2].set_log("stage 1 loaded");
  auto update = store_->ReportProgress("a", kW1, 1, reported, kT0 + absl::Seconds(1));
  ASSERT_TRUE(update.ok()) << update.status();
  ASSERT_EQ(update->events.size(), 3u);
  EXPECT_EQ(update->events[0].seq(), 3);  // 1: created, 2: leased
  EXPECT_EQ(update->events[2].log(), "stage 1 loaded");
  EXPECT_EQ(Job("a").progress().step(), 2);
  EXPECT_EQ(Job("a").stage(), v1::JOB_STAGE_TRAINING_MAPPER);

  // Another worker, or an old attempt, is fenced out.
  for (auto [worker, attempt] : {std::pair{kW2, 1}, std::pair{kW1, 2}}) {
    auto late = store_->ReportProgress("a", worker, attempt, reported, kT0);
    EXPECT_EQ(late.status().code(), absl::StatusCode::kAborted);
    EXPECT_EQ(ErrorReason(late.status()), "LEASE_LOST");
  }
  // Every event, in order, from any point.
  auto all = store_->ReadEvents("a", 0, 100);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 5u);
  for (size_t i = 0; i < all->size(); ++i) EXPECT_EQ((*all)[i].seq(), int64_t(i) + 1);
  EXPECT_EQ((*all)[1].job().state(), v1::JOB_STATE_RUNNING);
  auto tail = store_->ReadEvents("a", 3, 100);
  ASSERT_EQ(tail->size(), 2u);
  EXPECT_EQ((*tail)[0].seq(), 4);
}

TEST_P(StoreTest, CompletionSucceedsOnceAndFencesLateResults) {
  Add("a");
  ASSERT_EQ(LeaseId(kW1), "a");
  Completion done{.worker = kW1, .attempt = 1, .result = v1::JobResult()};
  done.result->set_generator("generators/a");
  auto ok = store_->Complete("a", done, kT0 + absl::Minutes(1));
  ASSERT_TRUE(ok.ok()) << ok.status();
  const v1::Job j = Job("a");
  EXPECT_EQ(j.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(j.worker(), "");
  EXPECT_TRUE(j.has_end_time());
  // A second completion (a retried RPC, a late worker) changes nothing.
  EXPECT_EQ(store_->Complete("a", done, kT0).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Job("a").event_seq(), j.event_seq());
  auto mean = store_->MeanRunTime(10);
  ASSERT_TRUE(mean.ok() && *mean);
  EXPECT_EQ(**mean, absl::Minutes(1));
  auto adapted = store_->ListAdapted(0, 10);
  ASSERT_TRUE(adapted.ok());
  ASSERT_EQ(adapted->size(), 1u);
  ASSERT_TRUE(store_->MarkGeneratorDeleted("a", kT0).ok());
  EXPECT_TRUE(store_->ListAdapted(0, 10)->empty());
  EXPECT_EQ(store_->MarkGeneratorDeleted("a", kT0).code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreTest, ErrorsRetryWhileAttemptsAreLeft) {
  Add("a");  // max_attempts 2
  ASSERT_EQ(LeaseId(kW1), "a");
  Completion failed{.worker = kW1, .attempt = 1};
  failed.error = MakeJobError(absl::StatusCode::kUnavailable, "MODEL_LOAD_FAILED", "disk");
  failed.retryable = true;
  ASSERT_TRUE(store_->Complete("a", failed, kT0).ok());
  EXPECT_EQ(Job("a").state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Job("a").failed_attempts(), 1);
  ASSERT_EQ(LeaseId(kW2), "a");
  EXPECT_EQ(Job("a").attempt(), 2);
  failed.worker = kW2;
  failed.attempt = 2;
  ASSERT_TRUE(store_->Complete("a", failed, kT0).ok());
  const v1::Job j = Job("a");
  EXPECT_EQ(j.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(j.error().reason(), "MODEL_LOAD_FAILED");
  EXPECT_EQ(j.error().metadata().at("attempts"), "2");

  // A final error fails at once.
  Add("b");
  ASSERT_EQ(LeaseId(kW1), "b");
  Completion nan{.worker = kW1, .attempt = 1};
  nan.error = MakeJobError(absl::StatusCode::kInternal, "NON_FINITE_LOSS", "stage 2 step 3");
  ASSERT_TRUE(store_->Complete("b", nan, kT0).ok());
  EXPECT_EQ(Job("b").state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(Job("b").error().reason(), "NON_FINITE_LOSS");
  EXPECT_EQ(Job("b").error().metadata().at("worker"), kW1);
}

TEST_P(StoreTest, LostLeasesRequeueThenFail) {
  Add("a");
  ASSERT_EQ(LeaseId(kW1), "a");
  // Renewed: not due.
  ASSERT_TRUE(store_->Renew("a", kW1, 1, kT0 + absl::Seconds(15)).ok());
  EXPECT_TRUE(store_->ExpireDue(kT0 + absl::Seconds(12))->empty());
  // Not renewed: back in the queue, with the failure noted.
  auto expired = store_->ExpireDue(kT0 + absl::Seconds(16));
  ASSERT_TRUE(expired.ok());
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ(Job("a").state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Job("a").error().reason(), "LEASE_EXPIRED");
  // The late worker is fenced.
  EXPECT_EQ(ErrorReason(store_->Renew("a", kW1, 1, kT0 + absl::Seconds(20)).status()), "LEASE_LOST");
  ASSERT_EQ(LeaseId(kW2, kT0 + absl::Seconds(20)), "a");
  store_->ExpireDue(kT0 + absl::Seconds(31)).IgnoreError();
  EXPECT_EQ(Job("a").state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(Job("a").error().reason(), "LEASE_EXPIRED");
}

TEST_P(StoreTest, ReleaseRequeuesWithoutCountingAFailure) {
  Add("a");
  ASSERT_EQ(LeaseId(kW1), "a");
  ASSERT_TRUE(store_->Release("a", kW1, 1, "shutting down", kT0).ok());
  EXPECT_EQ(Job("a").state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Job("a").failed_attempts(), 0);
  EXPECT_EQ(LeaseId(kW2), "a");
  EXPECT_EQ(Job("a").attempt(), 2);
}

TEST_P(StoreTest, CancelIsImmediateWhenQueuedAndWaitsForTheWorkerWhenRunning) {
  Add("q");
  Add("r", 1);
  ASSERT_EQ(LeaseId(kW1), "r");
  ASSERT_TRUE(store_->Cancel("q", kT0).ok());
  EXPECT_EQ(Job("q").state(), v1::JOB_STATE_CANCELLED);
  ASSERT_TRUE(store_->Cancel("r", kT0).ok());
  EXPECT_EQ(Job("r").state(), v1::JOB_STATE_CANCELLING);
  const int64_t seq = Job("r").event_seq();
  ASSERT_TRUE(store_->Cancel("r", kT0).ok());  // idempotent
  EXPECT_EQ(Job("r").event_seq(), seq);
  Completion stopped{.worker = kW1, .attempt = 1};
  stopped.error = MakeJobError(absl::StatusCode::kCancelled, "CANCELLED", "cancelled");
  ASSERT_TRUE(store_->Complete("r", stopped, kT0).ok());
  EXPECT_EQ(Job("r").state(), v1::JOB_STATE_CANCELLED);
  ASSERT_TRUE(store_->Cancel("r", kT0).ok());
  EXPECT_EQ(Job("r").state(), v1::JOB_STATE_CANCELLED);
}

TEST_P(StoreTest, QueueAndRunTimeLimits) {
  v1::JobSpec spec;
  spec.set_source_generator(kSource);
  *spec.mutable_max_queue_time() = ToProtoDuration(absl::Seconds(5));
  *spec.mutable_max_run_time() = ToProtoDuration(absl::Seconds(60));
  Events events;
  ASSERT_TRUE(store_->Create(NewJob("slow", spec, "", "", 2, kT0, &events), events, 100).ok());
  store_->ExpireDue(kT0 + absl::Seconds(6)).IgnoreError();
  EXPECT_EQ(Job("slow").state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(Job("slow").error().reason(), "QUEUE_TIMEOUT");

  events.clear();
  ASSERT_TRUE(store_->Create(NewJob("long", spec, "", "", 2, kT0, &events), events, 100).ok());
  ASSERT_EQ(LeaseId(kW1, kT0 + absl::Seconds(1)), "long");
  for (int s = 5; s < 60; s += 5) {  // renewed all along
    ASSERT_TRUE(store_->Renew("long", kW1, 1, kT0 + absl::Seconds(s + 10)).ok());
  }
  store_->ExpireDue(kT0 + absl::Seconds(62)).IgnoreError();
  EXPECT_EQ(Job("long").state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(Job("long").error().reason(), "RUN_TIMEOUT");
}

TEST_P(StoreTest, ListPagesNewestFirstWithFilters) {
  for (int i = 0; i < 7; ++i) Add("j" + std::to_string(i), 0, i % 2 ? "generators/ffhq" : kSource);
  ASSERT_EQ(LeaseId(kW1), "j0");
  std::vector<std::string> seen;
  std::string token;
  do {
    auto page = store_->List({}, 3, token);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const JobRow& r : page->rows) seen.push_back(r.job.name());
    token = page->next_page_token;
  } while (!token.empty());
  EXPECT_EQ(seen, (std::vector<std::string>{"jobs/j6", "jobs/j5", "jobs/j4", "jobs/j3", "jobs/j2",
                                            "jobs/j1", "jobs/j0"}));
  auto running = store_->List({.states = {v1::JOB_STATE_RUNNING}}, 10, "");
  ASSERT_EQ(running->rows.size(), 1u);
  auto ffhq = store_->List({.source_generator = "generators/ffhq"}, 10, "");
  EXPECT_EQ(ffhq->rows.size(), 3u);
  EXPECT_EQ(ErrorReason(store_->List({}, 3, "bogus").status()), "INVALID_PAGE_TOKEN");
}

TEST_P(StoreTest, EverythingSurvivesReopenAndLeasesGetAGracePeriod) {
  Add("a");
  Add("b");
  ASSERT_EQ(LeaseId(kW1), "a");
  ArtifactRecord art;
  art.artifact.set_name("jobs/a/artifacts/samples.png");
  art.artifact.set_sha256("ab");
  art.job_id = "a";
  art.attempt = 1;
  art.path = "a/samples.png";
  ASSERT_TRUE(store_->PutArtifact(art, kW1).ok());
  art.attempt = 2;  // not the lease's attempt
  EXPECT_EQ(ErrorReason(store_->PutArtifact(art, kW1)), "LEASE_LOST");
  art.attempt = 1;
  v1::Generator source;
  source.set_name(kSource);
  source.set_resolution(32);
  ASSERT_TRUE(store_->PutSource(source).ok());
  Reopen();
  EXPECT_EQ(Job("a").state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Job("b").state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(store_->ReadEvents("a", 0, 10)->size(), 2u);
  EXPECT_EQ(store_->GetArtifact("jobs/a/artifacts/samples.png")->artifact.sha256(), "ab");
  EXPECT_EQ(ErrorReason(store_->GetArtifact("jobs/a/artifacts/x").status()), "ARTIFACT_NOT_FOUND");
  EXPECT_EQ(store_->ListSources()->at(0).resolution(), 32);
  // A front that was down longer than the TTL gives its workers a TTL to reconnect.
  const absl::Time restart = kT0 + absl::Minutes(5);
  ASSERT_TRUE(store_->ExtendLeases(restart + kTtl).ok());
  EXPECT_TRUE(store_->ExpireDue(restart + absl::Seconds(1))->empty());
  EXPECT_TRUE(store_->Renew("a", kW1, 1, restart + absl::Seconds(20)).ok());
}

TEST_P(StoreTest, RefusesADatabaseOfANewerSchema) {
  ASSERT_TRUE(SetSchemaVersion(99).ok());
  auto s = OpenAnother();
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("schema version 99"), absl::string_view::npos);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName);

}  // namespace
}  // namespace restyle::server
