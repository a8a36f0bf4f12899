#include "server/worker_service.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/names.h"
#include "common/status.h"
#include "common/time.h"
#include "server/artifact_stream.h"

namespace restyle::server {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

void Reply(CallbackServerContext* context, ServerUnaryReactor* reactor, const absl::Status& status) {
  reactor->Finish(ToGrpcStatus(status, context));
}

// The job id of "jobs/{id}" in a worker's report.
absl::StatusOr<std::string> JobIdOf(const std::string& name) { return ParseName(name, kJobs, "job"); }

// The session secret a worker's call carries (metadata
// "restyle-worker-session"; "" when none).
std::string SessionOf(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("restyle-worker-session");
  return it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
}

// The gate of every worker call but RegisterWorker: a worker's credentials,
// and `worker` registered with the session the call carries.
absl::Status AdmitWorker(const Front* front, const grpc::ServerContextBase& context,
                         const std::string& worker) {
  RESTYLE_RETURN_IF_ERROR(front->worker_auth->Check(context));
  return front->scheduler->CheckWorker(worker, SessionOf(context));
}

// Admits the call (AdmitWorker), then runs `work` on the store executor.
template <typename Work>
ServerUnaryReactor* OnStore(Front* front, CallbackServerContext* context, const std::string& worker,
                            Work work) {
  return front->OnStore(context, AdmitWorker(front, *context, worker), work);
}

// Events one ReportProgress may carry (the worker sends fewer at a time).
constexpr int kMaxEventsPerReport = 1000;

// Whether a renewal's error says the lease is gone (moved, expired, its job
// deleted or its name malformed), as opposed to a store that failed.
bool LeaseIsGone(const absl::Status& status) {
  const std::string reason = ErrorReason(status);
  return reason == "LEASE_LOST" || reason == "JOB_NOT_FOUND" ||
         status.code() == absl::StatusCode::kInvalidArgument;
}

absl::Status StatusOfJobError(const v1::JobError& e) {
  const auto code = static_cast<absl::StatusCode>(e.code());
  ErrorMetadata metadata(e.metadata().begin(), e.metadata().end());
  return ErrorWithReason(code == absl::StatusCode::kOk ? absl::StatusCode::kInternal : code,
                         e.reason(), e.message(), metadata);
}

// --- UploadArtifact ---------------------------------------------------------------

class UploadReactor : public grpc::ServerReadReactor<wv1::UploadArtifactRequest> {
 public:
  UploadReactor(Front* front, CallbackServerContext* context, wv1::UploadArtifactResponse* response)
      : front_(front), context_(context), response_(response) {
    absl::Status admitted = front->worker_auth->Check(*context);
    if (!admitted.ok()) {
      Finish(ToGrpcStatus(admitted, context_));
      return;
    }
    StartRead(&message_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the worker sent everything
      if (upload_ == nullptr) return End(InvalidField("header", "the upload sent no header"));
      front_->io_executor->Schedule([this] {
        absl::StatusOr<v1::Artifact> artifact = upload_->Commit();
        if (artifact.ok()) *response_->mutable_artifact() = *artifact;
        End(artifact.status());
      });
      return;
    }
    if (upload_ == nullptr) {
      if (!message_.has_header()) return End(InvalidField("header", "the first message must be the header"));
      front_->io_executor->Schedule([this] {
        const wv1::UploadArtifactRequest::Header& h = message_.header();
        absl::Status status = front_->scheduler->CheckWorker(h.worker(), SessionOf(*context_));
        absl::StatusOr<std::string> job_id = JobIdOf(h.job());
        if (status.ok()) status = job_id.status();
        if (status.ok()) {
          absl::StatusOr<std::unique_ptr<ArtifactStore::Upload>> upload =
              front_->artifacts->BeginUpload(*job_id, h.worker(), h.attempt(), h.file(), h.kind(),
                                             h.size_bytes(), h.sha256());
          status = upload.status();
          if (upload.ok()) upload_ = *std::move(upload);
        }
        if (!status.ok()) return End(status);
        StartRead(&message_);
      });
      return;
    }
    if (!message_.has_data()) return End(InvalidField("data", "after the header, only data"));
    front_->io_executor->Schedule([this] {
      absl::Status status = upload_->Append(message_.data());
      if (!status.ok()) return End(status);
      StartRead(&message_);
    });
  }

  void OnDone() override { delete this; }

 private:
  void End(const absl::Status& status) { Finish(ToGrpcStatus(status, context_)); }

  Front* const front_;
  CallbackServerContext* const context_;
  wv1::UploadArtifactResponse* const response_;
  wv1::UploadArtifactRequest message_;
  std::unique_ptr<ArtifactStore::Upload> upload_;
};

// --- SendImages ----------------------------------------------------------------------

// Relays a worker's images to the Generate call they belong to. The next
// image is read only while the client's stream has fewer than kMaxAhead
// waiting, so a slow client slows the worker's stream instead of filling the
// front's memory.
class ImagesReactor : public grpc::ServerReadReactor<wv1::SendImagesRequest>,
                      public std::enable_shared_from_this<ImagesReactor> {
 public:
  static constexpr size_t kMaxAhead = 4;

  static ImagesReactor* Start(Front* front, CallbackServerContext* context) {
    auto reactor = std::shared_ptr<ImagesReactor>(new ImagesReactor(front, context));
    reactor->self_ = reactor;
    absl::Status admitted = front->worker_auth->Check(*context);
    if (!admitted.ok()) {
      reactor->End(false, admitted);
    } else {
      reactor->Read();
    }
    return reactor.get();
  }

  void OnReadDone(bool ok) override {
    // reading_ stays set while this message is handled: a write's callback
    // must not start the next read (and run its OnReadDone beside this one).
    std::shared_ptr<GenerationTask> task;
    {
      absl::MutexLock lock(&mu_);
      task = task_;
    }
    if (!ok) return End(/*worker_done=*/true, absl::OkStatus());
    if (task == nullptr) {
      if (!message_.has_header()) {
        return End(false, InvalidField("header", "the first message must be the header"));
      }
      if (absl::Status admitted = front_->scheduler->CheckWorker(message_.header().worker(),
                                                                  SessionOf(*context_));
          !admitted.ok()) {
        return End(false, admitted);
      }
      task = front_->scheduler->InFlight(message_.header().task_id(), message_.header().worker());
      if (task == nullptr) return End(false, absl::CancelledError("the request is gone (its client left)"));
      {
        absl::MutexLock lock(&mu_);
        task_ = task;
      }
      std::weak_ptr<ImagesReactor> weak = weak_from_this();
      task->stream->OnWritten([weak](size_t queued) {
        if (auto self = weak.lock(); self && queued < kMaxAhead) self->Read();
      });
      task->stream->OnCancel([weak] {
        if (auto self = weak.lock()) self->ClientLeft();
      });
      return ReadNext(/*now=*/true);
    }
    if (message_.has_error()) {
      task->stream->Finish(StatusOfJobError(message_.error()));
      return End(false, absl::OkStatus());
    }
    if (!message_.has_image()) return End(false, InvalidField("image", "expected an image"));
    const int want = task->task.seeds_size();
    bool overrun;
    {
      absl::MutexLock lock(&mu_);
      overrun = task->images_sent >= want || message_.image().index() < 0 ||
                message_.image().index() >= want;
    }
    if (overrun) {
      // What the client never asked for is not sent on: both calls end, the
      // worker's first (once the client's ends, its last write's callback
      // may read on and take the worker's end for a task done).
      End(false, InvalidField("image.index", absl::StrCat("more images than the task's ", want,
                                                          " seeds, or an index outside them")));
      task->stream->Finish(ErrorWithReason(
          absl::StatusCode::kInternal, "WORKER_PROTOCOL",
          absl::StrCat("the worker sent an image beyond the ", want, " asked for; retry")));
      return;
    }
    v1::GenerateResponse out;
    wv1::SendImagesRequest::Image* image = message_.mutable_image();
    out.set_seed(image->seed());
    out.set_index(image->index());
    out.set_width(image->width());
    out.set_height(image->height());
    out.set_allocated_png(image->release_png());
    // Counted before the write: once written, the client stream's OnWritten
    // may start the next read, whose end can run before this line would.
    {
      absl::MutexLock lock(&mu_);
      ++task->images_sent;
    }
    if (!task->stream->Write(std::move(out))) return End(false, absl::CancelledError("the client left"));
    // Otherwise the client stream's OnWritten asks for the next one.
    ReadNext(/*now=*/false);
  }

  void OnDone() override {
    std::shared_ptr<ImagesReactor> self;
    self.swap(self_);  // the last reference, unless a callback holds one
  }

 private:
  ImagesReactor(Front* front, CallbackServerContext* context) : front_(front), context_(context) {}

  // The message read last is handled: the next read starts now (`now`),
  // or when the client's stream has room (now, or from its OnWritten).
  void ReadNext(bool now) {
    std::shared_ptr<GenerationTask> task;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      task = task_;
    }
    if (now || task == nullptr || task->stream->queued() < kMaxAhead) Read();
  }

  // Starts the next read unless one is running (or its message is being
  // handled) or the call ended.
  void Read() {
    {
      absl::MutexLock lock(&mu_);
      if (ended_ || reading_) return;
      reading_ = true;
    }
    StartRead(&message_);
  }
  void ClientLeft() {
    {
      absl::MutexLock lock(&mu_);
      if (reading_) return;  // the read's end will see the closed stream
    }
    End(false, absl::CancelledError("the client left"));
  }

  // Ends the worker's call; `worker_done`: the worker sent all it had.
  void End(bool worker_done, const absl::Status& status) {
    std::shared_ptr<GenerationTask> task;
    {
      absl::MutexLock lock(&mu_);
      if (ended_) return;
      ended_ = true;
      task = task_;
    }
    if (task != nullptr) {
      if (worker_done) {
        const int want = task->task.seeds_size();
        int sent;
        {
          absl::MutexLock lock(&mu_);
          sent = task->images_sent;
        }
        if (front_->metrics != nullptr) {
          front_->metrics->GenerationDone(absl::Now() - task->submitted, want, sent);
        }
        if (sent == want) {
          task->stream->Finish(absl::OkStatus());
        } else {
          task->stream->Finish(ErrorWithReason(
              absl::StatusCode::kUnavailable, "WORKER_LOST",
              absl::StrCat("the worker stopped after ", sent, " of ", want, " images; retry")));
        }
      }
      front_->scheduler->GenerationDone(task->task.task_id());
    }
    Finish(ToGrpcStatus(status, context_));
  }

  Front* const front_;
  CallbackServerContext* const context_;
  absl::Mutex mu_;
  std::shared_ptr<ImagesReactor> self_;  // alive until OnDone (set once, before any call)
  wv1::SendImagesRequest message_;
  std::shared_ptr<GenerationTask> task_ ABSL_GUARDED_BY(mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = false;  // a read is outstanding or being handled
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

ServerUnaryReactor* WorkerService::RegisterWorker(CallbackServerContext* context,
                                                  const wv1::RegisterWorkerRequest* request,
                                                  wv1::RegisterWorkerResponse* response) {
  ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = front_->worker_auth->Check(*context);
  if (status.ok() && !IsValidId(request->worker_id())) {
    status = InvalidField("worker_id", "worker_id must be 1-63 lower-case letters, digits and '-'");
  }
  for (const wv1::SourceModel& m : request->sources()) {
    if (status.ok() && !IsValidId(m.id(), true)) {
      status = InvalidField("sources.id", absl::StrCat("source id \"", m.id(), "\" is not valid"));
    }
  }
  if (status.ok() && request->instance_key().size() > 256) {
    status = InvalidField("instance_key", "instance_key is 256 bytes at most");
  }
  absl::StatusOr<wv1::RegisterWorkerResponse> registered =
      status.ok() ? front_->scheduler->Register(*request)
                  : absl::StatusOr<wv1::RegisterWorkerResponse>(status);
  if (!registered.ok()) {
    if (status.ok()) {  // refused by the scheduler: an operator wants to know
      spdlog::warn("registration of workers/{} from {} refused: {}", request->worker_id(),
                   request->hostname(), StatusText(registered.status()));
      if (front_->metrics != nullptr) {
        front_->metrics->RegistrationRefused(ErrorReason(registered.status()));
      }
    }
    Reply(context, reactor, registered.status());
    return reactor;
  }
  *response = *std::move(registered);
  // Leases it held before the front restarted stay its own.
  Front* front = front_;
  front_->store_executor->Schedule([front, context, reactor, request, response] {
    for (const wv1::Lease& lease : request->leases()) {
      absl::StatusOr<std::string> id = JobIdOf(lease.job());
      if (!id.ok()) continue;
      absl::StatusOr<JobUpdate> renewed =
          front->store->Renew(*id, response->worker(), lease.attempt(),
                              absl::Now() + FromProtoDuration(response->lease_ttl()));
      if (!renewed.ok()) {
        spdlog::info("{} came back without its lease on {}: {}", response->worker(), lease.job(),
                     std::string(renewed.status().message()));
      }
    }
    Reply(context, reactor, absl::OkStatus());
  });
  return reactor;
}

ServerUnaryReactor* WorkerService::Heartbeat(CallbackServerContext* context,
                                             const wv1::HeartbeatRequest* request,
                                             wv1::HeartbeatResponse* response) {
  ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = front_->worker_auth->Check(*context);
  if (status.ok()) status = front_->scheduler->Heartbeat(*request, SessionOf(*context));
  if (!status.ok()) {
    Reply(context, reactor, status);
    return reactor;
  }
  Front* front = front_;
  front_->store_executor->Schedule([front, context, reactor, request, response] {
    const absl::Time expire = absl::Now() + front->scheduler->lease_ttl();
    for (const wv1::Lease& lease : request->leases()) {
      wv1::LeaseStatus* s = response->add_leases();
      s->set_job(lease.job());
      s->set_attempt(lease.attempt());
      absl::StatusOr<std::string> id = JobIdOf(lease.job());
      absl::StatusOr<JobUpdate> renewed =
          id.ok() ? front->store->Renew(*id, request->worker(), lease.attempt(), expire)
                  : absl::StatusOr<JobUpdate>(id.status());
      if (!renewed.ok() && !LeaseIsGone(renewed.status())) {
        // The store failed (unreachable, busy, full): the lease may well be
        // valid. The call fails as an unreachable front does; the worker
        // goes on and renews with its next heartbeat.
        response->clear_leases();
        Reply(context, reactor,
              Annotate(renewed.status(), absl::StrCat("renewing the lease on ", lease.job())));
        return;
      }
      if (!renewed.ok()) {
        s->set_state(wv1::LeaseStatus::STATE_LOST);
      } else if (renewed->row.job.state() == v1::JOB_STATE_CANCELLING) {
        s->set_state(wv1::LeaseStatus::STATE_CANCEL_REQUESTED);
      } else {
        s->set_state(wv1::LeaseStatus::STATE_ACTIVE);
      }
    }
    Reply(context, reactor, absl::OkStatus());
  });
  return reactor;
}

ServerUnaryReactor* WorkerService::PollWork(CallbackServerContext* context,
                                            const wv1::PollWorkRequest* request,
                                            wv1::PollWorkResponse* response) {
  auto call = LongUnary::Create(context);
  absl::Status status = AdmitWorker(front_, *context, request->worker());
  if (status.ok() && request->lane() != wv1::LANE_ADAPTATION &&
      request->lane() != wv1::LANE_GENERATION) {
    status = InvalidField("lane", "lane must be LANE_ADAPTATION or LANE_GENERATION");
  }
  if (!status.ok()) {
    call->Finish([&] { return status; });
    return call->reactor();
  }
  const absl::Duration wait = FromProtoDuration(request->wait());
  if (request->lane() == wv1::LANE_ADAPTATION) {
    front_->scheduler->PollAdaptation(request->worker(), call, response, wait);
  } else {
    front_->scheduler->PollGeneration(request->worker(), call, response, wait,
                                      request->max_tasks());
  }
  return call->reactor();
}

ServerUnaryReactor* WorkerService::ReportProgress(CallbackServerContext* context,
                                                  const wv1::ReportProgressRequest* request,
                                                  wv1::ReportProgressResponse* response) {
  Front* front = front_;
  return OnStore(front, context, request->worker(), [front, request, response]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(const std::string id, JobIdOf(request->job()));
    if (request->events_size() > kMaxEventsPerReport) {
      return InvalidField("events", absl::StrCat(request->events_size(), " events in one report; ",
                                                 kMaxEventsPerReport, " at most"));
    }
    std::vector<wv1::ProgressEvent> events(request->events().begin(), request->events().end());
    RESTYLE_ASSIGN_OR_RETURN(JobUpdate update,
                             front->store->ReportProgress(id, request->worker(), request->attempt(),
                                                          events, absl::Now()));
    front->Publish(update);
    response->set_cancel_requested(update.row.job.state() == v1::JOB_STATE_CANCELLING);
    return absl::OkStatus();
  });
}

grpc::ServerReadReactor<wv1::UploadArtifactRequest>* WorkerService::UploadArtifact(
    CallbackServerContext* context, wv1::UploadArtifactResponse* response) {
  return new UploadReactor(front_, context, response);
}

grpc::ServerWriteReactor<wv1::DownloadArtifactResponse>* WorkerService::DownloadArtifact(
    CallbackServerContext* context, const wv1::DownloadArtifactRequest* request) {
  absl::Status admitted = AdmitWorker(front_, *context, request->worker());
  if (admitted.ok()) admitted = ParseArtifactName(request->name(), "name").status();
  return StreamArtifact<wv1::DownloadArtifactResponse>(context, front_->artifacts,
                                                       front_->io_executor, request->name(),
                                                       admitted);
}

ServerUnaryReactor* WorkerService::CompleteJob(CallbackServerContext* context,
                                               const wv1::CompleteJobRequest* request,
                                               wv1::CompleteJobResponse* response) {
  Front* front = front_;
  return OnStore(front, context, request->worker(), [front, request, response]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(const std::string id, JobIdOf(request->job()));
    Completion completion;
    completion.worker = request->worker();
    completion.attempt = request->attempt();
    if (request->has_result()) {
      // The front's own records say what was uploaded; the result must have
      // its generator and record.
      RESTYLE_ASSIGN_OR_RETURN(std::vector<ArtifactRecord> records, front->store->ListArtifacts(id));
      v1::JobResult result = request->result();
      result.clear_artifacts();
      bool has_delta = false, has_record = false;
      for (const ArtifactRecord& r : records) {
        const bool this_attempt = r.attempt == request->attempt();
        has_delta |= this_attempt && r.artifact.kind() == "generator_delta";
        has_record |= this_attempt && r.artifact.kind() == "result";
        if (r.artifact.kind() == "samples") result.set_samples(r.artifact.name());
        *result.add_artifacts() = r.artifact;
      }
      if (!has_delta || !has_record) {
        return ErrorWithReason(absl::StatusCode::kFailedPrecondition, "ARTIFACT_MISSING",
                               absl::StrCat(request->job(), " attempt ", request->attempt(),
                                            ": upload the generator delta and result record "
                                            "before completing"));
      }
      result.set_generator(MakeName(kGenerators, id));
      completion.result = std::move(result);
    } else {
      completion.error = request->error();
      completion.retryable = request->retryable();
    }
    RESTYLE_ASSIGN_OR_RETURN(JobUpdate update, front->store->Complete(id, completion, absl::Now()));
    front->Publish(update);
    const v1::Job& job = update.row.job;
    if (job.state() == v1::JOB_STATE_QUEUED) {
      spdlog::warn("{} attempt {} failed on {} ({}); queued again", job.name(), request->attempt(),
                   request->worker(), request->error().reason());
      front->scheduler->QueueChanged();
    } else if (job.state() == v1::JOB_STATE_SUCCEEDED) {
      spdlog::info("{} succeeded on {}: {}", job.name(), request->worker(), job.result().generator());
    } else {
      spdlog::info("{} ended {} on {}: {} {}", job.name(), v1::JobState_Name(job.state()),
                   request->worker(), job.error().reason(), job.error().message());
    }
    *response->mutable_job() = job;
    return absl::OkStatus();
  });
}

ServerUnaryReactor* WorkerService::ReleaseJob(CallbackServerContext* context,
                                              const wv1::ReleaseJobRequest* request,
                                              wv1::ReleaseJobResponse*) {
  Front* front = front_;
  return OnStore(front, context, request->worker(), [front, request]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(const std::string id, JobIdOf(request->job()));
    RESTYLE_ASSIGN_OR_RETURN(JobUpdate update,
                             front->store->Release(id, request->worker(), request->attempt(),
                                                   request->reason(), absl::Now()));
    front->Publish(update);
    spdlog::info("{} released by {} ({}); now {}", request->job(), request->worker(),
                 request->reason(), v1::JobState_Name(update.row.job.state()));
    front->scheduler->QueueChanged();
    return absl::OkStatus();
  });
}

grpc::ServerReadReactor<wv1::SendImagesRequest>* WorkerService::SendImages(
    CallbackServerContext* context, wv1::SendImagesResponse*) {
  return ImagesReactor::Start(front_, context);
}

}  // namespace restyle::server
