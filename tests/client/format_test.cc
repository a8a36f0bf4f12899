// -o json of a list is one JSON document; a stage's line says the ETA it
// has, or its time once done.
#include "client/format.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "common/time.h"

namespace restyle::client {
namespace {

TEST(JsonList, OneDocumentWithTheListAlwaysPresent) {
  google::protobuf::RepeatedPtrField<v1::Job> jobs;
  EXPECT_EQ(JsonList("jobs", jobs), "{\"jobs\":[]}");
  jobs.Add()->set_name("jobs/a");
  jobs.Add()->set_name("jobs/b");
  EXPECT_EQ(JsonList("jobs", jobs), "{\"jobs\":[{\"name\":\"jobs/a\"},{\"name\":\"jobs/b\"}]}");
  EXPECT_EQ(JsonList("jobs", jobs, "v1.\"2\""),
            "{\"jobs\":[{\"name\":\"jobs/a\"},{\"name\":\"jobs/b\"}],\"nextPageToken\":\"v1.\\\"2\\\"\"}");
}

v1::JobProgress Progress(v1::JobStage stage, int64_t step, int64_t total, absl::Duration eta) {
  v1::JobProgress p;
  p.set_stage(stage);
  p.set_step(step);
  p.set_total(total);
  (*p.mutable_losses())["total"] = 2.5;
  (*p.mutable_losses())["loss"] = 0.5;
  *p.mutable_eta() = ToProtoDuration(eta);
  return p;
}

TEST(ProgressLine, EndsWithTheTimingGiven) {
  const v1::JobProgress p = Progress(v1::JOB_STAGE_TRAINING_MAPPER, 300, 300, absl::Seconds(16));
  const std::string line = ProgressLine(p, 2, 8, "done in 41s");
  EXPECT_EQ(line, "stage 1/2 mapper    [########]  300/300  loss 2.5000  done in 41s");
  EXPECT_FALSE(absl::StrContains(line, "ETA"));
}

TEST(WorkerEta, AnEarlierStagesEtaIsTheJobs) {
  EXPECT_EQ(WorkerEta(Progress(v1::JOB_STAGE_TRAINING_MAPPER, 10, 300, absl::Seconds(28)), 2), "job ETA 28s");
  EXPECT_EQ(WorkerEta(Progress(v1::JOB_STAGE_FINE_TUNING_GENERATOR, 10, 300, absl::Seconds(12)), 2), "ETA 12s");
  EXPECT_EQ(WorkerEta(Progress(v1::JOB_STAGE_FINE_TUNING_GENERATOR, 10, 300, absl::Seconds(12)), 1), "ETA 12s");
  EXPECT_EQ(WorkerEta(v1::JobProgress(), 2), "");
}

}  // namespace
}  // namespace restyle::client
