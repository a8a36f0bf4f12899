#include "server/metrics.h"

#include "common/metrics.h"
#include "common/time.h"

namespace restyle::server {
namespace {

const char* MethodLabel(const v1::JobSpec& spec) {
  return spec.method() == v1::METHOD_NADA ? "nada" : "ipl";
}

const char* StateLabel(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_SUCCEEDED: return "succeeded";
    case v1::JOB_STATE_FAILED: return "failed";
    case v1::JOB_STATE_CANCELLED: return "cancelled";
    default: return "other";
  }
}

}  // namespace

FrontMetrics::FrontMetrics(prometheus::Registry& r)
    : jobs_created_(prometheus::BuildCounter()
                        .Name("restyle_jobs_created_total")
                        .Help("Adaptation jobs accepted, by method")
                        .Register(r)),
      jobs_finished_(prometheus::BuildCounter()
                         .Name("restyle_jobs_finished_total")
                         .Help("Adaptation jobs ended, by method and final state")
                         .Register(r)),
      jobs_queued_(prometheus::BuildGauge()
                       .Name("restyle_jobs_queued")
                       .Help("Work waiting for a worker, by lane (adaptation: jobs; generation: requests)")
                       .Register(r)),
      queue_wait_(prometheus::BuildHistogram()
                      .Name("restyle_job_queue_wait_seconds")
                      .Help("Time from a job's creation to its first lease")
                      .Register(r)),
      run_time_(prometheus::BuildHistogram()
                    .Name("restyle_job_run_seconds")
                    .Help("Time from a job's (last) lease to its end, by method and final state")
                    .Register(r)),
      stage_time_(prometheus::BuildHistogram()
                      .Name("restyle_job_stage_seconds")
                      .Help("Training time of a succeeded job's stages (mapper, generator)")
                      .Register(r)),
      training_steps_(prometheus::BuildCounter()
                          .Name("restyle_training_steps_total")
                          .Help("Training steps reported by workers, by stage (mapper, generator)")
                          .Register(r)),
      generation_seconds_(prometheus::BuildHistogram()
                              .Name("restyle_generation_seconds")
                              .Help("Generate calls, from arrival to the last image sent")
                              .Register(r)
                              .Add({}, DurationBuckets())),
      generation_images_(prometheus::BuildHistogram()
                             .Name("restyle_generation_request_images")
                             .Help("Images a Generate call asked for")
                             .Register(r)
                             .Add({}, CountBuckets())),
      images_generated_(prometheus::BuildCounter()
                            .Name("restyle_images_generated_total")
                            .Help("Images relayed from workers to clients")
                            .Register(r)
                            .Add({})),
      workers_(prometheus::BuildGauge()
                   .Name("restyle_workers")
                   .Help("Connected workers by state (idle, training, draining)")
                   .Register(r)),
      forwarded_(prometheus::BuildCounter()
                     .Name("restyle_generate_forwarded_total")
                     .Help("Generate calls sent to another replica, whose worker had the source")
                     .Register(r)
                     .Add({})),
      replicas_(prometheus::BuildGauge()
                    .Name("restyle_front_replicas")
                    .Help("Fronts serving the job database, this one included (1 with SQLite)")
                    .Register(r)
                    .Add({})),
      registrations_refused_(prometheus::BuildCounter()
                                 .Name("restyle_worker_registrations_refused_total")
                                 .Help("Worker registrations refused, by reason (WORKER_ID_IN_USE: "
                                       "a live worker's id; SOURCE_CONFLICT: a source recorded "
                                       "with other weights or texts)")
                                 .Register(r)) {
  replicas_.Set(1);
  // Series that exist before anything happens, so dashboards and alerts see 0.
  for (const char* method : {"ipl", "nada"}) jobs_created_.Add({{"method", method}});
  for (const char* lane : {"adaptation", "generation"}) jobs_queued_.Add({{"lane", lane}});
  for (const char* stage : {"mapper", "generator"}) training_steps_.Add({{"stage", stage}});
  for (const char* state : {"idle", "training", "draining"}) workers_.Add({{"state", state}});
  for (const char* reason : {"WORKER_ID_IN_USE", "SOURCE_CONFLICT"}) {
    registrations_refused_.Add({{"reason", reason}});
  }
}

void FrontMetrics::GenerationForwarded() { forwarded_.Increment(); }

void FrontMetrics::SetReplicas(int fronts) { replicas_.Set(fronts); }

void FrontMetrics::RegistrationRefused(const std::string& reason) {
  registrations_refused_.Add({{"reason", reason}}).Increment();
}

void FrontMetrics::Observe(const Events& events) {
  for (const v1::JobEvent& e : events) {
    if (e.has_progress()) {
      const v1::JobStage stage = e.progress().stage();
      if (stage == v1::JOB_STAGE_TRAINING_MAPPER) training_steps_.Add({{"stage", "mapper"}}).Increment();
      if (stage == v1::JOB_STAGE_FINE_TUNING_GENERATOR) {
        training_steps_.Add({{"stage", "generator"}}).Increment();
      }
      continue;
    }
    if (!e.has_job()) continue;
    const v1::Job& job = e.job();
    const char* method = MethodLabel(job.spec());
    switch (job.state()) {
      case v1::JOB_STATE_QUEUED:
        if (job.attempt() == 0) jobs_created_.Add({{"method", method}}).Increment();
        break;
      case v1::JOB_STATE_RUNNING:
        if (job.attempt() == 1) {
          queue_wait_.Add({{"method", method}}, DurationBuckets())
              .Observe(absl::ToDoubleSeconds(FromProtoTime(job.start_time()) - FromProtoTime(job.create_time())));
        }
        break;
      case v1::JOB_STATE_SUCCEEDED:
      case v1::JOB_STATE_FAILED:
      case v1::JOB_STATE_CANCELLED: {
        const char* state = StateLabel(job.state());
        jobs_finished_.Add({{"method", method}, {"state", state}}).Increment();
        if (job.has_start_time()) {
          run_time_.Add({{"method", method}, {"state", state}}, DurationBuckets())
              .Observe(absl::ToDoubleSeconds(FromProtoTime(job.end_time()) - FromProtoTime(job.start_time())));
        }
        if (job.state() == v1::JOB_STATE_SUCCEEDED) {
          const v1::JobResult& r = job.result();
          if (r.stage1().steps() > 0) {
            stage_time_.Add({{"stage", "mapper"}}, DurationBuckets())
                .Observe(absl::ToDoubleSeconds(FromProtoDuration(r.stage1().duration())));
          }
          stage_time_.Add({{"stage", "generator"}}, DurationBuckets())
              .Observe(absl::ToDoubleSeconds(FromProtoDuration(r.stage2().duration())));
        }
        break;
      }
      default:
        break;
    }
  }
}

void FrontMetrics::GenerationDone(absl::Duration elapsed, int asked, int images) {
  generation_seconds_.Observe(absl::ToDoubleSeconds(elapsed));
  generation_images_.Observe(asked);
  images_generated_.Increment(images);
}

void FrontMetrics::SetQueued(int64_t adaptation, int64_t generation) {
  jobs_queued_.Add({{"lane", "adaptation"}}).Set(static_cast<double>(adaptation));
  jobs_queued_.Add({{"lane", "generation"}}).Set(static_cast<double>(generation));
}

void FrontMetrics::SetWorkers(int idle, int training, int draining) {
  workers_.Add({{"state", "idle"}}).Set(idle);
  workers_.Add({{"state", "training"}}).Set(training);
  workers_.Add({{"state", "draining"}}).Set(draining);
}

}  // namespace restyle::server
