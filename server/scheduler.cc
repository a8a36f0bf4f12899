#include "server/scheduler.h"

#include <algorithm>
#include <cmath>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "common/sha256.h"
#include "common/status.h"
#include "common/time.h"

namespace restyle::server {
namespace {

std::string IdOf(const std::string& name) {
  const size_t slash = name.find('/');
  return slash == std::string::npos ? name : name.substr(slash + 1);
}

// Whether another front's worker has `source` loaded.
bool HasSource(const v1::Worker& w, const std::string& source) {
  return std::find(w.sources().begin(), w.sources().end(), source) != w.sources().end();
}

// A worker's generation queue is this long at most, whatever it says (the
// front sums these).
constexpr int kMaxGenerationTasks = 4096;

// 32 random bytes as hex: a worker's session secret.
std::string RandomSecret() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();  // no CSPRNG: nothing is safe
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

// FAILED_PRECONDITION (SOURCE_CONFLICT) when a worker's `offered` source
// differs from the `recorded` one of the same name in what adapted
// generators and jobs depend on (a description may change).
absl::Status SourceConflict(const v1::Generator& recorded, const v1::Generator& offered) {
  std::string what;
  if (recorded.digest() != offered.digest()) {
    what = absl::StrCat("weights (digest ", recorded.digest().substr(0, 12), " recorded, ",
                        offered.digest().substr(0, 12), " offered)");
  } else if (recorded.resolution() != offered.resolution()) {
    what = absl::StrCat("resolution (", recorded.resolution(), " recorded, ", offered.resolution(),
                        " offered)");
  } else if (recorded.source_text() != offered.source_text()) {
    what = absl::StrCat("source_text (\"", recorded.source_text(), "\" recorded, \"",
                        offered.source_text(), "\" offered)");
  } else {
    return absl::OkStatus();
  }
  return ErrorWithReason(
      absl::StatusCode::kFailedPrecondition, "SOURCE_CONFLICT",
      absl::StrCat(recorded.name(), " is recorded with other ", what,
                   ": its adapted generators were trained on the recorded one and later jobs take "
                   "its source_text, so a worker cannot change it for everyone; give the new "
                   "model another id in the worker's manifest"),
      {{"source", recorded.name()}});
}

absl::Duration ClampWait(absl::Duration wait, absl::Duration max) {
  if (wait <= absl::ZeroDuration() || wait > max) return max;
  return wait;
}

}  // namespace

Scheduler::Scheduler(const SchedulerOptions& options, JobStore* store, Executor* store_executor,
                     TimerQueue* timers, EventHub* hub)
    : options_(options), store_(store), store_executor_(store_executor), timers_(timers), hub_(hub) {
  absl::MutexLock lock(&mu_);
  ScheduleTick();
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Stop() {
  std::vector<std::shared_ptr<Waiter>> waiters;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    timers_->Cancel(tick_timer_);
    for (auto& [id, w] : adapt_waiters_) waiters.push_back(w);
    for (auto& [id, w] : generation_waiters_) waiters.push_back(w);
    adapt_waiters_.clear();
    generation_waiters_.clear();
  }
  for (auto& w : waiters) {
    timers_->Cancel(w->timer);
    w->call->Finish([] { return absl::UnavailableError("the front is stopping"); });
  }
}

absl::Status Scheduler::LoadSources() {
  RESTYLE_ASSIGN_OR_RETURN(std::vector<v1::Generator> sources, store_->ListSources());
  absl::MutexLock lock(&mu_);
  for (v1::Generator& g : sources) sources_[g.name()] = std::move(g);
  return absl::OkStatus();
}

void Scheduler::OnReadinessChange(std::function<void(bool)> fn) {
  {
    absl::MutexLock lock(&mu_);
    on_readiness_ = std::move(fn);
  }
  UpdateReadiness();
}

void Scheduler::ScheduleTick() {
  if (stopping_) return;
  tick_timer_ = timers_->RunAfter(options_.tick, [this] {
    Tick();
    absl::MutexLock lock(&mu_);
    ScheduleTick();
  });
}

// --- workers -------------------------------------------------------------------

absl::StatusOr<wv1::RegisterWorkerResponse> Scheduler::Register(
    const wv1::RegisterWorkerRequest& request) {
  const std::string name = MakeName(kWorkers, request.worker_id());
  const absl::Time now = absl::Now();
  const std::string key = Sha256Hex(request.instance_key());
  std::string session;
  std::vector<v1::Generator> new_sources;
  std::vector<std::shared_ptr<GenerationTask>> lost;
  std::vector<std::shared_ptr<Waiter>> polls;
  {
    absl::MutexLock lock(&mu_);
    auto live = workers_.find(name);
    const bool alive = live != workers_.end() && now - live->second.last_seen <= options_.lease_ttl;
    const bool again = alive && !live->second.instance_key.empty() &&
                       CRYPTO_memcmp(live->second.instance_key.data(), key.data(), key.size()) == 0;
    if (alive && !again) {
      return ErrorWithReason(
          absl::StatusCode::kAlreadyExists, "WORKER_ID_IN_USE",
          absl::StrCat(name, " is registered by another process (on ", live->second.info.hostname(),
                       ", heard from ", absl::FormatDuration(absl::Trunc(now - live->second.last_seen,
                                                                         absl::Milliseconds(100))),
                       " ago): a live worker's id cannot be taken over; give this worker another "
                       "--id, or it is accepted once the other has stopped"),
          {{"worker", name}});
    }
    // Sources first: a conflict refuses the whole registration.
    RESTYLE_ASSIGN_OR_RETURN(std::vector<std::string> sources,
                             OfferedSourcesLocked(request, now, &new_sources));
    session = again ? live->second.session : RandomSecret();
    if (live != workers_.end()) DropWorkerLocked(name, &lost, &polls);  // a re-registration
    Worker& w = workers_[name];
    w.info.set_name(name);
    w.info.set_hostname(request.hostname());
    w.info.set_device(request.device());
    w.info.set_memory_bytes(request.memory_bytes());
    w.info.set_version(request.version());
    w.info.set_front(options_.front_id);
    *w.info.mutable_connect_time() = ToProtoTime(now);
    *w.info.mutable_last_heartbeat_time() = ToProtoTime(now);
    w.can_adapt = request.clip_models_size() > 0;
    w.last_seen = now;
    w.max_tasks = std::clamp(request.max_generation_tasks(), 1, kMaxGenerationTasks);
    w.session = session;
    w.instance_key = request.instance_key().empty() ? "" : key;
    for (const std::string& source : sources) {
      w.sources.insert(source);
      w.info.add_sources(source);
    }
    for (const v1::Generator& g : new_sources) sources_[g.name()] = g;
  }
  for (auto& w : polls) FinishWaiterEmpty(w);
  for (auto& t : lost) {
    t->stream->Finish(ErrorWithReason(absl::StatusCode::kUnavailable, "WORKER_LOST",
                                     "the worker serving the request restarted; retry"));
  }
  if (!new_sources.empty()) {
    store_executor_->Schedule([this, new_sources] {
      for (const v1::Generator& g : new_sources) {
        absl::Status s = store_->PutSource(g);
        if (!s.ok()) spdlog::warn("recording source {}: {}", g.name(), StatusText(s));
      }
    });
  }
  spdlog::info("worker {} registered: {} on {}, {} source(s), version {}", name,
               request.device(), request.hostname(), request.sources_size(), request.version());
  UpdateReadiness();
  QueueChanged();
  wv1::RegisterWorkerResponse response;
  response.set_worker(name);
  *response.mutable_heartbeat_interval() = ToProtoDuration(options_.heartbeat_interval);
  *response.mutable_lease_ttl() = ToProtoDuration(options_.lease_ttl);
  response.set_session(session);
  return response;
}

absl::StatusOr<std::vector<std::string>> Scheduler::OfferedSourcesLocked(
    const wv1::RegisterWorkerRequest& request, absl::Time now, std::vector<v1::Generator>* changed) {
  std::vector<std::string> names;
  for (const wv1::SourceModel& m : request.sources()) {
    v1::Generator g;
    g.set_name(MakeName(kGenerators, m.id()));
    g.set_kind(v1::GENERATOR_KIND_SOURCE);
    g.set_resolution(m.resolution());
    g.set_size_bytes(m.size_bytes());
    g.set_digest(m.digest());
    g.set_description(m.description());
    g.set_source_text(m.source_text());
    names.push_back(g.name());
    auto it = sources_.find(g.name());
    if (it != sources_.end()) {
      RESTYLE_RETURN_IF_ERROR(SourceConflict(it->second, g));
      if (it->second.description() == g.description()) continue;
    }
    *g.mutable_create_time() = it == sources_.end() ? ToProtoTime(now) : it->second.create_time();
    changed->push_back(std::move(g));
  }
  return names;
}

absl::StatusOr<Scheduler::Worker*> Scheduler::FindWorkerLocked(const std::string& worker,
                                                              const std::string& session) {
  auto it = workers_.find(worker);
  if (it == workers_.end()) {
    return ErrorWithReason(absl::StatusCode::kNotFound, "WORKER_UNKNOWN",
                           absl::StrCat(worker, " is not registered here; register again"),
                           {{"worker", worker}});
  }
  const std::string& held = it->second.session;
  if (session.size() != held.size() || CRYPTO_memcmp(held.data(), session.data(), held.size()) != 0) {
    return ErrorWithReason(absl::StatusCode::kPermissionDenied, "WORKER_SESSION_INVALID",
                           absl::StrCat("the call does not carry the session ", worker,
                                        " was given at registration (metadata "
                                        "\"restyle-worker-session\"); register again"),
                           {{"worker", worker}});
  }
  return &it->second;
}

absl::Status Scheduler::CheckWorker(const std::string& worker, const std::string& session) {
  absl::MutexLock lock(&mu_);
  RESTYLE_ASSIGN_OR_RETURN(Worker * w, FindWorkerLocked(worker, session));
  w->last_seen = absl::Now();
  return absl::OkStatus();
}

absl::Status Scheduler::Heartbeat(const wv1::HeartbeatRequest& request, const std::string& session) {
  bool draining_changed = false;
  std::vector<std::shared_ptr<GenerationTask>> lost;
  std::vector<std::shared_ptr<Waiter>> polls;
  {
    absl::MutexLock lock(&mu_);
    RESTYLE_ASSIGN_OR_RETURN(Worker * found, FindWorkerLocked(request.worker(), session));
    Worker& w = *found;
    if (request.leaving()) {
      DropWorkerLocked(request.worker(), &lost, &polls);
      draining_changed = true;
    } else {
      const absl::Time now = absl::Now();
      w.last_seen = now;
      *w.info.mutable_last_heartbeat_time() = ToProtoTime(now);
      w.info.clear_resident_generators();
      for (const std::string& g : request.resident_generators()) w.info.add_resident_generators(g);
      w.info.set_generation_queue(request.generation_tasks());
      w.info.set_job(request.leases_size() > 0 ? request.leases(0).job() : "");
      draining_changed = w.draining != request.draining();
      w.draining = request.draining();
    }
  }
  for (auto& w : polls) FinishWaiterEmpty(w);
  for (auto& t : lost) {
    t->stream->Finish(ErrorWithReason(absl::StatusCode::kUnavailable, "WORKER_LOST",
                                     "the worker serving the request stopped; retry"));
  }
  if (request.leaving()) spdlog::info("worker {} left", request.worker());
  if (draining_changed) UpdateReadiness();
  return absl::OkStatus();
}

std::vector<v1::Worker> Scheduler::Workers() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, v1::Worker> out;
  for (const auto& [name, w] : workers_) out[name] = w.info;
  // A worker that moved between fronts may be in two lists for a moment:
  // the latest heartbeat wins.
  for (const Peer& peer : peers_) {
    for (const v1::Worker& w : peer.workers) {
      auto [it, added] = out.try_emplace(w.name(), w);
      if (!added && FromProtoTime(w.last_heartbeat_time()) >
                        FromProtoTime(it->second.last_heartbeat_time())) {
        it->second = w;
      }
    }
  }
  std::vector<v1::Worker> list;
  for (auto& [name, w] : out) list.push_back(std::move(w));
  return list;
}

void Scheduler::SetPeers(std::vector<Peer> peers) {
  {
    absl::MutexLock lock(&mu_);
    peers_ = std::move(peers);
  }
  UpdateReadiness();
}

std::vector<v1::Worker> Scheduler::LocalReadyWorkers() const {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  std::vector<v1::Worker> out;
  for (const auto& [name, w] : workers_) {
    if (WorkerReady(w, now)) out.push_back(w.info);
  }
  return out;
}

std::string Scheduler::PeerWith(const std::string& source) const {
  absl::MutexLock lock(&mu_);
  std::string best;
  int best_load = 0;
  for (const Peer& peer : peers_) {
    for (const v1::Worker& w : peer.workers) {
      if (!HasSource(w, source)) continue;
      const int load = w.generation_queue() + (w.job().empty() ? 0 : 1000);
      if (best.empty() || load < best_load) {
        best = peer.address;
        best_load = load;
      }
    }
  }
  return best;
}

Scheduler::WorkerCounts Scheduler::CountWorkers() const {
  absl::MutexLock lock(&mu_);
  WorkerCounts c;
  for (const auto& [name, w] : workers_) {
    if (w.draining) {
      ++c.draining;
    } else if (!w.info.job().empty()) {
      ++c.training;
    } else {
      ++c.idle;
    }
  }
  return c;
}

bool Scheduler::WorkerReady(const Worker& w, absl::Time now) const {
  return !w.draining && now - w.last_seen <= options_.lease_ttl;
}

int Scheduler::ReadyWorkers(const std::string& source) const {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  std::set<std::string> ready;
  for (const auto& [name, w] : workers_) {
    if (WorkerReady(w, now) && (source.empty() || w.sources.count(source))) ready.insert(name);
  }
  for (const Peer& peer : peers_) {
    for (const v1::Worker& w : peer.workers) {
      if (source.empty() || HasSource(w, source)) {
        ready.insert(w.name());
      }
    }
  }
  return static_cast<int>(ready.size());
}

std::vector<v1::Generator> Scheduler::Sources() const {
  std::vector<v1::Generator> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, g] : sources_) out.push_back(g);
  }
  for (v1::Generator& g : out) g.set_ready_workers(ReadyWorkers(g.name()));
  return out;
}

std::optional<v1::Generator> Scheduler::Source(const std::string& name) const {
  std::optional<v1::Generator> g;
  {
    absl::MutexLock lock(&mu_);
    auto it = sources_.find(name);
    if (it == sources_.end()) return std::nullopt;
    g = it->second;
  }
  g->set_ready_workers(ReadyWorkers(name));
  return g;
}

void Scheduler::DropWorkerLocked(const std::string& name,
                                 std::vector<std::shared_ptr<GenerationTask>>* lost,
                                 std::vector<std::shared_ptr<Waiter>>* polls) {
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (it->second.worker == name) {  // the worker's entry (and its count) goes below
      lost->push_back(it->second.task);
      it = in_flight_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto* waiters : {&adapt_waiters_, &generation_waiters_}) {
    for (auto it = waiters->begin(); it != waiters->end();) {
      if (it->second->worker == name && !it->second->trying) {
        polls->push_back(it->second);
        it = waiters->erase(it);
      } else {
        ++it;
      }
    }
  }
  workers_.erase(name);
}

void Scheduler::UpdateReadiness() {
  std::function<void(bool)> fn;
  bool ready;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    ready = false;
    for (const auto& [name, w] : workers_) ready |= WorkerReady(w, now);
    for (const Peer& peer : peers_) ready |= !peer.workers.empty();
    if (!on_readiness_ || ready_ == ready) return;
    ready_ = ready;
    fn = on_readiness_;
  }
  if (fn) fn(ready);
}

// --- the adaptation lane -----------------------------------------------------------

std::shared_ptr<Scheduler::Waiter> Scheduler::AddWaiter(
    std::map<uint64_t, std::shared_ptr<Waiter>>& waiters, const std::string& worker,
    std::shared_ptr<LongUnary> call, wv1::PollWorkResponse* response, absl::Duration wait) {
  auto w = std::make_shared<Waiter>();
  w->id = next_waiter_id_++;
  w->worker = worker;
  w->call = std::move(call);
  w->response = response;
  const uint64_t id = w->id;
  w->deadline = absl::Now() + ClampWait(wait, options_.max_poll_wait);
  w->timer = timers_->RunAt(w->deadline, [this, id] { RemoveWaiter(id); });
  w->call->OnCancel([this, id] { RemoveWaiter(id); });
  waiters[id] = w;
  return w;
}

void Scheduler::RemoveWaiter(uint64_t id) {
  std::shared_ptr<Waiter> w;
  {
    absl::MutexLock lock(&mu_);
    for (auto* waiters : {&adapt_waiters_, &generation_waiters_}) {
      auto it = waiters->find(id);
      if (it != waiters->end() && !it->second->trying) {
        w = it->second;
        waiters->erase(it);
      }
    }
  }
  if (w) FinishWaiterEmpty(w);
}

void Scheduler::FinishWaiterEmpty(const std::shared_ptr<Waiter>& w) {
  timers_->Cancel(w->timer);
  w->call->Finish([] { return absl::OkStatus(); });
}

void Scheduler::PollAdaptation(const std::string& worker, std::shared_ptr<LongUnary> call,
                               wv1::PollWorkResponse* response, absl::Duration wait) {
  std::shared_ptr<Waiter> w;
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(worker);
    if (draining_ || it == workers_.end() || !it->second.can_adapt || it->second.draining) {
      // Nothing for it now; it asks again after a pause of its own.
      w = std::make_shared<Waiter>();
      w->call = std::move(call);
    } else {
      w = AddWaiter(adapt_waiters_, worker, std::move(call), response, wait);
      w->trying = true;
    }
  }
  if (!w->trying) {
    w->call->Finish([] { return absl::OkStatus(); });
    return;
  }
  TryLease(w);
}

void Scheduler::QueueChanged() {
  queue_epoch_.fetch_add(1);
  std::vector<std::shared_ptr<Waiter>> idle;
  {
    absl::MutexLock lock(&mu_);
    if (draining_) return;
    for (auto& [id, w] : adapt_waiters_) {
      if (!w->trying) {
        w->trying = true;
        idle.push_back(w);
      }
    }
  }
  for (auto& w : idle) TryLease(w);
}

void Scheduler::TryLease(std::shared_ptr<Waiter> w) {
  store_executor_->Schedule([this, w] {
    const uint64_t epoch = queue_epoch_.load();
    std::vector<std::string> sources;
    {
      absl::MutexLock lock(&mu_);
      auto it = workers_.find(w->worker);
      if (it != workers_.end() && !draining_) sources.assign(it->second.sources.begin(), it->second.sources.end());
    }
    absl::StatusOr<std::optional<JobUpdate>> lease =
        sources.empty() ? std::optional<JobUpdate>()
                        : store_->Lease(w->worker, sources, absl::Now(), options_.lease_ttl);
    if (!lease.ok()) spdlog::warn("leasing a job for {}: {}", w->worker, StatusText(lease.status()));
    if (!lease.ok() || !*lease) {
      bool retry = false;
      {
        absl::MutexLock lock(&mu_);
        w->trying = false;
        if (adapt_waiters_.count(w->id) && lease.ok() && queue_epoch_.load() != epoch) {
          retry = w->trying = true;
        }
      }
      if (retry) {
        TryLease(w);
      } else if (w->call->finished() || absl::Now() >= w->deadline) {
        RemoveWaiter(w->id);  // its timer or cancel came while it was trying
      }
      return;
    }
    JobUpdate& update = **lease;
    const v1::Job& job = update.row.job;
    const std::string job_id = IdOf(job.name());
    wv1::AdaptTask task;
    task.set_job(job.name());
    task.set_attempt(job.attempt());
    *task.mutable_spec() = job.spec();
    task.set_source_id(IdOf(job.spec().source_generator()));
    absl::StatusOr<ArtifactRecord> checkpoint =
        store_->GetArtifact(ArtifactName(job_id, "stage1_checkpoint.safetensors"));
    if (checkpoint.ok()) *task.mutable_stage1_checkpoint() = checkpoint->artifact;
    if (job.spec().has_max_run_time()) *task.mutable_run_time_left() = job.spec().max_run_time();
    hub_->Publish(job_id, update.events);
    {
      absl::MutexLock lock(&mu_);
      adapt_waiters_.erase(w->id);
    }
    timers_->Cancel(w->timer);
    wv1::PollWorkResponse* response = w->response;
    const bool delivered = w->call->Finish([&] {
      *response->mutable_adapt() = task;
      return absl::OkStatus();
    });
    if (delivered) {
      spdlog::info("{} attempt {} leased to {}", job.name(), job.attempt(), w->worker);
    } else {
      // The poll ended while the lease was taken: give the job back at once.
      absl::StatusOr<JobUpdate> released = store_->Release(
          job_id, w->worker, job.attempt(), "", absl::Now());
      if (released.ok()) hub_->Publish(job_id, released->events);
    }
    QueueChanged();
  });
}

// --- the generation lane -------------------------------------------------------------

absl::Status Scheduler::SubmitGeneration(std::shared_ptr<GenerationTask> task) {
  GenerationMatches matches;
  {
    absl::MutexLock lock(&mu_);
    if (draining_) {
      return ErrorWithReason(absl::StatusCode::kUnavailable, "DRAINING",
                             "the front is shutting down; retry on another replica or later", {},
                             absl::Seconds(1));
    }
    const absl::Time now = absl::Now();
    bool capable = false;
    int capacity = 0, outstanding = 0;  // tasks the workers with the source hold at most, and now
    for (const auto& [name, w] : workers_) {
      if (!WorkerReady(w, now) || w.sources.count(task->source) == 0) continue;
      capable = true;
      capacity += w.max_tasks;
      outstanding += w.generating;
    }
    if (!capable) {
      return ErrorWithReason(
          absl::StatusCode::kUnavailable, "NO_WORKER",
          absl::StrCat("no connected worker has ", task->source,
                       " loaded; retry when one is (restyle-worker with that model)"),
          {{"generator", task->source}}, absl::Seconds(2));
    }
    for (const auto& t : generation_queue_) outstanding += t->source == task->source;
    if (outstanding >= capacity ||
        static_cast<int>(generation_queue_.size()) >= options_.max_generation_queue) {
      return ErrorWithReason(
          absl::StatusCode::kResourceExhausted, "QUEUE_FULL",
          absl::StrCat("every worker with ", task->source, " has its generation queue full (",
                       outstanding, " requests held, room for ", capacity,
                       "); retry after the delay, or add workers"),
          {{"lane", "generation"}, {"generator", task->source}}, absl::Milliseconds(500));
    }
    generation_queue_.push_back(std::move(task));
    matches = MatchGenerationLocked();
  }
  AnswerGeneration(std::move(matches));
  return absl::OkStatus();
}

void Scheduler::PollGeneration(const std::string& worker, std::shared_ptr<LongUnary> call,
                               wv1::PollWorkResponse* response, absl::Duration wait,
                               int max_tasks) {
  GenerationMatches matches;
  bool accepted = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(worker);
    if (!draining_ && it != workers_.end() && !it->second.draining) {
      AddWaiter(generation_waiters_, worker, call, response, wait)->room = std::max(1, max_tasks);
      matches = MatchGenerationLocked();
      accepted = true;
    }
  }
  if (!accepted) {
    call->Finish([] { return absl::OkStatus(); });
    return;
  }
  AnswerGeneration(std::move(matches));
}

void Scheduler::AddInFlightLocked(const std::shared_ptr<GenerationTask>& task,
                                  const std::string& worker) {
  in_flight_[task->task.task_id()] = {task, worker};
  auto w = workers_.find(worker);
  if (w != workers_.end()) ++w->second.generating;
}

void Scheduler::EraseInFlightLocked(const std::string& task_id) {
  auto it = in_flight_.find(task_id);
  if (it == in_flight_.end()) return;
  auto w = workers_.find(it->second.worker);
  if (w != workers_.end()) --w->second.generating;
  in_flight_.erase(it);
}

Scheduler::GenerationMatches Scheduler::MatchGenerationLocked() {
  GenerationMatches matches;
  const absl::Time now = absl::Now();
  std::vector<std::shared_ptr<Waiter>> answered;
  for (auto t = generation_queue_.begin(); t != generation_queue_.end();) {
    const std::shared_ptr<GenerationTask>& task = *t;
    if (task->deadline <= now) {
      matches.expired.push_back(task);
      t = generation_queue_.erase(t);
      continue;
    }
    std::shared_ptr<Waiter> best;
    int best_score = 0;
    for (auto& [id, waiter] : generation_waiters_) {
      if (static_cast<int>(waiter->assigned.size()) >= waiter->room) continue;
      auto w = workers_.find(waiter->worker);
      if (w == workers_.end() || !w->second.sources.count(task->source) || w->second.draining) {
        continue;
      }
      const Worker& worker = w->second;
      const auto& resident = worker.info.resident_generators();
      const bool holds =
          std::find(resident.begin(), resident.end(), task->task.generator()) != resident.end();
      const bool training = !worker.info.job().empty();
      const bool free_enough = !training && worker.generating < std::max(1, worker.max_tasks / 2);
      // Holding the generator wins while the worker is free enough; then the
      // least loaded, a training worker counting as a full queue's load.
      const int load = worker.generating + (training ? worker.max_tasks : 0);
      const int score = (holds && free_enough ? 1 << 24 : 0) + (1 << 20) - std::min(load, 1 << 19);
      if (score > best_score) {
        best_score = score;
        best = waiter;
      }
    }
    if (best == nullptr) {
      ++t;
      continue;
    }
    if (best->assigned.empty()) answered.push_back(best);
    best->assigned.push_back(task);
    AddInFlightLocked(task, best->worker);
    t = generation_queue_.erase(t);
  }
  for (auto& waiter : answered) generation_waiters_.erase(waiter->id);
  matches.answers = std::move(answered);
  return matches;
}

void Scheduler::AnswerGeneration(GenerationMatches matches) {
  for (auto& task : matches.expired) {
    task->stream->Finish(ErrorWithReason(
        absl::StatusCode::kDeadlineExceeded, "DEADLINE_EXCEEDED",
        "the request's deadline passed while it waited for a worker; retry with a longer "
        "deadline or when the lane is less busy"));
  }
  GenerationMatches again;
  for (auto& waiter : matches.answers) {
    timers_->Cancel(waiter->timer);
    wv1::PollWorkResponse* response = waiter->response;
    const std::vector<std::shared_ptr<GenerationTask>> tasks = std::move(waiter->assigned);
    waiter->assigned.clear();
    if (!waiter->call->Finish([&] {
          for (const auto& task : tasks) *response->add_generate() = task->task;
          return absl::OkStatus();
        })) {
      // The poll ended meanwhile: the tasks go back, first in line.
      absl::MutexLock lock(&mu_);
      for (auto it = tasks.rbegin(); it != tasks.rend(); ++it) {
        EraseInFlightLocked((*it)->task.task_id());
        generation_queue_.push_front(*it);
      }
      GenerationMatches more = MatchGenerationLocked();
      again.answers.insert(again.answers.end(), more.answers.begin(), more.answers.end());
      again.expired.insert(again.expired.end(), more.expired.begin(), more.expired.end());
    }
  }
  if (!again.answers.empty() || !again.expired.empty()) AnswerGeneration(std::move(again));
}

std::shared_ptr<GenerationTask> Scheduler::InFlight(const std::string& task_id,
                                                    const std::string& worker) {
  absl::MutexLock lock(&mu_);
  auto it = in_flight_.find(task_id);
  if (it == in_flight_.end() || it->second.worker != worker) return nullptr;
  return it->second.task;
}

void Scheduler::GenerationDone(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  EraseInFlightLocked(task_id);
}

void Scheduler::CancelGeneration(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  EraseInFlightLocked(task_id);
  for (auto it = generation_queue_.begin(); it != generation_queue_.end(); ++it) {
    if ((*it)->task.task_id() == task_id) {
      generation_queue_.erase(it);
      break;
    }
  }
}

bool Scheduler::GeneratorInUse(const std::string& generator) const {
  absl::MutexLock lock(&mu_);
  for (const auto& t : generation_queue_) {
    if (t->task.generator() == generator) return true;
  }
  for (const auto& [id, f] : in_flight_) {
    if (f.task->task.generator() == generator) return true;
  }
  return false;
}

size_t Scheduler::generation_queued() const {
  absl::MutexLock lock(&mu_);
  return generation_queue_.size();
}

// --- draining and ticks ----------------------------------------------------------------

void Scheduler::Drain() {
  std::vector<std::shared_ptr<Waiter>> waiters;
  std::deque<std::shared_ptr<GenerationTask>> queued;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    for (auto& [id, w] : adapt_waiters_) {
      if (!w->trying) waiters.push_back(w);
    }
    for (auto& [id, w] : generation_waiters_) waiters.push_back(w);
    for (auto& w : waiters) {
      adapt_waiters_.erase(w->id);
      generation_waiters_.erase(w->id);
    }
    queued.swap(generation_queue_);
  }
  for (auto& w : waiters) FinishWaiterEmpty(w);
  for (auto& t : queued) {
    t->stream->Finish(ErrorWithReason(absl::StatusCode::kUnavailable, "DRAINING",
                                     "the front is shutting down; retry"));
  }
}

bool Scheduler::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

void Scheduler::PublishAll(const std::vector<JobUpdate>& updates) {
  for (const JobUpdate& u : updates) hub_->Publish(IdOf(u.row.job.name()), u.events);
}

void Scheduler::Tick() {
  std::vector<std::shared_ptr<GenerationTask>> lost;
  std::vector<std::shared_ptr<Waiter>> polls;
  GenerationMatches matches;  // the queue's expired tasks, mostly
  bool draining = false;
  {
    absl::MutexLock lock(&mu_);
    matches = MatchGenerationLocked();
    const absl::Time now = absl::Now();
    std::vector<std::string> stale;
    draining = draining_;
    for (const auto& [name, w] : workers_) {
      if (!draining && now - w.last_seen > options_.lease_ttl) stale.push_back(name);
    }
    for (const std::string& name : stale) {
      spdlog::warn("worker {} stopped calling; dropped", name);
      DropWorkerLocked(name, &lost, &polls);
    }
  }
  for (auto& w : polls) FinishWaiterEmpty(w);
  for (auto& t : lost) {
    t->stream->Finish(ErrorWithReason(absl::StatusCode::kUnavailable, "WORKER_LOST",
                                     "the worker serving the request was lost; retry"));
  }
  AnswerGeneration(std::move(matches));
  UpdateReadiness();
  // A front shutting down no longer hears every heartbeat (its ports close
  // while calls finish): it lets leases be, and the next front, which gives
  // every lease two periods to be renewed, decides.
  if (draining) return;
  store_executor_->Schedule([this] {
    if (tick_running_) return;
    tick_running_ = true;
    absl::StatusOr<std::vector<JobUpdate>> expired = store_->ExpireDue(absl::Now());
    tick_running_ = false;
    if (!expired.ok()) {
      spdlog::warn("applying job deadlines: {}", StatusText(expired.status()));
      return;
    }
    for (const JobUpdate& u : *expired) {
      spdlog::info("{}: {}", u.row.job.name(),
                   u.row.job.state() == v1::JOB_STATE_QUEUED
                       ? "lease lost, queued again"
                       : absl::StrCat("ended: ", u.row.job.error().reason()));
    }
    PublishAll(*expired);
    if (!expired->empty()) QueueChanged();
  });
}

}  // namespace restyle::server
