// A stage's own ETA from the pace seen, and its time once done (the bar of a
// finished stage says "done in 41s", never an ETA).
#include "client/stage_pace.h"

#include <gtest/gtest.h>

namespace restyle::client {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1700000000);

// Steps `from`..`to` of `total`, one every `step` from kStart + from*step.
void Steps(StagePace& pace, int64_t from, int64_t to, int64_t total, absl::Duration step) {
  for (int64_t s = from; s <= to; ++s) pace.Observe(s, total, kStart + s * step);
}

TEST(StagePace, NoEtaBeforeTwoSteps) {
  StagePace pace;
  EXPECT_EQ(pace.Eta(), std::nullopt);
  pace.Observe(1, 300, kStart);
  EXPECT_EQ(pace.Eta(), std::nullopt);
  EXPECT_EQ(pace.Elapsed(), std::nullopt);
  EXPECT_FALSE(pace.done());
}

TEST(StagePace, EtaIsTheStagesOwnAtThePaceSeen) {
  StagePace pace;
  Steps(pace, 1, 100, 300, absl::Milliseconds(100));
  ASSERT_TRUE(pace.Eta().has_value());
  EXPECT_NEAR(absl::ToDoubleSeconds(*pace.Eta()), 20.0, 1e-6);  // 200 steps at 0.1 s
  EXPECT_NEAR(absl::ToDoubleSeconds(*pace.Elapsed()), 10.0, 1e-6);
}

TEST(StagePace, DoneHasItsTimeAndNoEta) {
  StagePace pace;
  Steps(pace, 1, 300, 300, absl::Milliseconds(100));
  EXPECT_TRUE(pace.done());
  EXPECT_EQ(pace.Eta(), std::nullopt);
  EXPECT_NEAR(absl::ToDoubleSeconds(*pace.Elapsed()), 30.0, 1e-6);
}

TEST(StagePace, FollowedFromTheMiddleCountsTheStepsBefore) {
  StagePace pace;
  Steps(pace, 150, 300, 300, absl::Milliseconds(100));
  EXPECT_NEAR(absl::ToDoubleSeconds(*pace.Elapsed()), 30.0, 1e-6);
}

TEST(StagePace, UsesTheEventsTimesNotWhenTheyArrive) {
  // A watch replays the past at once: the events' times keep its pace.
  StagePace pace;
  Steps(pace, 1, 50, 100, absl::Seconds(1));
  EXPECT_NEAR(absl::ToDoubleSeconds(*pace.Eta()), 50.0, 1e-6);
}

TEST(StagePace, ALowerStepStartsOver) {
  StagePace pace;
  Steps(pace, 1, 200, 300, absl::Milliseconds(100));
  pace.Observe(1, 300, kStart + absl::Seconds(100));  // a new attempt
  EXPECT_EQ(pace.Eta(), std::nullopt);
  pace.Observe(2, 300, kStart + absl::Seconds(101));
  EXPECT_NEAR(absl::ToDoubleSeconds(*pace.Eta()), 298.0, 1e-6);
}

}  // namespace
}  // namespace restyle::client
