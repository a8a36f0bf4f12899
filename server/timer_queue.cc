#include "server/timer_queue.h"

namespace restyle::server {

TimerQueue::TimerQueue() : thread_([this] { Loop(); }) {}

TimerQueue::~TimerQueue() { Stop(); }

void TimerQueue::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  thread_.join();
  absl::MutexLock lock(&mu_);
  timers_.clear();
  when_.clear();
}

TimerQueue::Id TimerQueue::RunAt(absl::Time when, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return 0;
  const Id id = next_id_++;
  if (timers_.empty() || when < timers_.begin()->first.first) earlier_ = true;
  timers_.emplace(std::make_pair(when, id), std::move(fn));
  when_.emplace(id, when);
  return id;
}

bool TimerQueue::Cancel(Id id) {
  absl::MutexLock lock(&mu_);
  auto it = when_.find(id);
  if (it == when_.end()) return false;
  timers_.erase(std::make_pair(it->second, id));
  when_.erase(it);
  return true;
}

void TimerQueue::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const absl::Time now = absl::Now();
    if (!timers_.empty() && timers_.begin()->first.first <= now) {
      auto it = timers_.begin();
      std::function<void()> fn = std::move(it->second);
      when_.erase(it->first.second);
      timers_.erase(it);
      mu_.Unlock();
      fn();
      mu_.Lock();
      continue;
    }
    const absl::Time wake = timers_.empty() ? absl::InfiniteFuture() : timers_.begin()->first.first;
    earlier_ = false;
    mu_.AwaitWithDeadline(absl::Condition(
                              +[](TimerQueue* q) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                return q->stopping_ || q->earlier_;
                              },
                              this),
                          wake);
  }
}

}  // namespace restyle::server
