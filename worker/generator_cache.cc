#include "worker/generator_cache.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/engine/adapt_job/generate.h"
#include "worker/engine_boundary.h"

namespace restyle::worker {

std::string GeneratorCache::DiskDir(const std::string& name) const {
  return absl::StrCat(disk_dir_, "/", name.substr(name.find('/') + 1));
}

absl::StatusOr<engine::Generator> GeneratorCache::Acquire(const std::string& name,
                                                          engine::Generator source,
                                                          const torch::Device& device) {
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(name);
    if (it != entries_.end()) {
      ++it->second.in_use;
      lru_.remove(name);
      lru_.push_front(name);
      return it->second.generator;
    }
  }
  const absl::Time started = absl::Now();
  RESTYLE_ASSIGN_OR_RETURN(engine::JobGenerators loaded,
                           CallEngine(absl::StrCat("loading ", name), [&] {
                             return engine::LoadJobGenerators(DiskDir(name), source, device);
                           }));
  Entry e;
  e.generator = loaded.adapted;
  for (const auto& p : e.generator->parameters()) e.bytes += p.numel() * int64_t(p.element_size());
  e.in_use = 1;
  absl::MutexLock lock(&mu_);
  bytes_ += e.bytes;
  entries_[name] = e;
  lru_.push_front(name);
  if (on_load_) on_load_(absl::ToDoubleSeconds(absl::Now() - started));
  EvictLocked();
  spdlog::info("{} loaded ({} MB; {} MB of adapted generators in memory)", name, e.bytes >> 20,
               bytes_ >> 20);
  return e.generator;
}

void GeneratorCache::Release(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(name);
  if (it != entries_.end() && it->second.in_use > 0) --it->second.in_use;
  EvictLocked();
}

void GeneratorCache::Pin(const std::string& name) {
  absl::MutexLock lock(&mu_);
  ++pins_[name];
}

void GeneratorCache::Unpin(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = pins_.find(name);
  if (it != pins_.end() && --it->second <= 0) pins_.erase(it);
  EvictLocked();
}

void GeneratorCache::EvictLocked() {
  for (auto it = lru_.rbegin(); it != lru_.rend() && bytes_ > budget_bytes_;) {
    auto e = entries_.find(*it);
    if (e->second.in_use > 0 || pins_.count(*it) > 0) {
      ++it;
      continue;
    }
    spdlog::info("{} evicted from memory", *it);
    if (on_evict_) on_evict_();
    bytes_ -= e->second.bytes;
    entries_.erase(e);
    it = std::make_reverse_iterator(lru_.erase(std::next(it).base()));
  }
}

std::vector<std::string> GeneratorCache::Resident() const {
  absl::MutexLock lock(&mu_);
  return {lru_.begin(), lru_.end()};
}

int64_t GeneratorCache::resident_bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

}  // namespace restyle::worker
