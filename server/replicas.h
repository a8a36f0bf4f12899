// Several fronts on one shared store (PostgreSQL): each is a replica that
// any client or worker may call. Jobs, their events, leases and artifacts'
// records are in the store, so every replica answers for every job; this
// class keeps a front informed of the others:
//
// - Heartbeat: every `heartbeat` the front records itself in the store (its
//   id, the address of its API port, its ready workers) and reads the
//   others' records. The scheduler counts their workers (ListWorkers,
//   readiness, ready_workers and ETAs) and Generate calls that no worker of
//   this front can serve go to a front whose worker can (forward.h). It
//   also reloads the source generators other fronts' workers announced.
// - Changes: the store hands over the job changes other fronts commit
//   (PostgreSQL's LISTEN/NOTIFY). One that queued a job wakes this front's
//   waiting workers; one with events reaches this front's WatchJob and
//   WaitJob calls (read back from the store, relayed to the hub; job
//   metrics count only what each front changed, so their sum over the
//   replicas counts every change once).
// - A bound for lost notifications: every heartbeat, this front's waiting
//   workers try to lease again; after the store's listening connection
//   comes back, and every `reread` in any case, every followed job is read
//   again (its newest event relayed when it is newer than the last one
//   relayed), so a watcher whose notification was lost ends all the same.
//
// A starting front gives the held leases two lease periods (for their
// workers to reconnect) only when no other front is live: otherwise the
// workers are renewing them through the others.
//
// Thread-safety: thread-safe. Store work runs on the store executor.
#ifndef RESTYLE_SERVER_REPLICAS_H_
#define RESTYLE_SERVER_REPLICAS_H_

#include <atomic>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/event_hub.h"
#include "server/executor.h"
#include "server/job_store.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "server/timer_queue.h"

namespace restyle::server {

class Replicas {
 public:
  struct Options {
    std::string id;       // this front's, random per start
    std::string address;  // HOST:PORT of its API port, for the others
    absl::Duration heartbeat = absl::Seconds(1);
    // Fronts not heard from for this long are not counted.
    absl::Duration front_ttl = absl::Seconds(5);
    // How often every followed job is read again.
    absl::Duration reread = absl::Seconds(5);
  };

  // How many other fronts are live: their records were refreshed within
  // `options.front_ttl` and again within the next 1.5 heartbeats (waited
  // for only when there are records; a front killed a moment ago is not
  // live). A starting front that finds any leaves the held leases as they
  // are.
  static absl::StatusOr<int> OthersLive(JobStore* store, const Options& options);

  // `metrics` may be null.
  Replicas(Options options, JobStore* store, Scheduler* scheduler, EventHub* hub,
           Executor* store_executor, TimerQueue* timers, FrontMetrics* metrics);

  // Records this front, follows the others' changes and starts the
  // heartbeat. Call once, after the scheduler exists.
  absl::Status Start();
  // Tells the others this front is draining (no Generate calls are sent to
  // it; its workers stay counted until they move).
  void Drain();
  // Ends the heartbeat and removes this front's record. Call before the
  // store executor stops.
  void Stop();

  const Options& options() const { return options_; }

 private:
  void ScheduleBeat();
  void Beat();
  void OnChange(const StoreChange& change);
  void OnGap();
  // Reads job `id`'s events first_seq..last_seq and relays them to its
  // followers.
  void RelayEvents(const std::string& id, int64_t first_seq, int64_t last_seq);
  // Reads every followed job and relays its newest event when it is newer
  // than the last one relayed (`always`: in any case). On the store executor.
  void RereadFollowed(bool always);

  const Options options_;
  JobStore* const store_;
  Scheduler* const scheduler_;
  EventHub* const hub_;
  Executor* const store_executor_;
  TimerQueue* const timers_;
  FrontMetrics* const metrics_;
  const absl::Time started_ = absl::Now();
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<TimerQueue::Id> beat_timer_{0};
  bool warned_ = false;  // only touched on the store executor
  // The newest event relayed of each followed job, and when all were read
  // again last (both only touched on the store executor).
  std::map<std::string, int64_t> relayed_;
  absl::Time last_reread_ = absl::Now();
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_REPLICAS_H_
