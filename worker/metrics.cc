#include "worker/metrics.h"

#include <unistd.h>

#include <fstream>

#include "common/metrics.h"
#include "worker/engine/common/cpu_allocator.h"

namespace restyle::worker {
namespace {

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

WorkerMetrics::WorkerMetrics(prometheus::Registry& r)
    : steps_(prometheus::BuildCounter()
                 .Name("restyle_worker_training_steps_total")
                 .Help("Training steps run, by stage (mapper, generator)")
                 .Register(r)),
      step_seconds_(prometheus::BuildHistogram()
                        .Name("restyle_worker_step_seconds")
                        .Help("Time per training step, by stage (mapper, generator)")
                        .Register(r)),
      jobs_(prometheus::BuildCounter()
                .Name("restyle_worker_jobs_total")
                .Help("Job runs ended on this worker, by outcome (succeeded, failed, cancelled, released, lost)")
                .Register(r)),
      images_(prometheus::BuildCounter()
                  .Name("restyle_worker_images_generated_total")
                  .Help("Images drawn for Generate requests")
                  .Register(r)
                  .Add({})),
      generation_seconds_(prometheus::BuildHistogram()
                              .Name("restyle_worker_generation_seconds")
                              .Help("One engine call drawing a batch of a Generate request's images")
                              .Register(r)
                              .Add({}, DurationBuckets())),
      generation_batch_(prometheus::BuildHistogram()
                            .Name("restyle_worker_generation_batch_size")
                            .Help("Images drawn per engine call")
                            .Register(r)
                            .Add({}, CountBuckets())),
      expired_(prometheus::BuildCounter()
                   .Name("restyle_worker_generation_expired_total")
                   .Help("Generate requests ended without drawing: their deadline had passed")
                   .Register(r)
                   .Add({})),
      resident_(prometheus::BuildGauge()
                    .Name("restyle_generators_resident")
                    .Help("Adapted generators held in memory")
                    .Register(r)
                    .Add({})),
      resident_bytes_(prometheus::BuildGauge()
                          .Name("restyle_generators_resident_bytes")
                          .Help("Parameter bytes of the adapted generators held in memory")
                          .Register(r)
                          .Add({})),
      loads_(prometheus::BuildCounter()
                 .Name("restyle_generator_loads_total")
                 .Help("Adapted generators loaded into memory")
                 .Register(r)
                 .Add({})),
      load_seconds_(prometheus::BuildHistogram()
                        .Name("restyle_generator_load_seconds")
                        .Help("Loading an adapted generator into memory (a cache miss)")
                        .Register(r)
                        .Add({}, DurationBuckets())),
      evictions_(prometheus::BuildCounter()
                     .Name("restyle_generator_evictions_total")
                     .Help("Adapted generators evicted from memory (least recently used first)")
                     .Register(r)
                     .Add({})),
      rss_(prometheus::BuildGauge()
               .Name("restyle_process_resident_memory_bytes")
               .Help("Resident memory of the worker process")
               .Register(r)
               .Add({})),
      allocator_(prometheus::BuildGauge()
                     .Name("restyle_torch_cpu_allocator_bytes")
                     .Help("LibTorch's caching CPU allocator: large blocks in use (live) and kept (cached)")
                     .Register(r)) {
  for (const char* stage : {"mapper", "generator"}) steps_.Add({{"stage", stage}});
  for (const char* outcome : {"succeeded", "failed", "cancelled", "released", "lost"}) {
    jobs_.Add({{"outcome", outcome}});
  }
}

void WorkerMetrics::Step(int stage, double seconds) {
  const char* name = stage == 1 ? "mapper" : "generator";
  steps_.Add({{"stage", name}}).Increment();
  if (seconds > 0) step_seconds_.Add({{"stage", name}}, DurationBuckets()).Observe(seconds);
}

void WorkerMetrics::JobEnded(const std::string& outcome) { jobs_.Add({{"outcome", outcome}}).Increment(); }

void WorkerMetrics::Generated(int images, double seconds) {
  images_.Increment(images);
  generation_seconds_.Observe(seconds);
  generation_batch_.Observe(images);
}

void WorkerMetrics::Sample(int resident, int64_t resident_bytes) {
  resident_.Set(resident);
  resident_bytes_.Set(static_cast<double>(resident_bytes));
  rss_.Set(static_cast<double>(ResidentBytes()));
  const engine::CpuCacheStats stats = engine::GetCpuCacheStats();
  allocator_.Add({{"kind", "live"}}).Set(static_cast<double>(stats.live_bytes));
  allocator_.Add({{"kind", "cached"}}).Set(static_cast<double>(stats.cached_bytes));
}

}  // namespace restyle::worker
