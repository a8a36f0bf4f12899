// Fan-out of committed job events to whoever follows the job (WatchJob
// streams, WaitJob calls), the events this front committed and, with
// several fronts, those the others did (Relay). A follower may therefore
// see a job's events out of order or with gaps, and reads the store to
// fill them (JobWatch does). Publishing never blocks: each subscriber gets the
// events through its own callback, which must only queue them (a
// ServerStream drops a subscriber that cannot keep up, without slowing the
// others or the worker that reported them).
//
// Thread-safety: thread-safe. Callbacks run on the publishing thread,
// outside the hub's lock, and may unsubscribe.
#ifndef RESTYLE_SERVER_EVENT_HUB_H_
#define RESTYLE_SERVER_EVENT_HUB_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/job_lifecycle.h"

namespace restyle::server {

class EventHub {
 public:
  using Id = uint64_t;
  using Callback = std::function<void(const Events& events)>;

  // `callback` receives every event of job `job_id` published from now on.
  Id Subscribe(const std::string& job_id, Callback callback);
  void Unsubscribe(const std::string& job_id, Id id);

  // Hands committed events of a job to its subscribers (and first to the
  // observer, which sees every job's).
  void Publish(const std::string& job_id, const Events& events);
  // Hands events another front committed (replicas.h) to the subscribers
  // only: the observer counts what this front changed.
  void Relay(const std::string& job_id, const Events& events);
  // Set once, before any Publish (metrics).
  void SetObserver(Callback observer) { observer_ = std::move(observer); }

  // Subscribers of all jobs (for tests and metrics), and of one.
  size_t subscribers() const;
  size_t subscribers(const std::string& job_id) const;
  // The jobs someone follows.
  std::vector<std::string> jobs() const;

 private:
  Callback observer_;
  mutable absl::Mutex mu_;
  Id next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, std::map<Id, Callback>> subscribers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_EVENT_HUB_H_
