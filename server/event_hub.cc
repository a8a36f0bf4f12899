#include "server/event_hub.h"

namespace restyle::server {

EventHub::Id EventHub::Subscribe(const std::string& job_id, Callback callback) {
  absl::MutexLock lock(&mu_);
  const Id id = next_id_++;
  subscribers_[job_id].emplace(id, std::move(callback));
  return id;
}

void EventHub::Unsubscribe(const std::string& job_id, Id id) {
  absl::MutexLock lock(&mu_);
  auto it = subscribers_.find(job_id);
  if (it == subscribers_.end()) return;
  it->second.erase(id);
  if (it->second.empty()) subscribers_.erase(it);
}

void EventHub::Publish(const std::string& job_id, const Events& events) {
  if (events.empty()) return;
  if (observer_) observer_(events);
  std::vector<Callback> callbacks;
  {
    absl::MutexLock lock(&mu_);
    auto it = subscribers_.find(job_id);
    if (it == subscribers_.end()) return;
    for (const auto& [id, cb] : it->second) callbacks.push_back(cb);
  }
  for (const Callback& cb : callbacks) cb(events);
}

size_t EventHub::subscribers() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [job, subs] : subscribers_) n += subs.size();
  return n;
}

size_t EventHub::subscribers(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = subscribers_.find(job_id);
  return it == subscribers_.end() ? 0 : it->second.size();
}

}  // namespace restyle::server
