#include "server/front.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/names.h"
#include "common/status.h"
#include "common/time.h"

namespace restyle::server {

absl::Status Front::Admit(const grpc::ServerContextBase& context, bool new_work) const {
  RESTYLE_RETURN_IF_ERROR(auth->Check(context));
  if (new_work && draining.load()) {
    return ErrorWithReason(absl::StatusCode::kUnavailable, "DRAINING",
                           "the front is shutting down; retry in a moment (it restarts, or "
                           "another replica answers)",
                           {}, absl::Seconds(1));
  }
  return absl::OkStatus();
}

v1::Job Front::Decorate(const JobRow& row) const {
  v1::Job job = row.job;
  if (job.state() != v1::JOB_STATE_QUEUED) return job;
  absl::StatusOr<int64_t> position = store->QueuePosition(row);
  if (!position.ok()) return job;
  job.set_queue_position(*position);
  absl::StatusOr<std::optional<absl::Duration>> mean = store->MeanRunTime(20);
  if (mean.ok() && *mean) {
    const int workers = std::max(1, scheduler->ReadyWorkers(job.spec().source_generator()));
    // Jobs ahead and this one, spread over the workers that can run them.
    const double rounds = std::ceil(static_cast<double>(*position) / workers);
    *job.mutable_queue_eta() = ToProtoDuration(**mean * rounds);
  }
  return job;
}

v1::Generator Front::AdaptedGenerator(const v1::Job& job) const {
  const std::string id = job.name().substr(sizeof(kJobs));
  v1::Generator g;
  g.set_name(MakeName(kGenerators, id));
  g.set_kind(v1::GENERATOR_KIND_ADAPTED);
  if (std::optional<v1::Generator> source = scheduler->Source(job.spec().source_generator())) {
    g.set_resolution(source->resolution());
  }
  for (const v1::Artifact& a : job.result().artifacts()) {
    if (a.kind() == "generator_delta") g.set_size_bytes(a.size_bytes());
  }
  g.set_digest(job.result().generator_digest());
  g.set_description(absl::StrCat(job.spec().source_generator(), " -> \"",
                                 job.spec().target_text(), "\""));
  v1::Lineage& l = *g.mutable_lineage();
  l.set_source_generator(job.spec().source_generator());
  l.set_source_text(job.spec().source_text());
  l.set_target_text(job.spec().target_text());
  l.set_method(job.spec().method() == v1::METHOD_UNSPECIFIED ? v1::METHOD_IPL : job.spec().method());
  l.set_job(job.name());
  if (job.spec().has_seed()) l.set_seed(job.spec().seed());
  *l.mutable_settings() = job.spec().settings();
  l.set_source_digest(job.result().source_digest());
  *g.mutable_create_time() = job.end_time();
  return g;
}

grpc::ServerUnaryReactor* Front::OnStore(grpc::CallbackServerContext* context,
                                         const absl::Status& admitted,
                                         std::function<absl::Status()> work) const {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!admitted.ok()) {
    reactor->Finish(ToGrpcStatus(admitted, context));
    return reactor;
  }
  store_executor->Schedule([context, reactor, work = std::move(work)] {
    reactor->Finish(ToGrpcStatus(work(), context));
  });
  return reactor;
}

void Front::Publish(const JobUpdate& update) const {
  hub->Publish(update.row.job.name().substr(sizeof(kJobs)), update.events);
}

}  // namespace restyle::server
