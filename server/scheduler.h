// The front's scheduler: who the workers are, and which work goes to which.
//
// Workers register (device, memory, models, version) and then pull: each
// keeps one long poll open per lane (PollWork). The adaptation lane is the
// job store's queue (priority, then age); a job is leased only to a worker
// that has its source generator, inside a store transaction. The generation
// lane is an in-memory queue of Generate calls (interactive, so it never
// waits behind an adaptation, and lost with the client's stream anyway),
// bounded by what the workers can hold: a call is refused with
// RESOURCE_EXHAUSTED when every worker with its source has its own bounded
// queue full. A task goes to a polling worker that has its source: one that
// holds the adapted generator in memory when one is free enough (not
// training, under half its queue), otherwise the least loaded (a training
// worker counts as loaded: it draws images only between training steps). A
// poll takes as many tasks as its worker has room for, so requests for one
// generator reach the worker together and it can batch them. Tasks whose
// deadline passes in the queue are ended (DEADLINE_EXCEEDED) without a worker
// seeing them.
// Workers that stop calling for a lease period are dropped; their in-flight
// generation tasks fail with UNAVAILABLE (the client retries) and their
// leased jobs move when the leases expire (the store's deadlines, applied
// every tick).
//
// Thread-safety: thread-safe. Store work runs on the store executor; no
// method blocks on the store.
#ifndef RESTYLE_SERVER_SCHEDULER_H_
#define RESTYLE_SERVER_SCHEDULER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "restyle/v1/restyle_service.pb.h"
#include "restyle/worker/v1/worker_service.pb.h"
#include "server/event_hub.h"
#include "server/executor.h"
#include "server/job_store.h"
#include "server/reactors.h"
#include "server/timer_queue.h"

namespace restyle::server {

namespace wv1 = restyle::worker::v1;

struct SchedulerOptions {
  // This front's id (Worker.front of the workers connected to it).
  std::string front_id;
  // A lease not renewed for this long is lost; a worker not heard from for
  // this long is dropped.
  absl::Duration lease_ttl = absl::Seconds(10);
  // What workers are told to heartbeat at.
  absl::Duration heartbeat_interval = absl::Seconds(2);
  // Generate calls waiting for a worker, at most.
  int max_generation_queue = 256;
  // The longest a PollWork waits before answering "nothing".
  absl::Duration max_poll_wait = absl::Seconds(20);
  // How often deadlines and stale workers are checked.
  absl::Duration tick = absl::Milliseconds(500);
};

// A Generate call: queued, then served by one worker.
struct GenerationTask {
  wv1::GenerateTask task;  // what the worker is sent (task_id, seeds, ...)
  std::string source;      // "generators/{id}" of the source generator
  // The client's stream.
  std::shared_ptr<ServerStream<v1::GenerateResponse>> stream;
  // When the call arrived.
  absl::Time submitted = absl::Now();
  // Images written so far (set by the SendImages handler).
  int images_sent = 0;
  // The client's deadline.
  absl::Time deadline = absl::InfiniteFuture();
};

class Scheduler {
 public:
  Scheduler(const SchedulerOptions& options, JobStore* store, Executor* store_executor,
            TimerQueue* timers, EventHub* hub);
  ~Scheduler();

  // Ends the ticks and answers every waiting poll (UNAVAILABLE). Call
  // before stopping the timers and executors it uses. Idempotent.
  void Stop();

  // Loads the source generators recorded before a restart. Call once at start.
  absl::Status LoadSources();
  // Called whenever whether a worker is ready changes (health).
  void OnReadinessChange(std::function<void(bool ready)> fn);

  // --- workers --------------------------------------------------------------
  // Registers (or re-registers) a worker; records its sources; answers a
  // fresh session secret (the same one to a re-registration of the same
  // process). Refused, and nothing changes:
  //   ALREADY_EXISTS (WORKER_ID_IN_USE): the id is registered and alive
  //     with another instance_key (a live worker cannot be taken over);
  //   FAILED_PRECONDITION (SOURCE_CONFLICT): a source id it brings is
  //     recorded with other weights, resolution or source_text (adapted
  //     generators of that source were trained on the recorded weights,
  //     and later jobs take its source_text).
  absl::StatusOr<wv1::RegisterWorkerResponse> Register(const wv1::RegisterWorkerRequest& request);
  // A heartbeat: NOT_FOUND (reason WORKER_UNKNOWN) for a worker not
  // registered (the front restarted, or dropped it): register again. A
  // heartbeat with `leaving` forgets the worker at once.
  absl::Status Heartbeat(const wv1::HeartbeatRequest& request, const std::string& session);
  // OK when `worker` ("workers/{id}") is registered and `session` is the
  // session it was given (and marks it seen): NOT_FOUND (WORKER_UNKNOWN)
  // or PERMISSION_DENIED (WORKER_SESSION_INVALID) otherwise.
  absl::Status CheckWorker(const std::string& worker, const std::string& session);
  std::vector<v1::Worker> Workers() const;
  struct WorkerCounts {
    int idle = 0, training = 0, draining = 0;
  };
  WorkerCounts CountWorkers() const;
  // Workers that are not draining and have `source` (any source when
  // empty), this front's and the other fronts'.
  int ReadyWorkers(const std::string& source = "") const;

  // --- sources --------------------------------------------------------------
  // Every source generator known (connected workers or recorded), by name,
  // with ready_workers filled in.
  std::vector<v1::Generator> Sources() const;
  std::optional<v1::Generator> Source(const std::string& name) const;

  // --- the adaptation lane ----------------------------------------------------
  // A worker's long poll for a job: answered with a leased AdaptTask, or
  // empty after `wait` (at most max_poll_wait).
  void PollAdaptation(const std::string& worker, std::shared_ptr<LongUnary> call,
                      wv1::PollWorkResponse* response, absl::Duration wait);
  // A job was queued (created, requeued, released): waiting workers try to
  // lease again.
  void QueueChanged();

  // --- the generation lane ---------------------------------------------------
  // Queues a Generate call. UNAVAILABLE (NO_WORKER) when no connected worker
  // has its source, RESOURCE_EXHAUSTED (QUEUE_FULL) when the lane is full,
  // UNAVAILABLE (DRAINING) while the front shuts down.
  absl::Status SubmitGeneration(std::shared_ptr<GenerationTask> task);
  // A worker's long poll for up to `max_tasks` generation tasks.
  void PollGeneration(const std::string& worker, std::shared_ptr<LongUnary> call,
                      wv1::PollWorkResponse* response, absl::Duration wait, int max_tasks);
  // The in-flight task `task_id` of `worker` (nullptr when it is not, e.g.
  // the client went away).
  std::shared_ptr<GenerationTask> InFlight(const std::string& task_id, const std::string& worker);
  // The task ended (its stream finished); forgets it.
  void GenerationDone(const std::string& task_id);
  // The client of a queued or in-flight task went away.
  void CancelGeneration(const std::string& task_id);
  // A queued or running Generate call uses `generator`.
  bool GeneratorInUse(const std::string& generator) const;
  size_t generation_queued() const;

  absl::Duration lease_ttl() const { return options_.lease_ttl; }

  // --- other fronts on the same store (replicas.h) ------------------------------
  struct Peer {
    std::string front;    // its id
    std::string address;  // its API port, HOST:PORT
    std::vector<v1::Worker> workers;  // its ready workers
  };
  // What the other fronts said last. Their workers count in Workers(),
  // ReadyWorkers() (so in Sources() and queue ETAs) and in readiness; jobs
  // reach them through the store. Generate calls are served by this
  // front's own workers only (see PeerWith).
  void SetPeers(std::vector<Peer> peers);
  // This front's ready workers, as it tells the other fronts.
  std::vector<v1::Worker> LocalReadyWorkers() const;
  // The address of another front with a ready worker that has `source`
  // (the least busy), "" when none has.
  std::string PeerWith(const std::string& source) const;

  // Stops handing out work: polls answer empty, new Generate calls are
  // refused (UNAVAILABLE). Running jobs keep their leases.
  void Drain();
  bool draining() const;

  // Applies deadlines (lease expiry, time limits) and drops stale workers.
  // Runs every options.tick on its own; public for tests.
  void Tick();

 private:
  struct Worker {
    v1::Worker info;
    std::string session;       // the session secret it was given
    std::string instance_key;  // sha256 of its process's key
    std::set<std::string> sources;  // generator names
    bool can_adapt = false;         // has CLIP models
    bool draining = false;
    absl::Time last_seen;
    int max_tasks = 4;   // its generation queue's bound
    int generating = 0;  // generation tasks in flight on it
  };
  struct Waiter {
    uint64_t id = 0;
    std::string worker;
    std::shared_ptr<LongUnary> call;
    wv1::PollWorkResponse* response = nullptr;
    TimerQueue::Id timer = 0;
    absl::Time deadline;  // when it answers "nothing"
    bool trying = false;  // a lease attempt is running on the store executor
    int room = 1;         // generation: tasks it takes at most
    std::vector<std::shared_ptr<GenerationTask>> assigned;  // generation: matched
  };
  struct InFlightTask {
    std::shared_ptr<GenerationTask> task;
    std::string worker;
  };

  void ScheduleTick();
  // Adaptation: starts a lease attempt for waiter `w` (trying set by caller).
  void TryLease(std::shared_ptr<Waiter> w);
  void FinishWaiterEmpty(const std::shared_ptr<Waiter>& w);
  std::shared_ptr<Waiter> AddWaiter(std::map<uint64_t, std::shared_ptr<Waiter>>& waiters,
                                    const std::string& worker, std::shared_ptr<LongUnary> call,
                                    wv1::PollWorkResponse* response, absl::Duration wait)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveWaiter(uint64_t id);
  // Generation: what MatchGenerationLocked decided, to carry out outside
  // the lock (AnswerGeneration).
  struct GenerationMatches {
    std::vector<std::shared_ptr<Waiter>> answers;  // each with its tasks assigned
    std::vector<std::shared_ptr<GenerationTask>> expired;
  };
  // Matches queued tasks with waiting workers, and takes expired tasks out.
  GenerationMatches MatchGenerationLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AnswerGeneration(GenerationMatches matches);
  void AddInFlightLocked(const std::shared_ptr<GenerationTask>& task, const std::string& worker)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseInFlightLocked(const std::string& task_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets a worker: its in-flight tasks go to `lost`, its polls to
  // `polls` (both to be finished outside the lock).
  void DropWorkerLocked(const std::string& name, std::vector<std::shared_ptr<GenerationTask>>* lost,
                        std::vector<std::shared_ptr<Waiter>>* polls)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool WorkerReady(const Worker& w, absl::Time now) const;
  // The names of the sources a registration brings; those new here, or
  // with another description, go to `changed` (to record). SOURCE_CONFLICT
  // for one recorded with other weights, resolution or source_text.
  absl::StatusOr<std::vector<std::string>> OfferedSourcesLocked(
      const wv1::RegisterWorkerRequest& request, absl::Time now,
      std::vector<v1::Generator>* changed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The worker `name` when `session` is its session (see CheckWorker).
  absl::StatusOr<Worker*> FindWorkerLocked(const std::string& name, const std::string& session)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateReadiness();
  void PublishAll(const std::vector<JobUpdate>& updates);

  const SchedulerOptions options_;
  JobStore* const store_;
  Executor* const store_executor_;
  TimerQueue* const timers_;
  EventHub* const hub_;

  mutable absl::Mutex mu_;
  std::map<std::string, Worker> workers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Generator> sources_ ABSL_GUARDED_BY(mu_);
  std::vector<Peer> peers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_waiter_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::shared_ptr<Waiter>> adapt_waiters_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::shared_ptr<Waiter>> generation_waiters_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<GenerationTask>> generation_queue_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, InFlightTask> in_flight_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<bool> ready_ ABSL_GUARDED_BY(mu_);  // as last reported
  std::function<void(bool)> on_readiness_ ABSL_GUARDED_BY(mu_);
  TimerQueue::Id tick_timer_ ABSL_GUARDED_BY(mu_) = 0;
  bool tick_running_ = false;  // only touched on the store executor
  // Bumped by QueueChanged: a lease attempt that found nothing retries when
  // it changed meanwhile.
  std::atomic<uint64_t> queue_epoch_{0};
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_SCHEDULER_H_
