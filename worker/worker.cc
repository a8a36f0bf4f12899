#include "worker/worker.h"

#include <unistd.h>

#include <spdlog/spdlog.h>
#include <torch/nn/functional/pooling.h>

#include <cctype>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/job_spec.h"
#include "common/names.h"
#include "common/status.h"
#include "common/time.h"
#include "worker/engine/adapt_job/generate.h"
#include "worker/engine/adapt_job/settings.h"
#include "worker/engine/common/cpu_allocator.h"
#include "worker/engine/common/cuda_math.h"
#include "worker/engine/common/threads.h"
#include "worker/engine/image/png.h"
#include "worker/engine_boundary.h"

#ifndef RESTYLE_VERSION
#define RESTYLE_VERSION "dev"
#endif

namespace restyle::worker {
namespace {

namespace fs = std::filesystem;

constexpr absl::Duration kCallTimeout = absl::Seconds(15);
constexpr char kCheckpointFile[] = "stage1_checkpoint.safetensors";
// Events in one ReportProgress at most (the front takes up to 1000).
constexpr int kMaxEventsPerReport = 500;

std::string IdOf(const std::string& name) { return name.substr(name.find('/') + 1); }

// <hostname>-<random>, as a valid worker id.
std::string MakeWorkerId() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::string id;
  for (const char* c = host; *c != '\0' && id.size() < 40; ++c) {
    const char l = static_cast<char>(std::tolower(static_cast<unsigned char>(*c)));
    id.push_back(std::isalnum(static_cast<unsigned char>(l)) ? l : '-');
  }
  if (id.empty() || !std::isalnum(static_cast<unsigned char>(id[0]))) id = "worker" + id;
  return absl::StrCat(id, "-", RandomId(6));
}

int64_t HostMemoryBytes() {
  return static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

// The front does not know this worker (it restarted, or dropped it), or
// not with this session (it re-registered meanwhile): register again.
bool NotRegistered(const absl::Status& s) {
  const std::string reason = ErrorReason(s);
  return reason == "WORKER_UNKNOWN" || reason == "WORKER_SESSION_INVALID";
}

bool Unreachable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable || s.code() == absl::StatusCode::kDeadlineExceeded;
}

restyle::v1::JobProgress ProgressOf(const engine::JobProgress& p) {
  restyle::v1::JobProgress out;
  out.set_stage(p.stage == 1 ? restyle::v1::JOB_STAGE_TRAINING_MAPPER : restyle::v1::JOB_STAGE_FINE_TUNING_GENERATOR);
  out.set_step(p.step);
  out.set_total(p.total);
  for (const auto& [name, value] : p.losses) (*out.mutable_losses())[name] = value;
  out.set_images_per_second(p.images_per_second);
  *out.mutable_eta() = ToProtoDuration(absl::Milliseconds(static_cast<int64_t>(p.eta_seconds * 1000)));
  return out;
}

restyle::v1::ImageSetScore ScoreOf(const engine::ImageSetScore& s) {
  restyle::v1::ImageSetScore out;
  out.set_target_similarity(s.target_similarity);
  out.set_diversity(s.diversity);
  return out;
}

restyle::v1::StageTiming TimingOf(const engine::StageTiming& t) {
  restyle::v1::StageTiming out;
  out.set_steps(t.steps);
  *out.mutable_duration() = ToProtoDuration(absl::Milliseconds(static_cast<int64_t>(t.seconds * 1000)));
  return out;
}

// What a failed job tells the front: its reason, and whether another
// attempt (on this or another worker) could succeed.
restyle::v1::JobError JobErrorOf(const absl::Status& status) {
  restyle::v1::JobError e;
  e.set_code(static_cast<int>(status.code()));
  e.set_code_name(absl::StatusCodeToString(status.code()));
  const restyle::v1::ErrorDetail detail = ErrorDetailOf(status);
  e.set_reason(detail.reason().empty() ? "ENGINE_ERROR" : detail.reason());
  e.set_message(std::string(status.message()));
  for (const auto& [k, v] : detail.metadata()) (*e.mutable_metadata())[k] = v;
  if (e.reason() == "OUT_OF_MEMORY") {
    const std::string m(status.message());
    (*e.mutable_metadata())["lower"] =
        absl::StrContains(m, "stage 1") ? "stage1.batch"
        : absl::StrContains(m, "stage 2") ? "stage2.auto_layer_batch,stage2.batch"
                                          : "stage1.batch,stage2.batch,stage2.auto_layer_batch";
  }
  return e;
}

bool Retryable(const absl::Status& status) {
  const std::string reason = ErrorReason(status);
  if (reason == "DISK_FULL") return true;  // the front's volume, not the job
  if (reason == "NON_FINITE_LOSS" || reason == "OUT_OF_MEMORY" || reason == "INVALID_FIELD") {
    return false;
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnimplemented:
      return false;
    default:
      return true;
  }
}

}  // namespace

// --- start ---------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(const WorkerOptions& options) {
  if (options.work_dir.empty()) return absl::InvalidArgumentError("a work directory is required");
  auto worker = std::unique_ptr<Worker>(new Worker(options));
  const std::string id = options.worker_id.empty() ? MakeWorkerId() : options.worker_id;
  if (!IsValidId(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker id \"", id, "\": 1-63 lower-case letters, digits and '-'"));
  }
  worker->name_ = MakeName(kWorkers, id);
  AddBuildInfo(*worker->registry_, "restyle-worker", RESTYLE_VERSION);
  if (!options.metrics_address.empty()) {
    RESTYLE_ASSIGN_OR_RETURN(auto host_port, ParseHostPort(options.metrics_address));
    RESTYLE_ASSIGN_OR_RETURN(worker->metrics_server_,
                             MetricsServer::Start(host_port.first, host_port.second, worker->registry_));
    spdlog::info("metrics at http://{}/metrics (port {})", options.metrics_address,
                 worker->metrics_server_->port());
  }
  if (!options.health_address.empty()) {
    RESTYLE_ASSIGN_OR_RETURN(worker->health_, HealthServer::Start(options.health_address));
    spdlog::info("health at {} (port {})", options.health_address, worker->health_->port());
  }
  if (!options.port_file.empty()) {
    RESTYLE_RETURN_IF_ERROR(WriteFileAtomically(
        options.port_file, absl::StrCat("{\"metrics\": ", worker->metrics_port(),
                                        ", \"health\": ", worker->health_port(), "}\n")));
  }
  // The process-wide LibTorch settings, once: no job changes them.
  RESTYLE_RETURN_IF_ERROR(RunEngine("setting up LibTorch", [&] {
    const int threads = engine::SetThreadCount(options.threads);
    engine::InstallCachingCpuAllocator();
    if (options.device == engine::JobDevice::kCuda) {
      engine::RequireCuda();
      engine::SetCudaMath(options.cuda_math == engine::CudaMath::kTf32, options.cudnn_autotune);
    }
    spdlog::info("LibTorch: {} thread(s), device {}", threads,
                 options.device == engine::JobDevice::kCuda ? "cuda" : "cpu");
  }));
  for (const auto& [key, value] : options.job_settings) {
    const auto& worker_keys = WorkerSettingKeys();
    if (std::find(worker_keys.begin(), worker_keys.end(), key) == worker_keys.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--job-setting ", key, ": not one of the worker's settings (a request sets it)"));
    }
    engine::JobOptions probe;
    RESTYLE_RETURN_IF_ERROR(RunTorchFree(absl::StrCat("--job-setting ", key), [&] {
      engine::SetJobSetting(probe, key, value);
      engine::ValidateJobOptions(probe);
    }));
  }
  const absl::Time start = absl::Now();
  RESTYLE_ASSIGN_OR_RETURN(worker->models_, Models::Load(options.model_dir, options.device, options.embedded_models));
  spdlog::info("models loaded in {} ({} source(s), {} CLIP model(s){})",
               absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1))),
               worker->models_->sources().size(), worker->models_->clip_names().size(),
               worker->models_->demo() ? ", the embedded demo models" : "");
  worker->SetHealth(HealthServer::kModels, true);
  RESTYLE_ASSIGN_OR_RETURN(worker->front_, FrontClient::Create(options.front));
  std::error_code ec;
  fs::create_directories(options.work_dir + "/jobs", ec);
  fs::create_directories(options.work_dir + "/generators", ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", options.work_dir, ": ", ec.message()));
  const int64_t cache_bytes =
      options.cache_bytes > 0                           ? options.cache_bytes
      : options.device == engine::JobDevice::kCuda ? int64_t{8} << 30
                                                        : HostMemoryBytes() / 4;
  worker->cache_ = std::make_unique<GeneratorCache>(cache_bytes, options.work_dir + "/generators");
  worker->max_batch_ = options.max_generation_batch > 0 ? options.max_generation_batch
                                                        : DefaultGenerationBatch(options.device);
  spdlog::info("generation: batches of up to {} image(s), window {}, {} MiB of adapted "
               "generators in memory, queue of {} request(s)",
               worker->max_batch_, absl::FormatDuration(options.generation_window),
               cache_bytes >> 20, options.max_generation_tasks);
  WorkerMetrics* metrics = &worker->metrics_;
  worker->metrics_.Sample(0, 0);
  worker->cache_->OnLoad([metrics](double seconds) { metrics->GeneratorLoaded(seconds); });
  worker->cache_->OnEvict([metrics] { metrics->GeneratorEvicted(); });
  return worker;
}

Worker::~Worker() {
  Shutdown();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

bool Worker::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void Worker::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (!stopping_ && registered_) spdlog::info("stopping: no new work; the current step finishes first");
  stopping_ = true;
  SetHealth(HealthServer::kReady, false);
  for (grpc::ClientContext* poll : polls_) poll->TryCancel();
}

void Worker::SetHealth(const std::string& service, bool serving) {
  if (health_ != nullptr) health_->Set(service, serving);
}

absl::Status Worker::Register() {
  wv1::RegisterWorkerRequest request;
  request.set_worker_id(IdOf(name_));
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  request.set_hostname(host);
  request.set_device(options_.device == engine::JobDevice::kCuda ? "cuda" : "cpu");
  request.set_memory_bytes(HostMemoryBytes());
  request.set_version(RESTYLE_VERSION);
  for (const LoadedSource& s : models_->sources()) *request.add_sources() = s.model;
  for (const std::string& c : models_->clip_names()) request.add_clip_models(c);
  request.set_max_generation_tasks(options_.max_generation_tasks);
  request.set_max_generation_batch(max_batch_);
  request.set_instance_key(instance_key_);
  {
    absl::MutexLock lock(&mu_);
    if (current_ != nullptr && !current_->lost) {
      wv1::Lease* lease = request.add_leases();
      lease->set_job(current_->job);
      lease->set_attempt(current_->attempt);
    }
  }
  wv1::RegisterWorkerResponse response;
  RESTYLE_RETURN_IF_ERROR(front_->Call(kCallTimeout, [&](grpc::ClientContext* c) {
    return front_->stub().RegisterWorker(c, request, &response);
  }));
  front_->SetSession(response.session());
  heartbeat_interval_ = std::max(absl::Milliseconds(100), FromProtoDuration(response.heartbeat_interval()));
  absl::MutexLock lock(&mu_);
  registered_ = true;
  if (!stopping_) SetHealth(HealthServer::kReady, true);
  return absl::OkStatus();
}

absl::Status Worker::Run() {
  bool warned = false;
  for (absl::Duration backoff = absl::Milliseconds(200);;) {
    absl::Status status = Register();
    if (status.ok()) break;
    if (stopping()) return absl::OkStatus();
    // The front has this worker's source recorded with other weights: no
    // retry changes that (the manifest's id must).
    if (ErrorReason(status) == "SOURCE_CONFLICT") return status;
    if (!warned) {
      spdlog::warn("cannot register with {}: {}; retrying", options_.front.address, StatusText(status));
      warned = true;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
  spdlog::info("{} registered with {}", name_, options_.front.address);
  threads_.emplace_back([this] { HeartbeatLoop(); });
  threads_.emplace_back([this] { ReporterLoop(); });
  threads_.emplace_back([this] { SenderLoop(); });
  const int encoders = options_.encode_threads > 0
                           ? options_.encode_threads
                           : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / 2);
  for (int i = 0; i < encoders; ++i) threads_.emplace_back([this] { EncoderLoop(); });
  std::thread engine([this] { EngineLoop(); });
  std::vector<std::thread> polls;
  if (models_->can_adapt()) polls.emplace_back([this] { AdaptPollLoop(); });
  polls.emplace_back([this] { GenerationPollLoop(); });
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&stopping_));
  }
  for (std::thread& t : polls) t.join();
  {
    absl::MutexLock lock(&mu_);
    polls_done_ = true;
  }
  engine.join();
  FlushReports();
  {
    absl::MutexLock lock(&mu_);
    engine_done_ = true;
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  // A last word, so the front stops counting on this worker at once.
  wv1::HeartbeatRequest goodbye;
  goodbye.set_worker(name_);
  goodbye.set_draining(true);
  goodbye.set_leaving(true);
  wv1::HeartbeatResponse ignored;
  front_->Call(absl::Seconds(2), [&](grpc::ClientContext* c) {
          return front_->stub().Heartbeat(c, goodbye, &ignored);
        }).IgnoreError();
  spdlog::info("{} stopped", name_);
  return absl::OkStatus();
}

// --- talking to the front ----------------------------------------------------------

absl::Status Worker::Persist(absl::Duration patience, const std::function<absl::Status()>& call,
                             const std::shared_ptr<CurrentJob>& job) {
  const absl::Time until = absl::Now() + patience;
  absl::Duration backoff = absl::Milliseconds(200);
  bool warned = false;
  while (true) {
    absl::Status status = call();
    if (ErrorReason(status) == "LEASE_LOST" && job != nullptr) job->lost = true;
    // The front's volume full is the front's to fix (space freed, the
    // volume grown): wait for it as for an unreachable front. A front that
    // restarted and has not heard from this worker yet: register again
    // (with the lease) and retry.
    const bool disk_full = ErrorReason(status) == "DISK_FULL";
    const bool unknown = NotRegistered(status);
    if (!(Unreachable(status) || disk_full || unknown) || absl::Now() + backoff > until ||
        (job != nullptr && job->lost)) {
      return status;
    }
    if (unknown) {
      spdlog::info("the front does not know {} (it restarted?): registering again", name_);
      if (absl::Status registered = Register(); !registered.ok()) {
        spdlog::warn("registering again failed: {}", StatusText(registered));
      }
    }
    if (disk_full && !warned) {
      spdlog::warn("the front's data directory is full; retrying for up to {}",
                   absl::FormatDuration(absl::Trunc(until - absl::Now(), absl::Seconds(1))));
      warned = true;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

void Worker::NoteLease(const std::string& job, bool lost, bool cancel) {
  absl::MutexLock lock(&mu_);
  if (current_ == nullptr || current_->job != job) return;
  if (lost && !current_->lost) spdlog::warn("{}: the lease is lost; stopping without reporting", job);
  if (cancel && !current_->cancel) spdlog::info("{}: cancel asked; stopping after this step", job);
  current_->lost = current_->lost || lost;
  current_->cancel = current_->cancel || cancel;
}

void Worker::HeartbeatLoop() {
  bool unreachable = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&engine_done_), heartbeat_interval_);
      if (engine_done_) return;
    }
    wv1::HeartbeatRequest request;
    request.set_worker(name_);
    std::shared_ptr<CurrentJob> job;
    {
      absl::MutexLock lock(&mu_);
      job = current_;
      request.set_generation_tasks(generation_held_);
      request.set_draining(stopping_);
    }
    if (job != nullptr && !job->lost) {
      wv1::Lease* lease = request.add_leases();
      lease->set_job(job->job);
      lease->set_attempt(job->attempt);
    }
    const std::vector<std::string> resident = cache_->Resident();
    for (const std::string& g : resident) request.add_resident_generators(g);
    metrics_.Sample(static_cast<int>(resident.size()), cache_->resident_bytes());
    wv1::HeartbeatResponse response;
    absl::Status status = front_->Call(kCallTimeout, [&](grpc::ClientContext* c) {
      return front_->stub().Heartbeat(c, request, &response);
    });
    if (NotRegistered(status)) {
      spdlog::info("the front does not know {} (it restarted?): registering again", name_);
      status = Register();
    }
    if (!status.ok()) {
      if (!unreachable) spdlog::warn("heartbeat to {} failed: {}", options_.front.address, StatusText(status));
      unreachable = true;
      SetHealth(HealthServer::kReady, false);
      continue;
    }
    if (unreachable) spdlog::info("the front answers again");
    if (unreachable && !stopping()) SetHealth(HealthServer::kReady, true);
    unreachable = false;
    for (const wv1::LeaseStatus& s : response.leases()) {
      NoteLease(s.job(), s.state() == wv1::LeaseStatus::STATE_LOST,
                s.state() == wv1::LeaseStatus::STATE_CANCEL_REQUESTED);
    }
  }
}

std::optional<absl::Status> Worker::Poll(wv1::Lane lane, wv1::PollWorkResponse* response,
                                         int max_tasks) {
  wv1::PollWorkRequest request;
  request.set_worker(name_);
  request.set_lane(lane);
  request.set_max_tasks(max_tasks);
  *request.mutable_wait() = ToProtoDuration(options_.poll_wait);
  std::unique_ptr<grpc::ClientContext> context = front_->Context(options_.poll_wait + absl::Seconds(10));
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return std::nullopt;
    polls_.push_back(context.get());  // Shutdown cancels it
  }
  const absl::Status status = FromGrpcStatus(front_->stub().PollWork(context.get(), request, response));
  absl::MutexLock lock(&mu_);
  polls_.erase(std::find(polls_.begin(), polls_.end(), context.get()));
  return status;
}

void Worker::AdaptPollLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return w->stopping_ || (w->current_ == nullptr && !w->pending_adapt_);
          },
          this));
      if (stopping_) return;
    }
    wv1::PollWorkResponse response;
    const std::optional<absl::Status> polled = Poll(wv1::LANE_ADAPTATION, &response);
    if (!polled) return;  // stopping
    const absl::Status status = *polled;
    if (status.ok() && response.has_adapt()) {
      absl::MutexLock lock(&mu_);
      if (!stopping_) {
        pending_adapt_ = response.adapt();
        continue;
      }
    }
    if (status.ok() && response.has_adapt()) {  // taken while stopping: give it back
      const wv1::AdaptTask& t = response.adapt();
      wv1::ReleaseJobRequest release;
      release.set_worker(name_);
      release.set_job(t.job());
      release.set_attempt(t.attempt());
      release.set_reason("the worker is shutting down");
      wv1::ReleaseJobResponse ignored;
      front_->Call(kCallTimeout, [&](grpc::ClientContext* c) {
              return front_->stub().ReleaseJob(c, release, &ignored);
            }).IgnoreError();
      return;
    }
    if (!status.ok() && !stopping()) absl::SleepFor(absl::Seconds(1));
  }
}

void Worker::GenerationPollLoop() {
  while (true) {
    int room = 0;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return w->stopping_ || w->generation_held_ < w->options_.max_generation_tasks;
          },
          this));
      if (stopping_) return;
      room = options_.max_generation_tasks - generation_held_;
    }
    wv1::PollWorkResponse response;
    const std::optional<absl::Status> polled = Poll(wv1::LANE_GENERATION, &response, room);
    if (!polled) return;  // stopping
    const absl::Status status = *polled;
    if (!status.ok()) {
      if (!stopping()) absl::SleepFor(absl::Seconds(1));
      continue;
    }
    for (const wv1::GenerateTask& task : response.generate()) {
      auto work = std::make_shared<GenWork>();
      work->task = task;
      if (task.has_deadline()) work->deadline = FromProtoTime(task.deadline());
      {
        absl::MutexLock lock(&mu_);
        ++generation_held_;
      }
      // An adapted generator's files come to the disk cache before the
      // engine sees the task, so no training step waits on the network.
      absl::Status fetched = absl::OkStatus();
      if (task.has_delta()) {
        const std::string dir = cache_->DiskDir(task.generator());
        for (const restyle::v1::Artifact* a : {&task.delta(), &task.result_record()}) {
          const std::string path = dir + "/" + a->name().substr(a->name().rfind('/') + 1);
          if (fetched.ok() && !fs::exists(path)) fetched = front_->Download(name_, *a, path);
        }
      }
      absl::MutexLock lock(&mu_);
      if (!fetched.ok()) {
        EndTaskLocked(work, Annotate(fetched, absl::StrCat("fetching ", task.generator())));
      } else {
        if (task.has_delta()) {
          cache_->Pin(task.generator());
          work->pinned = true;
        }
        work->arrived = absl::Now();
        // Nothing else queued or being drawn, nor in the same poll.
        work->alone = generation_.empty() && !drawing_ && response.generate_size() == 1;
        generation_.push_back(work);
      }
    }
  }
}

// --- the engine thread ---------------------------------------------------------------------

int DefaultGenerationBatch(engine::JobDevice device) {
  return device == engine::JobDevice::kCuda ? 32 : 8;
}

void Worker::EngineLoop() {
  while (true) {
    std::optional<wv1::AdaptTask> task;
    std::shared_ptr<CurrentJob> job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return w->pending_adapt_.has_value() || !w->generation_.empty() || w->polls_done_;
          },
          this));
      if (generation_.empty()) {
        if (!pending_adapt_) return;  // polls done and nothing left
        task.swap(pending_adapt_);
        // current_ is set with the task taken, so the poll does not ask again.
        job = std::make_shared<CurrentJob>();
        job->job = task->job();
        job->attempt = task->attempt();
        current_ = job;
      }
    }
    if (task) {
      RunAdapt(*task, job);
    } else {
      ServeGeneration(-1, /*wait=*/true);
    }
  }
}

void Worker::PushOutgoing(Outgoing item) {
  item.seq = next_seq_++;
  outgoing_.push_back(std::move(item));
}

void Worker::EndTaskLocked(const std::shared_ptr<GenWork>& work, const absl::Status& status) {
  if (work->pinned) cache_->Unpin(work->task.generator());
  work->pinned = false;
  Outgoing end;
  end.work = work;
  end.end = true;
  if (!status.ok()) end.error = JobErrorOf(status);
  PushOutgoing(std::move(end));
}

namespace {

// Requests batch together when they draw from the same generator the same way.
bool SameBatch(const wv1::GenerateTask& a, const wv1::GenerateTask& b) {
  return a.generator() == b.generator() && a.source_id() == b.source_id() &&
         a.truncation() == b.truncation() && a.max_resolution() == b.max_resolution();
}

}  // namespace

Worker::Batch Worker::NextBatch(int limit) {
  Batch batch;
  const absl::Time now = absl::Now();
  const wv1::GenerateTask* key = nullptr;
  for (auto it = generation_.begin(); it != generation_.end() && batch.images < limit;) {
    const std::shared_ptr<GenWork>& work = *it;
    if (work->cancelled || work->deadline <= now) {
      if (work->cancelled) {
        EndTaskLocked(work, absl::OkStatus());
      } else {
        metrics_.GenerationExpired();
        EndTaskLocked(work, ErrorWithReason(absl::StatusCode::kDeadlineExceeded,
                                            "DEADLINE_EXCEEDED",
                                            "the request's deadline passed before its images "
                                            "were drawn"));
      }
      it = generation_.erase(it);
      continue;
    }
    if (key == nullptr) key = &work->task;
    if (SameBatch(*key, work->task)) {
      const int count = std::min(limit - batch.images, work->task.seeds_size() - work->next);
      batch.parts.push_back({work, work->next, count});
      batch.images += count;
    }
    ++it;
  }
  return batch;
}

void Worker::ServeGeneration(int budget, bool wait) {
  while (budget != 0) {
    const int limit = budget > 0 ? std::min(budget, max_batch_) : max_batch_;
    Batch batch;
    {
      absl::MutexLock lock(&mu_);
      batch = NextBatch(limit);
      if (batch.parts.empty()) return;
      // Company for the oldest request: more of its generator may be on the
      // way; it waits for them at most the window from its arrival. At low
      // load (the last batch was one request, and this one came while
      // nothing was queued or drawn) it would wait for nobody: it runs at once.
      const GenWork& oldest = *batch.parts.front().work;
      const bool quiet = !options_.always_wait_for_company && last_batch_parts_ <= 1 &&
                         oldest.alone && batch.parts.size() == 1;
      const absl::Time until = oldest.arrived + options_.generation_window;
      while (wait && !quiet && batch.images < limit && absl::Now() < until && !stopping_) {
        struct Arrivals {
          Worker* worker;
          size_t queued;
        } arrivals{this, generation_.size()};
        mu_.AwaitWithDeadline(absl::Condition(
                                  +[](Arrivals* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                    return a->worker->generation_.size() != a->queued ||
                                           a->worker->stopping_;
                                  },
                                  &arrivals),
                              until);
        batch = NextBatch(limit);
        if (batch.parts.empty()) return;
      }
      last_batch_parts_ = batch.parts.size();
      drawing_ = true;
    }
    RunBatch(batch);
    if (budget > 0) budget -= batch.images;
  }
}

void Worker::RunBatch(const Batch& batch) {
  const wv1::GenerateTask& t = batch.parts.front().work->task;
  absl::Status status = absl::OkStatus();
  engine::Generator generator{nullptr};
  const LoadedSource* source = models_->Source(t.source_id());
  if (source == nullptr) {
    status = ErrorWithReason(absl::StatusCode::kUnavailable, "SOURCE_NOT_LOADED",
                             absl::StrCat(name_, " has no source ", t.source_id()));
  } else if (t.has_delta()) {
    absl::StatusOr<engine::Generator> g =
        cache_->Acquire(t.generator(), source->job_models.source,
                        source->job_models.source->parameters().front().device());
    status = g.status();
    if (g.ok()) generator = *g;
  } else {
    generator = source->job_models.source;
  }
  std::vector<uint64_t> seeds;
  for (const Batch::Part& p : batch.parts) {
    seeds.insert(seeds.end(), p.work->task.seeds().begin() + p.first,
                 p.work->task.seeds().begin() + p.first + p.count);
  }
  torch::Tensor pixels;  // (N,H,W,3) uint8
  if (status.ok()) {
    const absl::Time started = absl::Now();
    absl::StatusOr<torch::Tensor> drawn = CallEngine("generating", [&] {
      engine::GenerateOptions o;
      o.truncation = t.truncation();
      o.batch = static_cast<int64_t>(seeds.size());
      if (o.truncation < 1) {
        // The mapping network is never trained: the source's mean serves
        // every generator adapted from it.
        torch::Tensor& mean = truncation_latents_[t.source_id()];
        if (!mean.defined()) mean = engine::TruncationLatent(*source->job_models.source.ptr());
        o.truncation_latent = mean;
      }
      torch::Tensor images = engine::GenerateImages(*generator, seeds, o);
      const int64_t size = images.size(-1);
      if (t.max_resolution() > 0 && size > t.max_resolution()) {
        int64_t target = 1;
        while (target * 2 <= t.max_resolution()) target *= 2;
        images = torch::nn::functional::avg_pool2d(
            images, torch::nn::functional::AvgPool2dFuncOptions(size / target));
      }
      return engine::ToUint8Images(images);
    });
    status = drawn.status();
    if (status.ok()) {
      pixels = *std::move(drawn);
      metrics_.Generated(static_cast<int>(seeds.size()),
                         absl::ToDoubleSeconds(absl::Now() - started));
    }
  }
  if (t.has_delta() && !generator.is_empty()) cache_->Release(t.generator());
  absl::MutexLock lock(&mu_);
  drawing_ = false;
  int offset = 0;
  for (const Batch::Part& p : batch.parts) {
    if (status.ok()) {
      for (int i = 0; i < p.count; ++i) {
        Outgoing image;
        image.work = p.work;
        image.index = p.first + i;
        image.seed = seeds[offset + i];
        image.pixels = pixels[offset + i];
        image.height = pixels.size(1);
        image.width = pixels.size(2);
        PushOutgoing(std::move(image));
      }
    }
    offset += p.count;
    p.work->next = p.first + p.count;
    // Done, or to the back of the queue: a long request takes turns with
    // the others rather than holding the engine to its end.
    generation_.erase(std::find(generation_.begin(), generation_.end(), p.work));
    if (!status.ok() || p.work->next >= p.work->task.seeds_size()) {
      EndTaskLocked(p.work, status);
    } else {
      generation_.push_back(p.work);
    }
  }
}

void Worker::RunAdapt(const wv1::AdaptTask& task, const std::shared_ptr<CurrentJob>& job) {
  const std::string out_dir = absl::StrCat(options_.work_dir, "/jobs/", IdOf(task.job()));
  std::error_code ec;
  fs::remove_all(out_dir, ec);
  fs::create_directories(out_dir, ec);
  spdlog::info("{} attempt {}: {} -> \"{}\"", task.job(), task.attempt(),
               task.spec().source_generator(), task.spec().target_text());
  bool stage1_trained = false;
  absl::StatusOr<engine::JobResult> result = TrainJob(task, job, out_dir, &stage1_trained);
  absl::Status status = result.status();
  if (result.ok() && !job->lost) status = PublishResult(task, *result, out_dir, job, stage1_trained);
  EndJob(task, status, stage1_trained, out_dir, job);
  {
    absl::MutexLock lock(&mu_);
    current_ = nullptr;
  }
  fs::remove_all(out_dir, ec);
}

absl::StatusOr<engine::JobResult> Worker::TrainJob(const wv1::AdaptTask& task,
                                                   const std::shared_ptr<CurrentJob>& job,
                                                   const std::string& out_dir,
                                                   bool* stage1_trained) {
  const LoadedSource* source = models_->Source(task.source_id());
  if (source == nullptr) {
    return ErrorWithReason(absl::StatusCode::kFailedPrecondition, "SOURCE_NOT_LOADED",
                           absl::StrCat(name_, " has no source generator ", task.source_id()));
  }
  RESTYLE_ASSIGN_OR_RETURN(engine::JobOptions options, JobOptionsFromSpec(task.spec()));
  options.device = options_.device;
  options.cuda_math = options_.cuda_math;
  options.cudnn_autotune = options_.cudnn_autotune;
  RESTYLE_RETURN_IF_ERROR(RunTorchFree("worker settings", [&] {
    for (const auto& [key, value] : options_.job_settings) engine::SetJobSetting(options, key, value);
  }));
  options.out_dir = out_dir;
  options.resume = true;
  options.demo = models_->demo();
  if (task.has_stage1_checkpoint() && !task.stage1_checkpoint().name().empty()) {
    absl::Status fetched =
        front_->Download(name_, task.stage1_checkpoint(), out_dir + "/" + kCheckpointFile);
    if (fetched.ok()) {
      spdlog::info("{}: stage-1 checkpoint of an earlier attempt fetched", task.job());
      job->checkpoint_uploaded = true;  // the front has it
    } else {
      spdlog::warn("{}: the stage-1 checkpoint could not be fetched ({}); stage 1 trains again",
                   task.job(), StatusText(fetched));
    }
  }
  engine::JobCallbacks callbacks;
  absl::Time last_step = absl::Now();
  callbacks.on_progress = [&](const engine::JobProgress& p) {
    const absl::Time now = absl::Now();
    metrics_.Step(p.stage, absl::ToDoubleSeconds(now - last_step));
    if (p.stage == 1) *stage1_trained = true;
    if (p.stage == 2 && *stage1_trained && !job->checkpoint_uploaded) {
      Report upload;
      upload.job = task.job();
      upload.attempt = task.attempt();
      upload.upload_path = out_dir + "/" + kCheckpointFile;
      upload.upload_file = kCheckpointFile;
      upload.upload_kind = "stage1_checkpoint";
      job->checkpoint_uploaded = true;
      Enqueue(std::move(upload));
    }
    Report r;
    r.job = task.job();
    r.attempt = task.attempt();
    r.event.emplace();
    *r.event->mutable_progress() = ProgressOf(p);
    if (!p.preview_path.empty()) {
      r.upload_path = p.preview_path;
      r.upload_file = "previews/" + fs::path(p.preview_path).filename().string();
      r.upload_kind = "preview";
    }
    Enqueue(std::move(r));
    ServeGeneration(options_.images_per_slot, /*wait=*/false);
    last_step = absl::Now();  // the next step's time leaves generation out
  };
  callbacks.is_cancelled = [&] { return job->cancel || job->lost || stopping(); };
  callbacks.on_log = [&](const std::string& line) {
    spdlog::info("{}: {}", task.job(), line);
    Report r;
    r.job = task.job();
    r.attempt = task.attempt();
    r.event.emplace();
    r.event->set_log(line);
    Enqueue(std::move(r));
  };
  return CallEngine(absl::StrCat("running ", task.job()),
                    [&] { return engine::RunJob(options, source->job_models, callbacks); });
}

absl::Status Worker::UploadCheckpoint(const std::shared_ptr<CurrentJob>& job,
                                      const std::string& out_dir) {
  const std::string path = out_dir + "/" + kCheckpointFile;
  if (job->checkpoint_uploaded.exchange(true) || !fs::exists(path)) return absl::OkStatus();
  return UploadFile(job->job, job->attempt, path, kCheckpointFile, "stage1_checkpoint").status();
}

absl::StatusOr<restyle::v1::Artifact> Worker::UploadFile(const std::string& job, int attempt,
                                                         const std::string& path,
                                                         const std::string& file,
                                                         const std::string& kind) {
  wv1::UploadArtifactRequest::Header header;
  header.set_worker(name_);
  header.set_job(job);
  header.set_attempt(attempt);
  header.set_file(file);
  header.set_kind(kind);
  absl::StatusOr<restyle::v1::Artifact> artifact;
  std::shared_ptr<CurrentJob> current;
  {
    absl::MutexLock lock(&mu_);
    current = current_;
  }
  absl::Status status = Persist(
      absl::Minutes(10),
      [&] {
        artifact = front_->Upload(header, path);
        return artifact.status();
      },
      current != nullptr && current->job == job ? current : nullptr);
  if (!status.ok()) return status;
  return artifact;
}

absl::Status Worker::PublishResult(const wv1::AdaptTask& task, const engine::JobResult& result,
                                   const std::string& out_dir,
                                   const std::shared_ptr<CurrentJob>& job, bool stage1_trained) {
  Report exporting;
  exporting.job = task.job();
  exporting.attempt = task.attempt();
  exporting.event.emplace();
  exporting.event->mutable_progress()->set_stage(restyle::v1::JOB_STAGE_EXPORTING);
  Enqueue(std::move(exporting));
  FlushReports();
  std::vector<std::pair<std::string, std::string>> files = {
      {"generator_delta.safetensors", "generator_delta"},
      {"samples.png", "samples"},
      {"quality.json", "quality"},
      {"result.json", "result"}};
  for (const std::string& mapper : result.mapper_paths) {
    files.emplace_back(fs::path(mapper).filename().string(), "mapper");
  }
  for (const auto& [file, kind] : files) {
    const std::string path = out_dir + "/" + file;
    if (!fs::exists(path)) continue;  // samples.png without libpng
    RESTYLE_RETURN_IF_ERROR(UploadFile(task.job(), task.attempt(), path, file, kind).status());
  }
  if (stage1_trained) RESTYLE_RETURN_IF_ERROR(UploadCheckpoint(job, out_dir));

  const LoadedSource* source = models_->Source(task.source_id());
  wv1::CompleteJobRequest request;
  request.set_worker(name_);
  request.set_job(task.job());
  request.set_attempt(task.attempt());
  restyle::v1::JobResult& r = *request.mutable_result();
  const engine::QualityReport& q = result.quality;
  restyle::v1::QualityReport& quality = *r.mutable_quality();
  quality.set_target_prompt(q.target_prompt);
  quality.set_samples(q.samples);
  quality.set_truncation(q.truncation);
  *quality.mutable_source() = ScoreOf(q.source);
  *quality.mutable_adapted() = ScoreOf(q.adapted);
  for (const auto& m : q.models) {
    restyle::v1::QualityReport::PerModel& pm = *quality.add_models();
    pm.set_name(m.name);
    pm.set_weight(m.weight);
    *pm.mutable_source() = ScoreOf(m.source);
    *pm.mutable_adapted() = ScoreOf(m.adapted);
  }
  if (q.judge) {
    restyle::v1::JudgeScores& j = *quality.mutable_judge();
    j.set_target_style(q.judge->target_style);
    j.set_source_style_rate(q.judge->source_style_rate);
    j.set_adapted_style_rate(q.judge->adapted_style_rate);
    j.set_content_kept(q.judge->content_kept);
    j.set_source_content_entropy_bits(q.judge->source_content_entropy);
    j.set_adapted_content_entropy_bits(q.judge->adapted_content_entropy);
    j.set_source_feature_diversity(q.judge->source_feature_diversity);
    j.set_adapted_feature_diversity(q.judge->adapted_feature_diversity);
  }
  *r.mutable_stage1() = TimingOf(result.stage1);
  *r.mutable_stage2() = TimingOf(result.stage2);
  *r.mutable_total_duration() =
      ToProtoDuration(absl::Milliseconds(static_cast<int64_t>(result.total_seconds * 1000)));
  r.set_stage1_resumed(result.stage1_resumed);
  RESTYLE_ASSIGN_OR_RETURN(std::string digest, CallEngine("digest", [&] {
                             return engine::GeneratorImpl::Digest(*result.adapted);
                           }));
  r.set_generator_digest(digest);
  for (const std::string& c : models_->clip_names()) r.add_clip_models(c);
  if (source != nullptr) r.set_source_digest(source->job_models.source_digest);
  wv1::CompleteJobResponse response;
  return Persist(
      absl::Minutes(10),
      [&] {
        return front_->Call(kCallTimeout, [&](grpc::ClientContext* c) {
          return front_->stub().CompleteJob(c, request, &response);
        });
      },
      job);
}

void Worker::EndJob(const wv1::AdaptTask& task, const absl::Status& status, bool stage1_trained,
                    const std::string& out_dir, const std::shared_ptr<CurrentJob>& job) {
  FlushReports();
  if (job->lost) {
    spdlog::warn("{} attempt {}: stopped, the lease had moved on", task.job(), task.attempt());
    metrics_.JobEnded("lost");
    return;
  }
  if (status.ok()) {
    spdlog::info("{} attempt {}: done", task.job(), task.attempt());
    metrics_.JobEnded("succeeded");
    return;
  }
  wv1::CompleteJobRequest complete;
  complete.set_worker(name_);
  complete.set_job(task.job());
  complete.set_attempt(task.attempt());
  if (status.code() == absl::StatusCode::kCancelled && !job->cancel) {
    // Stopping (SIGTERM): keep stage 1's work for the next attempt, hand back.
    if (stage1_trained) {
      absl::Status uploaded = UploadCheckpoint(job, out_dir);
      if (!uploaded.ok()) spdlog::warn("{}: checkpoint upload failed: {}", task.job(), StatusText(uploaded));
    }
    wv1::ReleaseJobRequest release;
    release.set_worker(name_);
    release.set_job(task.job());
    release.set_attempt(task.attempt());
    release.set_reason("the worker is shutting down");
    wv1::ReleaseJobResponse ignored;
    absl::Status released = Persist(absl::Seconds(20), [&] {
      return front_->Call(kCallTimeout, [&](grpc::ClientContext* c) {
        return front_->stub().ReleaseJob(c, release, &ignored);
      });
    });
    metrics_.JobEnded("released");
    spdlog::info("{} attempt {}: released ({})", task.job(), task.attempt(),
                 released.ok() ? "ok" : StatusText(released));
    return;
  }
  metrics_.JobEnded(status.code() == absl::StatusCode::kCancelled ? "cancelled" : "failed");
  if (status.code() == absl::StatusCode::kCancelled) {
    *complete.mutable_error() = JobErrorOf(status);
    complete.mutable_error()->set_reason("CANCELLED");
  } else {
    *complete.mutable_error() = JobErrorOf(status);
    complete.set_retryable(Retryable(status));
    spdlog::warn("{} attempt {} failed: {}", task.job(), task.attempt(), StatusText(status));
  }
  wv1::CompleteJobResponse response;
  absl::Status reported = Persist(
      absl::Minutes(10),
      [&] {
        return front_->Call(kCallTimeout, [&](grpc::ClientContext* c) {
          return front_->stub().CompleteJob(c, complete, &response);
        });
      },
      job);
  if (!reported.ok()) spdlog::warn("{}: reporting the end failed: {}", task.job(), StatusText(reported));
}

// --- the reporter -----------------------------------------------------------------------

void Worker::Enqueue(Report report) {
  absl::MutexLock lock(&mu_);
  reports_.push_back(std::move(report));
}

void Worker::FlushReports() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
        return w->reports_.empty() && !w->reporting_;
      },
      this));
}

void Worker::ReporterLoop() {
  while (true) {
    std::deque<Report> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return !w->reports_.empty() || w->engine_done_;
          },
          this));
      if (reports_.empty()) return;
      batch.swap(reports_);
      reporting_ = true;
    }
    // Sends the events gathered for one lease, in order.
    wv1::ReportProgressRequest request;
    auto send = [&] {
      if (request.events_size() == 0) return;
      wv1::ReportProgressResponse response;
      absl::Status status = Persist(absl::Seconds(30), [&] {
        return front_->Call(kCallTimeout, [&](grpc::ClientContext* c) {
          return front_->stub().ReportProgress(c, request, &response);
        });
      });
      if (ErrorReason(status) == "LEASE_LOST") NoteLease(request.job(), true, false);
      if (status.ok() && response.cancel_requested()) NoteLease(request.job(), false, true);
      if (!status.ok() && ErrorReason(status) != "LEASE_LOST") {
        spdlog::warn("{}: {} progress event(s) not delivered: {}", request.job(),
                     request.events_size(), StatusText(status));
      }
      request.clear_events();
    };
    for (Report& r : batch) {
      bool lost = false;
      {
        absl::MutexLock lock(&mu_);
        lost = current_ == nullptr || current_->job != r.job || current_->lost;
      }
      if (lost) continue;  // nobody wants to hear of it any more
      if (request.events_size() > 0 &&
          (request.job() != r.job || request.attempt() != r.attempt || !r.upload_path.empty() ||
           request.events_size() >= kMaxEventsPerReport)) {
        send();
      }
      request.set_worker(name_);
      request.set_job(r.job);
      request.set_attempt(r.attempt);
      if (!r.upload_path.empty()) {
        absl::StatusOr<restyle::v1::Artifact> a =
            UploadFile(r.job, r.attempt, r.upload_path, r.upload_file, r.upload_kind);
        if (!a.ok()) {
          spdlog::warn("{}: upload of {} failed: {}", r.job, r.upload_file, StatusText(a.status()));
        } else if (r.event && r.event->has_progress()) {
          r.event->mutable_progress()->set_preview(a->name());
        }
      }
      if (r.event) *request.add_events() = std::move(*r.event);
    }
    send();
    absl::MutexLock lock(&mu_);
    reporting_ = false;
  }
}

// --- the sender -----------------------------------------------------------------------------

void Worker::EncoderLoop() {
  engine::PngOptions png;
  png.compression_level = options_.png_level;
  png.filters = engine::kPngFilterSub;
  while (true) {
    Outgoing item;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return !w->outgoing_.empty() || w->engine_done_;
          },
          this));
      if (outgoing_.empty()) return;
      item = std::move(outgoing_.front());
      outgoing_.pop_front();
    }
    if (!item.end && !item.error && !item.work->cancelled) {
      absl::StatusOr<std::string> encoded =
          CallEngine("encoding PNG", [&] { return engine::EncodePng(item.pixels, png); });
      if (encoded.ok()) {
        item.png = *std::move(encoded);
      } else {
        item.error = JobErrorOf(encoded.status());
      }
      item.pixels = torch::Tensor();
    }
    absl::MutexLock lock(&mu_);
    const uint64_t seq = item.seq;
    encoded_.emplace(seq, std::move(item));
  }
}

void Worker::SenderLoop() {
  struct Stream {
    std::unique_ptr<grpc::ClientContext> context;
    wv1::SendImagesResponse response;
    std::unique_ptr<grpc::ClientWriter<wv1::SendImagesRequest>> writer;
    bool broken = false;
  };
  // Heap-allocated: the writer keeps a pointer to `response`.
  std::map<std::string, std::unique_ptr<Stream>> streams;
  struct Next {
    Worker* worker;
    uint64_t seq;  // the item to send next
  } next{this, 0};
  while (true) {
    Outgoing item;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Next* n) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            Worker* w = n->worker;
            return (!w->encoded_.empty() && w->encoded_.begin()->first == n->seq) ||
                   (w->engine_done_ && w->next_seq_ == n->seq);
          },
          &next));
      if (encoded_.empty() || encoded_.begin()->first != next.seq) return;  // all sent
      item = std::move(encoded_.begin()->second);
      encoded_.erase(encoded_.begin());
      ++next.seq;
    }
    const std::string& id = item.work->task.task_id();
    auto it = streams.find(id);
    if (it == streams.end()) {
      auto s = std::make_unique<Stream>();
      s->context = front_->Context(absl::Minutes(30));
      s->writer = front_->stub().SendImages(s->context.get(), &s->response);
      wv1::SendImagesRequest header;
      header.mutable_header()->set_worker(name_);
      header.mutable_header()->set_task_id(id);
      s->broken = !s->writer->Write(header);
      it = streams.emplace(id, std::move(s)).first;
    }
    Stream& s = *it->second;
    wv1::SendImagesRequest message;
    if (item.error) {
      *message.mutable_error() = *item.error;
      if (!s.broken) s.writer->Write(message);
      s.broken = true;  // nothing more goes on this stream
    } else if (!item.end && !s.broken && !item.png.empty()) {
      wv1::SendImagesRequest::Image& image = *message.mutable_image();
      image.set_index(item.index);
      image.set_seed(item.seed);
      image.set_height(static_cast<int32_t>(item.height));
      image.set_width(static_cast<int32_t>(item.width));
      image.set_png(std::move(item.png));
      s.broken = !s.writer->Write(message);
    }
    if (s.broken) item.work->cancelled = true;  // the engine stops drawing its images
    if (item.end) {
      if (!s.broken) s.writer->WritesDone();
      absl::Status status = FromGrpcStatus(s.writer->Finish());
      if (!status.ok() && status.code() != absl::StatusCode::kCancelled) {
        spdlog::warn("generation {}: {}", id, StatusText(status));
      }
      streams.erase(it);
      absl::MutexLock lock(&mu_);
      --generation_held_;
    }
  }
}

}  // namespace restyle::worker
