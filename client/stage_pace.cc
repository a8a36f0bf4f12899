#include "client/stage_pace.h"

namespace restyle::client {

void StagePace::Observe(int64_t step, int64_t total, absl::Time time) {
  if (first_step_ < 0 || step < last_step_ || total != total_) {
    first_step_ = step;
    first_time_ = time;
  }
  total_ = total;
  last_step_ = step;
  last_time_ = time;
}

std::optional<double> StagePace::SecondsPerStep() const {
  if (first_step_ < 0 || last_step_ <= first_step_) return std::nullopt;
  return absl::ToDoubleSeconds(last_time_ - first_time_) / static_cast<double>(last_step_ - first_step_);
}

std::optional<absl::Duration> StagePace::Eta() const {
  const std::optional<double> per_step = SecondsPerStep();
  if (!per_step || done()) return std::nullopt;
  return absl::Seconds(*per_step * static_cast<double>(total_ - last_step_));
}

std::optional<absl::Duration> StagePace::Elapsed() const {
  const std::optional<double> per_step = SecondsPerStep();
  if (!per_step) return std::nullopt;
  return (last_time_ - first_time_) + absl::Seconds(*per_step * static_cast<double>(first_step_));
}

}  // namespace restyle::client
