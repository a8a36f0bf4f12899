// restyled's metrics, on the registry Server owns (names in docs/operations.md):
//   restyle_jobs_created_total{method}          jobs accepted
//   restyle_jobs_finished_total{method,state}   jobs ended (succeeded, failed, cancelled)
//   restyle_jobs_queued{lane}                   waiting now, per lane (the autoscaling signal)
//   restyle_job_queue_wait_seconds{method}      creation to first lease
//   restyle_job_run_seconds{method,state}       lease to end
//   restyle_job_stage_seconds{stage}            mapper / generator training time of succeeded jobs
//   restyle_training_steps_total{stage}         steps reported by workers
//   restyle_generation_seconds                  a Generate call, from arrival to its last image
//   restyle_generation_request_images           images a Generate call asked for
//   restyle_images_generated_total              images relayed to clients
//   restyle_workers{state}                      connected workers: idle, training, draining
//   restyle_worker_registrations_refused_total{reason}  WORKER_ID_IN_USE, SOURCE_CONFLICT
//   grpc_server_started_total, grpc_server_handled_total{grpc_service,grpc_method,grpc_type,grpc_code},
//   grpc_server_handling_seconds{grpc_service,grpc_method,grpc_type}   every RPC (grpc_metrics.h)
//   restyle_build_info{program,version}
// Job metrics come from the committed events (Observe), so every path that
// changes a job (an RPC, a deadline, a lost lease) counts the same way.
//
// Thread-safety: thread-safe.
#ifndef RESTYLE_SERVER_METRICS_H_
#define RESTYLE_SERVER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/time/time.h"
#include "server/job_lifecycle.h"

namespace restyle::server {

class FrontMetrics {
 public:
  explicit FrontMetrics(prometheus::Registry& registry);

  // Counts what committed `events` say happened to their job.
  void Observe(const Events& events);
  // A Generate call ended after `elapsed`, having sent `images` of `asked`.
  void GenerationDone(absl::Duration elapsed, int asked, int images);
  void SetQueued(int64_t adaptation, int64_t generation);
  void SetWorkers(int idle, int training, int draining);
  // A Generate call went to another replica (forward.h).
  void GenerationForwarded();
  // Fronts on the shared store, this one included.
  void SetReplicas(int fronts);
  // A worker's registration was refused (reason WORKER_ID_IN_USE or
  // SOURCE_CONFLICT).
  void RegistrationRefused(const std::string& reason);

 private:
  prometheus::Family<prometheus::Counter>& jobs_created_;
  prometheus::Family<prometheus::Counter>& jobs_finished_;
  prometheus::Family<prometheus::Gauge>& jobs_queued_;
  prometheus::Family<prometheus::Histogram>& queue_wait_;
  prometheus::Family<prometheus::Histogram>& run_time_;
  prometheus::Family<prometheus::Histogram>& stage_time_;
  prometheus::Family<prometheus::Counter>& training_steps_;
  prometheus::Histogram& generation_seconds_;
  prometheus::Histogram& generation_images_;
  prometheus::Counter& images_generated_;
  prometheus::Family<prometheus::Gauge>& workers_;
  prometheus::Counter& forwarded_;
  prometheus::Gauge& replicas_;
  prometheus::Family<prometheus::Counter>& registrations_refused_;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_METRICS_H_
