// Closures to run at a given time, on one thread of their own (lease and
// queue deadlines, long-poll timeouts, watch heartbeats). A closure must be
// short: hand real work to an Executor.
//
// Thread-safety: thread-safe. Stop (and the destructor) drops what has not
// run and joins; RunAt after Stop does nothing.
#ifndef RESTYLE_SERVER_TIMER_QUEUE_H_
#define RESTYLE_SERVER_TIMER_QUEUE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace restyle::server {

class TimerQueue {
 public:
  using Id = uint64_t;

  TimerQueue();
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Runs `fn` at `when` (at once if it has passed). The id cancels it.
  Id RunAt(absl::Time when, std::function<void()> fn);
  Id RunAfter(absl::Duration delay, std::function<void()> fn) {
    return RunAt(absl::Now() + delay, std::move(fn));
  }
  // True when it had not run yet (and now never will).
  bool Cancel(Id id);
  // Drops every timer and joins the thread. Idempotent.
  void Stop();

 private:
  void Loop();

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Set when a timer earlier than all others arrives, to wake the loop.
  bool earlier_ ABSL_GUARDED_BY(mu_) = false;
  Id next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // By (time, id): run in time order.
  std::map<std::pair<absl::Time, Id>, std::function<void()>> timers_ ABSL_GUARDED_BY(mu_);
  std::map<Id, absl::Time> when_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_TIMER_QUEUE_H_
