#include "server/api_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/job_spec.h"
#include "common/names.h"
#include "common/sha256.h"
#include "common/status.h"
#include "common/time.h"
#include "server/artifact_stream.h"
#include "server/validate.h"

namespace restyle::server {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

constexpr char kDeltaFile[] = "generator_delta.safetensors";
constexpr char kResultFile[] = "result.json";

// Replies on a default unary reactor (from any thread).
void Reply(CallbackServerContext* context, ServerUnaryReactor* reactor, const absl::Status& status) {
  reactor->Finish(ToGrpcStatus(status, context));
}

// Checks the call (a token; no new work while draining), then runs `work` on
// the store executor.
template <typename Work>
ServerUnaryReactor* OnStore(Front* front, CallbackServerContext* context, bool new_work, Work work) {
  return front->OnStore(context, front->Admit(*context, new_work), work);
}

std::string IdOf(const std::string& name) { return name.substr(name.find('/') + 1); }

// The deadline of a call as absl::Time (InfiniteFuture when none).
absl::Time DeadlineOf(const CallbackServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

// --- WatchJob -----------------------------------------------------------------

// One watcher: catches up from the store (in pages, as fast as the client
// reads), then forwards live events (deduplicated by seq), and while the job
// waits in the queue sends a queue update whenever its position changes.
// Ends after the event that shows the job finished.
//
// Catching up and going live without a gap: events are published only
// after they are committed, so an event published while catching up is in
// the store; it is noted (missed_live_) and read again before going live.
// Live events that leave a gap after the last one sent (with several
// fronts, another front's events are relayed later than this one's own)
// send the watch back to catching up.
class JobWatch : public std::enable_shared_from_this<JobWatch> {
 public:
  JobWatch(Front* front, std::string job_id, int64_t after_seq,
           std::shared_ptr<ServerStream<v1::JobEvent>> stream)
      : front_(front),
        job_id_(std::move(job_id)),
        page_(static_cast<int>(std::clamp<size_t>(front->limits.max_watch_backlog / 2, 1, 500))),
        last_sent_(after_seq),
        stream_(std::move(stream)) {}

  void Start() {
    auto self = shared_from_this();
    hub_id_ = front_->hub->Subscribe(job_id_, [self](const Events& events) { self->Live(events); });
    stream_->OnCancel([self] { self->Stop(); });
    // Catching up, the next page is read once the client took most of the last.
    stream_->OnWritten([self](size_t) {
      {
        absl::MutexLock lock(&self->mu_);
        // The count now (not the one of this write, which may predate the page).
        if (!self->waiting_for_client_ ||
            self->stream_->queued() > static_cast<size_t>(self->page_ / 2)) {
          return;
        }
        self->waiting_for_client_ = false;
      }
      self->front_->store_executor->Schedule([self] { self->CatchUp(); });
    });
    front_->store_executor->Schedule([self] { self->CatchUp(); });
  }

 private:
  // Sends the next page of stored events; at the end, goes live.
  void CatchUp() {
    int64_t after;
    {
      absl::MutexLock lock(&mu_);
      after = last_sent_;
      missed_live_ = false;
    }
    absl::StatusOr<Events> events = front_->store->ReadEvents(job_id_, after, page_);
    if (!events.ok()) return End(events.status());
    bool ended = false;
    bool full_page = static_cast<int>(events->size()) == page_;
    {
      absl::MutexLock lock(&mu_);
      for (const v1::JobEvent& e : *events) ended |= SendLocked(e);
      if (!ended && full_page) {
        waiting_for_client_ = true;  // OnWritten reads the next page
        return;
      }
      if (!ended && missed_live_) full_page = true;  // read again before going live
      if (!ended && !full_page) catching_up_ = false;
    }
    if (ended) return End(absl::OkStatus());
    if (full_page) {
      front_->store_executor->Schedule([self = shared_from_this()] { self->CatchUp(); });
      return;
    }
    absl::StatusOr<JobRow> row = front_->store->Get(job_id_);
    if (!row.ok()) return End(row.status());
    bool done;
    {
      absl::MutexLock lock(&mu_);
      done = IsTerminal(row->job.state()) && last_sent_ >= row->job.event_seq();
    }
    if (done) return End(absl::OkStatus());
    if (row->job.state() == v1::JOB_STATE_QUEUED) QueueUpdate();
  }

  void Live(const Events& events) {
    bool ended = false;
    {
      absl::MutexLock lock(&mu_);
      if (catching_up_) {
        missed_live_ = true;  // it is in the store: CatchUp reads it
        return;
      }
      if (events.back().seq() > last_sent_ + static_cast<int64_t>(events.size())) {
        // Events between are missing (another front committed them and
        // their relay is behind this front's own): they are in the store.
        catching_up_ = true;
        front_->store_executor->Schedule([self = shared_from_this()] { self->CatchUp(); });
        return;
      }
      for (const v1::JobEvent& e : events) ended |= SendLocked(e);
    }
    if (ended || stream_->closed()) End(absl::OkStatus());
  }

  // Sends `e` unless it was sent; true when it shows the job ended.
  bool SendLocked(const v1::JobEvent& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (e.seq() <= last_sent_) return false;
    last_sent_ = e.seq();
    stream_->Write(e);
    return e.has_job() && IsTerminal(e.job().state());
  }

  // While queued: the position now, then again every second when it moved.
  void QueueUpdate() {
    if (stream_->closed()) return Stop();
    absl::StatusOr<JobRow> row = front_->store->Get(job_id_);
    if (!row.ok() || row->job.state() != v1::JOB_STATE_QUEUED) return;
    const v1::Job job = front_->Decorate(*row);
    {
      absl::MutexLock lock(&mu_);
      if (job.queue_position() != last_position_) {
        last_position_ = job.queue_position();
        v1::JobEvent e;
        e.set_seq(last_sent_);
        *e.mutable_time() = ToProtoTime(absl::Now());
        e.mutable_queue()->set_position(job.queue_position());
        *e.mutable_queue()->mutable_eta() = job.queue_eta();
        stream_->Write(std::move(e));
      }
    }
    auto self = shared_from_this();
    front_->timers->RunAfter(absl::Seconds(1), [self] {
      self->front_->store_executor->Schedule([self] { self->QueueUpdate(); });
    });
  }

  void End(const absl::Status& status) {
    stream_->Finish(status);
    Stop();
  }
  void Stop() { front_->hub->Unsubscribe(job_id_, hub_id_); }

  Front* const front_;
  const std::string job_id_;
  const int page_;  // events read from the store at a time
  absl::Mutex mu_;
  int64_t last_sent_ ABSL_GUARDED_BY(mu_);
  bool catching_up_ ABSL_GUARDED_BY(mu_) = true;
  bool missed_live_ ABSL_GUARDED_BY(mu_) = false;
  bool waiting_for_client_ ABSL_GUARDED_BY(mu_) = false;
  int64_t last_position_ ABSL_GUARDED_BY(mu_) = -1;
  std::shared_ptr<ServerStream<v1::JobEvent>> stream_;
  EventHub::Id hub_id_ = 0;
};

// OK while job `id`, and the front, have fewer followers (WatchJob,
// WaitJob) than their limits.
absl::Status RoomToWatch(const Front& front, const std::string& id) {
  if (front.hub->subscribers() >= front.limits.max_watchers) {
    return ErrorWithReason(absl::StatusCode::kResourceExhausted, "TOO_MANY_WATCHERS",
                           absl::StrCat("this front already has ", front.limits.max_watchers,
                                        " watchers of jobs (restyled --max-watchers); retry when "
                                        "some have ended, or another replica"),
                           {}, absl::Seconds(1));
  }
  if (front.hub->subscribers(id) < front.limits.max_watchers_per_job) return absl::OkStatus();
  return ErrorWithReason(absl::StatusCode::kResourceExhausted, "TOO_MANY_WATCHERS",
                         absl::StrCat("jobs/", id, " already has ", front.limits.max_watchers_per_job,
                                      " watchers (restyled --max-watchers-per-job); share one "
                                      "watch, or retry when some have ended"),
                         {{"job", absl::StrCat("jobs/", id)}}, absl::Seconds(1));
}

// --- WaitJob ----------------------------------------------------------------------

class JobWait : public std::enable_shared_from_this<JobWait> {
 public:
  JobWait(Front* front, std::string job_id, std::shared_ptr<LongUnary> call, v1::Job* response)
      : front_(front), job_id_(std::move(job_id)), call_(std::move(call)), response_(response) {}

  void Start(absl::Time until) {
    auto self = shared_from_this();
    hub_id_ = front_->hub->Subscribe(job_id_, [self](const Events& events) {
      for (const v1::JobEvent& e : events) {
        if (e.has_job() && IsTerminal(e.job().state())) {
          v1::Job job = e.job();
          self->Answer([&] { return job; });
          return;
        }
      }
    });
    call_->OnCancel([self] { self->Cleanup(); });
    timer_ = front_->timers->RunAt(until, [self] {
      self->front_->store_executor->Schedule([self] { self->AnswerFromStore(/*only_if_done=*/false); });
    });
    front_->store_executor->Schedule([self] { self->AnswerFromStore(/*only_if_done=*/true); });
  }

 private:
  void AnswerFromStore(bool only_if_done) {
    absl::StatusOr<JobRow> row = front_->store->Get(job_id_);
    if (!row.ok()) {
      call_->Finish([&] { return row.status(); });
      Cleanup();
      return;
    }
    if (only_if_done && !IsTerminal(row->job.state())) return;
    v1::Job job = front_->Decorate(*row);
    Answer([&] { return job; });
  }

  void Answer(const std::function<v1::Job()>& job) {
    call_->Finish([&] {
      *response_ = job();
      return absl::OkStatus();
    });
    Cleanup();
  }

  void Cleanup() {
    front_->hub->Unsubscribe(job_id_, hub_id_);
    front_->timers->Cancel(timer_);
  }

  Front* const front_;
  const std::string job_id_;
  std::shared_ptr<LongUnary> call_;
  v1::Job* const response_;
  EventHub::Id hub_id_ = 0;
  TimerQueue::Id timer_ = 0;
};

}  // namespace

ServerUnaryReactor* ApiService::Adapt(CallbackServerContext* context,
                                      const v1::AdaptRequest* request, v1::Job* response) {
  Front* front = front_;
  return OnStore(front, context, /*new_work=*/true, [front, request, response]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(v1::JobSpec spec,
                             CheckAdaptRequest(*request, [front](const std::string& name) {
                               SourceFacts facts;
                               if (std::optional<v1::Generator> g = front->scheduler->Source(name)) {
                                 facts.known = true;
                                 facts.source_text = g->source_text();
                                 facts.resolution = g->resolution();
                               }
                               return facts;
                             },
                             front->tokenizer));
    std::string digest;
    if (!request->request_id().empty()) {
      std::string bytes;
      google::protobuf::io::StringOutputStream out(&bytes);
      google::protobuf::io::CodedOutputStream coded(&out);
      coded.SetSerializationDeterministic(true);
      spec.SerializeToCodedStream(&coded);
      coded.Trim();
      digest = Sha256Hex(bytes);
    }
    Events events;
    const JobRow row = NewJob(RandomId(), spec, request->request_id(), digest,
                              front->limits.max_attempts, absl::Now(), &events);
    RESTYLE_ASSIGN_OR_RETURN(JobStore::Created created,
                             front->store->Create(row, events, front->limits.max_queued_jobs));
    if (created.created) {
      front->Publish(created.update);
      front->scheduler->QueueChanged();
      spdlog::info("{} created: {} -> \"{}\" ({})", created.update.row.job.name(),
                   spec.source_generator(), spec.target_text(),
                   spec.method() == v1::METHOD_NADA ? "nada" : "ipl");
    }
    *response = front->Decorate(created.update.row);
    return absl::OkStatus();
  });
}

ServerUnaryReactor* ApiService::GetJob(CallbackServerContext* context,
                                       const v1::GetJobRequest* request, v1::Job* response) {
  Front* front = front_;
  return OnStore(front, context, false, [front, request, response]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(const std::string id, ParseName(request->name(), kJobs, "name"));
    RESTYLE_ASSIGN_OR_RETURN(JobRow row, front->store->Get(id));
    *response = front->Decorate(row);
    return absl::OkStatus();
  });
}

ServerUnaryReactor* ApiService::ListJobs(CallbackServerContext* context,
                                         const v1::ListJobsRequest* request,
                                         v1::ListJobsResponse* response) {
  Front* front = front_;
  return OnStore(front, context, false, [front, request, response]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(const int page_size, CheckPageSize(request->page_size(), 50));
    JobFilter filter;
    for (int s : request->states()) {
      if (!v1::JobState_IsValid(s) || s == v1::JOB_STATE_UNSPECIFIED) {
        return InvalidField("states", absl::StrCat("states: ", s, " is not a job state"));
      }
      filter.states.push_back(static_cast<v1::JobState>(s));
    }
    if (!request->source_generator().empty()) {
      RESTYLE_ASSIGN_OR_RETURN(const std::string source,
                               ParseName(request->source_generator(), kGenerators,
                                         "source_generator", true));
      filter.source_generator = MakeName(kGenerators, source);
    }
    RESTYLE_ASSIGN_OR_RETURN(JobPage page,
                             front->store->List(filter, page_size, request->page_token()));
    for (const JobRow& row : page.rows) *response->add_jobs() = front->Decorate(row);
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

ServerUnaryReactor* ApiService::CancelJob(CallbackServerContext* context,
                                          const v1::CancelJobRequest* request, v1::Job* response) {
  Front* front = front_;
  return OnStore(front, context, false, [front, request, response]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(const std::string id, ParseName(request->name(), kJobs, "name"));
    RESTYLE_ASSIGN_OR_RETURN(JobUpdate update, front->store->Cancel(id, absl::Now()));
    if (!update.events.empty()) {
      front->Publish(update);
      spdlog::info("{} cancel asked: now {}", update.row.job.name(),
                   v1::JobState_Name(update.row.job.state()));
    }
    *response = front->Decorate(update.row);
    return absl::OkStatus();
  });
}

ServerUnaryReactor* ApiService::WaitJob(CallbackServerContext* context,
                                        const v1::WaitJobRequest* request, v1::Job* response) {
  auto call = LongUnary::Create(context);
  absl::Status admitted = front_->Admit(*context, false);
  absl::StatusOr<std::string> id = ParseName(request->name(), kJobs, "name");
  if (admitted.ok() && !id.ok()) admitted = id.status();
  if (admitted.ok() && request->has_timeout() &&
      (request->timeout().seconds() < 0 || request->timeout().nanos() < 0)) {
    admitted = InvalidField("timeout", "timeout must not be negative");
  }
  if (admitted.ok()) admitted = RoomToWatch(*front_, *id);
  if (!admitted.ok()) {
    call->Finish([&] { return admitted; });
    return call->reactor();
  }
  absl::Duration timeout = request->has_timeout() ? FromProtoDuration(request->timeout())
                                                  : absl::ZeroDuration();
  if (timeout <= absl::ZeroDuration() || timeout > absl::Hours(1)) timeout = absl::Hours(1);
  // Answer a little before the deadline, so the answer arrives in time.
  absl::Time until = std::min(absl::Now() + timeout, DeadlineOf(*context) - absl::Milliseconds(200));
  std::make_shared<JobWait>(front_, *id, call, response)->Start(until);
  return call->reactor();
}

grpc::ServerWriteReactor<v1::JobEvent>* ApiService::WatchJob(CallbackServerContext* context,
                                                             const v1::WatchJobRequest* request) {
  auto stream = ServerStream<v1::JobEvent>::Create(
      context, front_->limits.max_watch_backlog,
      ErrorWithReason(absl::StatusCode::kResourceExhausted, "WATCHER_TOO_SLOW",
                      "this watch fell too far behind the job's events and was dropped; watch "
                      "again with after_seq = the last seq received (nothing is lost)"));
  absl::Status admitted = front_->Admit(*context, false);
  absl::StatusOr<std::string> id = ParseName(request->name(), kJobs, "name");
  if (admitted.ok() && !id.ok()) admitted = id.status();
  if (admitted.ok() && request->after_seq() < 0) {
    admitted = InvalidField("after_seq", "after_seq must not be negative");
  }
  if (admitted.ok()) admitted = RoomToWatch(*front_, *id);
  if (!admitted.ok()) {
    stream->Finish(admitted);
    return stream->reactor();
  }
  std::make_shared<JobWatch>(front_, *id, request->after_seq(), stream)->Start();
  return stream->reactor();
}

grpc::ServerWriteReactor<v1::DownloadArtifactResponse>* ApiService::DownloadArtifact(
    CallbackServerContext* context, const v1::DownloadArtifactRequest* request) {
  absl::Status admitted = front_->Admit(*context, false);
  if (admitted.ok()) admitted = ParseArtifactName(request->name(), "name").status();
  return StreamArtifact<v1::DownloadArtifactResponse>(context, front_->artifacts,
                                                      front_->io_executor, request->name(),
                                                      admitted);
}

ServerUnaryReactor* ApiService::ListGenerators(CallbackServerContext* context,
                                               const v1::ListGeneratorsRequest* request,
                                               v1::ListGeneratorsResponse* response) {
  Front* front = front_;
  return OnStore(front, context, false, [front, request, response]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(const int page_size, CheckPageSize(request->page_size(), 100));
    if (!v1::GeneratorKind_IsValid(request->kind())) {
      return InvalidField("kind", absl::StrCat("kind ", request->kind(),
                                               " is not a GeneratorKind (SOURCE, ADAPTED, or unset for both)"));
    }
    int64_t offset = 0;
    const std::string& token = request->page_token();
    if (!token.empty() && (!absl::StartsWith(token, "v1.") ||
                           !absl::SimpleAtoi(token.substr(3), &offset) || offset < 0)) {
      return ErrorWithReason(absl::StatusCode::kInvalidArgument, "INVALID_PAGE_TOKEN",
                             "page_token is not one this server made; start again without it",
                             {{"field", "page_token"}});
    }
    // Sources first (by name), then adapted generators (newest first); the
    // token is the position in that list.
    std::vector<v1::Generator> sources;
    if (request->kind() != v1::GENERATOR_KIND_ADAPTED) sources = front->scheduler->Sources();
    const int64_t n_sources = static_cast<int64_t>(sources.size());
    int taken = 0;
    for (int64_t i = offset; i < n_sources && taken < page_size; ++i, ++taken) {
      *response->add_generators() = sources[i];
    }
    bool more = offset + taken < n_sources;
    if (!more && request->kind() != v1::GENERATOR_KIND_SOURCE) {
      const int want = page_size - taken;
      RESTYLE_ASSIGN_OR_RETURN(
          std::vector<JobRow> rows,
          front->store->ListAdapted(std::max<int64_t>(0, offset - n_sources), want + 1));
      for (int i = 0; i < static_cast<int>(rows.size()) && i < want; ++i, ++taken) {
        *response->add_generators() = front->AdaptedGenerator(rows[i].job);
      }
      more = static_cast<int>(rows.size()) > want;
    }
    if (more) response->set_next_page_token(absl::StrCat("v1.", offset + taken));
    return absl::OkStatus();
  });
}

ServerUnaryReactor* ApiService::GetGenerator(CallbackServerContext* context,
                                             const v1::GetGeneratorRequest* request,
                                             v1::Generator* response) {
  Front* front = front_;
  return OnStore(front, context, false, [front, request, response]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(const std::string id,
                             ParseName(request->name(), kGenerators, "name", true));
    const std::string name = MakeName(kGenerators, id);
    if (std::optional<v1::Generator> source = front->scheduler->Source(name)) {
      *response = *source;
      return absl::OkStatus();
    }
    absl::StatusOr<JobRow> row = front->store->Get(id);
    if (!row.ok() || row->job.state() != v1::JOB_STATE_SUCCEEDED ||
        row->job.result().generator().empty()) {
      std::string why = "no source generator or succeeded job has that id";
      if (row.ok() && row->job.state() == v1::JOB_STATE_SUCCEEDED) why = "it was deleted";
      if (row.ok() && row->job.state() != v1::JOB_STATE_SUCCEEDED) {
        why = absl::StrCat(row->job.name(), " is ", v1::JobState_Name(row->job.state()),
                           "; its generator exists once it succeeds");
      }
      return ErrorWithReason(absl::StatusCode::kNotFound, "GENERATOR_NOT_FOUND",
                             absl::StrCat("no generator ", name, ": ", why),
                             {{"generator", name}});
    }
    *response = front->AdaptedGenerator(row->job);
    return absl::OkStatus();
  });
}

ServerUnaryReactor* ApiService::DeleteGenerator(CallbackServerContext* context,
                                                const v1::DeleteGeneratorRequest* request,
                                                v1::DeleteGeneratorResponse*) {
  Front* front = front_;
  return OnStore(front, context, false, [front, request]() -> absl::Status {
    RESTYLE_ASSIGN_OR_RETURN(const std::string id,
                             ParseName(request->name(), kGenerators, "name", true));
    const std::string name = MakeName(kGenerators, id);
    if (front->scheduler->Source(name)) {
      return ErrorWithReason(absl::StatusCode::kFailedPrecondition, "SOURCE_GENERATOR",
                             absl::StrCat(name, " is a source generator: remove it from the "
                                                "workers' model directories instead"),
                             {{"generator", name}});
    }
    if (front->scheduler->GeneratorInUse(name)) {
      return ErrorWithReason(absl::StatusCode::kFailedPrecondition, "GENERATOR_IN_USE",
                             absl::StrCat(name, " is serving a Generate request; retry when "
                                                "it is done"),
                             {{"generator", name}}, absl::Seconds(1));
    }
    RESTYLE_RETURN_IF_ERROR(front->store->MarkGeneratorDeleted(id, absl::Now()));
    RESTYLE_RETURN_IF_ERROR(front->artifacts->DeleteJob(id));
    spdlog::info("{} deleted", name);
    // Removing the files (hundreds of MB for a large generator) is no work
    // for the store's thread, which lease renewals wait on.
    front->io_executor->Schedule([front, id] {
      absl::Status removed = front->artifacts->RemoveJobFiles(id);
      if (!removed.ok()) spdlog::warn("{}", StatusText(removed));
    });
    return absl::OkStatus();
  });
}

namespace {

// What forwarding a Generate call to another front needs of it.
struct Forwarding {
  v1::GenerateRequest request;
  std::string authorization;
};

}  // namespace

grpc::ServerWriteReactor<v1::GenerateResponse>* ApiService::Generate(
    CallbackServerContext* context, const v1::GenerateRequest* request) {
  // Backpressure keeps this far below the limit: the worker's images are
  // read only as fast as the client takes them (worker_service.cc).
  auto stream = ServerStream<v1::GenerateResponse>::Create(
      context, 64,
      ErrorWithReason(absl::StatusCode::kResourceExhausted, "CLIENT_TOO_SLOW",
                      "the client did not read the images"));
  absl::Status admitted = front_->Admit(*context, /*new_work=*/true);
  absl::StatusOr<GenerateAsk> ask = CheckGenerateRequest(*request);
  if (admitted.ok() && !ask.ok()) admitted = ask.status();
  if (!admitted.ok()) {
    stream->Finish(admitted);
    return stream->reactor();
  }
  auto task = std::make_shared<GenerationTask>();
  task->stream = stream;
  wv1::GenerateTask& t = task->task;
  t.set_task_id(RandomId(16));
  t.set_generator(ask->generator);
  for (uint64_t seed : ask->seeds) t.add_seeds(seed);
  t.set_max_resolution(request->max_resolution());
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    task->deadline = absl::FromChrono(context->deadline());
    *t.mutable_deadline() = ToProtoTime(task->deadline);
  }
  const bool has_truncation = request->has_truncation();
  const double truncation = request->truncation();
  Front* front = front_;
  // With several fronts, a call no worker here can serve goes to a front
  // whose worker can (forward.h), once.
  std::shared_ptr<const Forwarding> forwarding;
  if (front->forwarder != nullptr && !Forwarder::Forwarded(*context)) {
    auto f = std::make_shared<Forwarding>();
    f->request = *request;
    auto auth = context->client_metadata().find("authorization");
    if (auth != context->client_metadata().end()) f->authorization.assign(auth->second.data(), auth->second.size());
    forwarding = std::move(f);
  }
  front->store_executor->Schedule([front, task, has_truncation, truncation, forwarding]() {
    wv1::GenerateTask& t = task->task;
    double default_truncation = 0.7;
    if (std::optional<v1::Generator> source = front->scheduler->Source(t.generator())) {
      task->source = source->name();
    } else {
      absl::StatusOr<JobRow> row = front->store->Get(IdOf(t.generator()));
      if (!row.ok()) {
        return task->stream->Finish(ErrorWithReason(
            absl::StatusCode::kNotFound, "GENERATOR_NOT_FOUND",
            absl::StrCat("no generator ", t.generator(), " (ListGenerators shows them)"),
            {{"generator", t.generator()}}));
      }
      const v1::Job& job = row->job;
      if (job.state() != v1::JOB_STATE_SUCCEEDED || job.result().generator().empty()) {
        const bool deleted = job.state() == v1::JOB_STATE_SUCCEEDED;
        return task->stream->Finish(ErrorWithReason(
            deleted ? absl::StatusCode::kNotFound : absl::StatusCode::kFailedPrecondition,
            deleted ? "GENERATOR_NOT_FOUND" : "GENERATOR_NOT_READY",
            deleted ? absl::StrCat(t.generator(), " was deleted")
                    : absl::StrCat(t.generator(), " is not ready: ", job.name(), " is ",
                                   v1::JobState_Name(job.state()),
                                   "; generate from it once the job has succeeded"),
            {{"generator", t.generator()}, {"job", job.name()}}));
      }
      task->source = job.spec().source_generator();
      const std::string id = IdOf(job.name());
      absl::StatusOr<ArtifactRecord> delta = front->store->GetArtifact(ArtifactName(id, kDeltaFile));
      absl::StatusOr<ArtifactRecord> result = front->store->GetArtifact(ArtifactName(id, kResultFile));
      if (!delta.ok() || !result.ok()) {
        return task->stream->Finish(ErrorWithReason(
            absl::StatusCode::kDataLoss, "ARTIFACT_MISSING",
            absl::StrCat(t.generator(), ": the job's generator files are not recorded")));
      }
      *t.mutable_delta() = delta->artifact;
      *t.mutable_result_record() = result->artifact;
      absl::StatusOr<engine::JobOptions> options = JobOptionsFromSpec(job.spec());
      if (options.ok()) default_truncation = options->adapt.sample_truncation;
    }
    t.set_source_id(IdOf(task->source));
    t.set_truncation(has_truncation ? truncation : default_truncation);
    const std::string task_id = t.task_id();
    Scheduler* scheduler = front->scheduler;
    task->stream->OnCancel([scheduler, task_id] { scheduler->CancelGeneration(task_id); });
    absl::Status submitted = front->scheduler->SubmitGeneration(task);
    if (!submitted.ok() && forwarding != nullptr && ErrorReason(submitted) == "NO_WORKER") {
      if (std::string peer = front->scheduler->PeerWith(task->source); !peer.empty()) {
        if (front->metrics != nullptr) front->metrics->GenerationForwarded();
        front->forwarder->Generate(peer, forwarding->request, forwarding->authorization,
                                   task->deadline, task->stream);
        return;
      }
    }
    if (!submitted.ok()) task->stream->Finish(submitted);
  });
  return stream->reactor();
}

ServerUnaryReactor* ApiService::ListWorkers(CallbackServerContext* context,
                                            const v1::ListWorkersRequest*,
                                            v1::ListWorkersResponse* response) {
  ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status admitted = front_->Admit(*context, false);
  if (admitted.ok()) {
    for (v1::Worker& w : front_->scheduler->Workers()) *response->add_workers() = std::move(w);
  }
  Reply(context, reactor, admitted);
  return reactor;
}

}  // namespace restyle::server
