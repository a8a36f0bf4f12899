// restyle-worker's metrics, on the registry the Worker owns (served at
// --metrics-port; names in docs/operations.md):
//   restyle_worker_training_steps_total{stage}        steps trained (mapper, generator)
//   restyle_worker_step_seconds{stage}                time per training step
//   restyle_worker_jobs_total{outcome}                job runs ended (succeeded, failed,
//                                                     cancelled, released, lost)
//   restyle_worker_images_generated_total             images drawn for Generate requests
//   restyle_worker_generation_seconds                 one engine call of a generation batch
//   restyle_worker_generation_batch_size              images per such call
//   restyle_worker_generation_expired_total           requests ended unserved: deadline passed
//   restyle_generators_resident, restyle_generators_resident_bytes
//   restyle_generator_loads_total, restyle_generator_evictions_total
//   restyle_generator_load_seconds                    loading one (a cache miss)
//   restyle_process_resident_memory_bytes             the process' RSS
//   restyle_torch_cpu_allocator_bytes{kind}           the caching CPU allocator (live, cached)
//   restyle_build_info{program,version}
//
// Thread-safety: thread-safe.
#ifndef RESTYLE_WORKER_METRICS_H_
#define RESTYLE_WORKER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

namespace restyle::worker {

class WorkerMetrics {
 public:
  explicit WorkerMetrics(prometheus::Registry& registry);

  // A training step of stage 1 or 2 took `seconds`.
  void Step(int stage, double seconds);
  void JobEnded(const std::string& outcome);
  void Generated(int images, double seconds);
  void GenerationExpired() { expired_.Increment(); }
  void GeneratorLoaded(double seconds) {
    loads_.Increment();
    load_seconds_.Observe(seconds);
  }
  void GeneratorEvicted() { evictions_.Increment(); }
  // Refreshes the gauges (resident generators, memory).
  void Sample(int resident, int64_t resident_bytes);

 private:
  prometheus::Family<prometheus::Counter>& steps_;
  prometheus::Family<prometheus::Histogram>& step_seconds_;
  prometheus::Family<prometheus::Counter>& jobs_;
  prometheus::Counter& images_;
  prometheus::Histogram& generation_seconds_;
  prometheus::Histogram& generation_batch_;
  prometheus::Counter& expired_;
  prometheus::Gauge& resident_;
  prometheus::Gauge& resident_bytes_;
  prometheus::Counter& loads_;
  prometheus::Histogram& load_seconds_;
  prometheus::Counter& evictions_;
  prometheus::Gauge& rss_;
  prometheus::Family<prometheus::Gauge>& allocator_;
};

}  // namespace restyle::worker

#endif  // RESTYLE_WORKER_METRICS_H_
