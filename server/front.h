// What the front's RPC handlers share: the stores, the scheduler, the
// executors and the limits. Owned by Server (server.h); handlers hold a
// pointer for their lifetime.
#ifndef RESTYLE_SERVER_FRONT_H_
#define RESTYLE_SERVER_FRONT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "restyle/v1/generator.pb.h"
#include "restyle/v1/job.pb.h"
#include "server/artifact_store.h"
#include "server/auth.h"
#include "server/event_hub.h"
#include "server/executor.h"
#include "server/forward.h"
#include "server/job_store.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "server/timer_queue.h"

namespace restyle::engine {
class Tokenizer;
}  // namespace restyle::engine

namespace restyle::server {

struct FrontLimits {
  // Jobs QUEUED at most; one more is RESOURCE_EXHAUSTED (QUEUE_FULL).
  int64_t max_queued_jobs = 1000;
  // Runs a job may fail (lost lease, worker error) before it is FAILED.
  int max_attempts = 3;
  // Events a watcher may fall behind by before it is dropped.
  size_t max_watch_backlog = 10000;
  // WatchJob and WaitJob calls following one job at once; one more is
  // RESOURCE_EXHAUSTED (TOO_MANY_WATCHERS).
  size_t max_watchers_per_job = 100;
  // The same for all jobs together (each follower of a queued job reads the
  // store every second).
  size_t max_watchers = 10000;
};

struct Front {
  FrontLimits limits;
  JobStore* store = nullptr;
  ArtifactStore* artifacts = nullptr;
  EventHub* hub = nullptr;
  Scheduler* scheduler = nullptr;
  // Store transactions (one thread: SQLite has one writer).
  Executor* store_executor = nullptr;
  // Artifact file I/O.
  Executor* io_executor = nullptr;
  TimerQueue* timers = nullptr;
  // The API port's clients (auth.h).
  const Authenticator* auth = nullptr;
  // The worker port's workers.
  const Authenticator* worker_auth = nullptr;
  // Counted here too (may be null in tests).
  FrontMetrics* metrics = nullptr;
  // Generate calls for other fronts' workers (null with one front).
  Forwarder* forwarder = nullptr;
  // CLIP's tokenizer: job texts are checked with it at create.
  const engine::Tokenizer* tokenizer = nullptr;
  std::atomic<bool> draining{false};

  // The gate of every API and worker call: the token, and while draining
  // UNAVAILABLE (reason DRAINING) for calls that bring new work.
  absl::Status Admit(const grpc::ServerContextBase& context, bool new_work) const;

  // `row`'s job with its queue position and ETA filled in (store reads).
  v1::Job Decorate(const JobRow& row) const;

  // The adapted generator of a succeeded job.
  v1::Generator AdaptedGenerator(const v1::Job& job) const;

  // NOT_FOUND (JOB_NOT_FOUND) unless `id` names a job.
  absl::StatusOr<JobRow> GetJob(const std::string& id) const { return store->Get(id); }

  // Publishes the events of store updates to watchers.
  void Publish(const JobUpdate& update) const;

  // A unary call answered from the store executor: an error in `admitted`
  // is the answer at once; otherwise `work` runs there (filling the
  // response) and its status is the answer.
  grpc::ServerUnaryReactor* OnStore(grpc::CallbackServerContext* context,
                                    const absl::Status& admitted,
                                    std::function<absl::Status()> work) const;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_FRONT_H_
