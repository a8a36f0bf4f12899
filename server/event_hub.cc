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
  Relay(job_id, events);
}

void EventHub::Relay(const std::string& job_id, const Events& events) {
  if (events.empty()) return;
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

std::vector<std::string> EventHub::jobs() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [job, subs] : subscribers_) out.push_back(job);
  return out;
}

size_t EventHub::subscribers(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto it = subscribers_.find(job_id);
  return it == subscribers_.end() ? 0 : it->second.size();
}

}  // namespace restyle::server
