#include "server/replicas.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/status.h"

namespace restyle::server {

absl::StatusOr<int> Replicas::OthersLive(JobStore* store, const Options& options) {
  RESTYLE_ASSIGN_OR_RETURN(std::vector<FrontRecord> before,
                           store->ListFronts(absl::Now() - options.front_ttl));
  if (before.empty()) return 0;
  // A record may be a front that just died (this one's predecessor, killed
  // and restarted at once): only fronts that heartbeat again are live.
  absl::SleepFor(options.heartbeat * 1.5);
  RESTYLE_ASSIGN_OR_RETURN(std::vector<FrontRecord> after,
                           store->ListFronts(absl::Now() - options.front_ttl));
  int others = 0;
  for (const FrontRecord& f : after) {
    for (const FrontRecord& b : before) others += f.id == b.id && f.seen > b.seen;
  }
  return others;
}

Replicas::Replicas(Options options, JobStore* store, Scheduler* scheduler, EventHub* hub,
                   Executor* store_executor, TimerQueue* timers, FrontMetrics* metrics)
    : options_(std::move(options)),
      store_(store),
      scheduler_(scheduler),
      hub_(hub),
      store_executor_(store_executor),
      timers_(timers),
      metrics_(metrics) {}

absl::Status Replicas::Start() {
  RESTYLE_RETURN_IF_ERROR(store_->WatchChanges(
      options_.id, {.on_change = [this](const StoreChange& change) { OnChange(change); },
                    .on_gap = [this] { OnGap(); }}));
  // Records of fronts gone for an hour are forgotten.
  RESTYLE_RETURN_IF_ERROR(store_->DeleteFront("", absl::Now() - absl::Hours(1)));
  store_executor_->Schedule([this] { Beat(); });
  return absl::OkStatus();
}

void Replicas::Drain() {
  draining_.store(true);
  store_executor_->Schedule([this] { Beat(); });
}

void Replicas::Stop() {
  if (stopped_.exchange(true)) return;
  timers_->Cancel(beat_timer_.load());
  absl::Status deleted = store_->DeleteFront(options_.id, absl::InfinitePast());
  if (!deleted.ok()) spdlog::warn("removing this front's record: {}", StatusText(deleted));
}

void Replicas::ScheduleBeat() {
  if (stopped_.load()) return;
  beat_timer_.store(timers_->RunAfter(options_.heartbeat, [this] {
    store_executor_->Schedule([this] { Beat(); });
  }));
}

void Replicas::Beat() {
  if (stopped_.load()) return;
  const absl::Time now = absl::Now();
  absl::Status status = store_->PutFront({.id = options_.id,
                                          .address = options_.address,
                                          .started = started_,
                                          .seen = now,
                                          .draining = draining_.load(),
                                          .workers = scheduler_->LocalReadyWorkers()});
  absl::StatusOr<std::vector<FrontRecord>> fronts =
      status.ok() ? store_->ListFronts(now - options_.front_ttl)
                  : absl::StatusOr<std::vector<FrontRecord>>(status);
  if (fronts.ok()) {
    std::vector<Scheduler::Peer> peers;
    for (FrontRecord& f : *fronts) {
      if (f.id == options_.id || f.draining) continue;
      peers.push_back({.front = f.id, .address = f.address, .workers = std::move(f.workers)});
    }
    if (metrics_ != nullptr) metrics_->SetReplicas(static_cast<int>(peers.size()) + 1);
    scheduler_->SetPeers(std::move(peers));
    status = scheduler_->LoadSources();
  }
  if (!status.ok()) {
    // The others' workers stay as last heard (they age out with the records).
    if (!warned_) spdlog::warn("heartbeat to the shared store: {}", StatusText(status));
    warned_ = true;
  } else if (warned_) {
    spdlog::info("heartbeat to the shared store: works again");
    warned_ = false;
  }
  // A queued job whose notification was lost waits one beat at most, and
  // a followed job's event `reread` at most.
  scheduler_->QueueChanged();
  if (now - last_reread_ >= options_.reread) RereadFollowed(/*always=*/false);
  ScheduleBeat();
}

void Replicas::OnChange(const StoreChange& change) {
  if (change.queued) scheduler_->QueueChanged();
  if (hub_->subscribers(change.job_id) == 0) return;
  store_executor_->Schedule([this, change] {
    RelayEvents(change.job_id, change.first_seq, change.last_seq);
  });
}

void Replicas::OnGap() {
  scheduler_->QueueChanged();
  store_executor_->Schedule([this] { RereadFollowed(/*always=*/true); });
}

void Replicas::RereadFollowed(bool always) {
  last_reread_ = absl::Now();
  std::map<std::string, int64_t> relayed;
  for (const std::string& id : hub_->jobs()) {
    auto it = relayed_.find(id);
    const int64_t before = it == relayed_.end() ? 0 : it->second;
    relayed[id] = before;
    absl::StatusOr<JobRow> row = store_->Get(id);
    if (!row.ok()) continue;
    // The latest event: a follower that missed some reads them itself (one
    // that has it already drops it).
    if (always || row->job.event_seq() > before) {
      RelayEvents(id, row->job.event_seq(), row->job.event_seq());
    }
  }
  relayed_ = std::move(relayed);  // jobs no longer followed are forgotten
}

void Replicas::RelayEvents(const std::string& id, int64_t first_seq, int64_t last_seq) {
  if (first_seq < 1 || last_seq < first_seq) return;
  absl::StatusOr<Events> events =
      store_->ReadEvents(id, first_seq - 1, static_cast<int>(last_seq - first_seq + 1));
  if (!events.ok()) {
    spdlog::warn("reading jobs/{}'s events from another front: {}", id, StatusText(events.status()));
    return;
  }
  hub_->Relay(id, *events);
  int64_t& newest = relayed_[id];
  newest = std::max(newest, last_seq);
}

}  // namespace restyle::server
