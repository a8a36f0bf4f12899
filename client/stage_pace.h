// The pace of one training stage as a follower sees it: from the progress
// events' steps and the times the front recorded them (JobEvent.time, so a
// watch that replays the past at once still sees the past's pace), the
// stage's own ETA and, once it has ended, how long it ran.
//
// The worker's JobProgress.eta is not the stage's: it is the time left in
// this stage and the later ones (stage 1's includes the engine's estimate of
// stage 2). The bar of a stage shows this class's ETA instead, and the
// worker's only for the last stage, where the two mean the same.
//
// Thread-safety: not thread-safe (one View owns one).
#ifndef RESTYLE_CLIENT_STAGE_PACE_H_
#define RESTYLE_CLIENT_STAGE_PACE_H_

#include <cstdint>
#include <optional>

#include "absl/time/time.h"

namespace restyle::client {

class StagePace {
 public:
  // Step `step` of `total` ended at `time`. A step lower than the last one
  // seen starts over (a new attempt runs the stage again).
  void Observe(int64_t step, int64_t total, absl::Time time);

  // Time left in the stage at the pace seen so far (from the first step
  // seen to the last); nullopt until two different steps were seen, or once
  // the last step was.
  std::optional<absl::Duration> Eta() const;

  // How long the stage has run up to its last step seen: the time since its
  // first step seen, plus the steps before that at the pace seen; nullopt
  // until two different steps were seen (or the stage was seen from its
  // first step).
  std::optional<absl::Duration> Elapsed() const;

  // The last step seen was the stage's last.
  bool done() const { return total_ > 0 && last_step_ >= total_; }
  int64_t last_step() const { return last_step_; }

 private:
  // Seconds per step between the first and the last step seen.
  std::optional<double> SecondsPerStep() const;

  int64_t total_ = 0;
  int64_t first_step_ = -1;
  int64_t last_step_ = -1;
  absl::Time first_time_;
  absl::Time last_time_;
};

}  // namespace restyle::client

#endif  // RESTYLE_CLIENT_STAGE_PACE_H_
