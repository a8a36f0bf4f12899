// Adapted generators a worker keeps in memory for Generate requests, least
// recently used evicted first when they exceed a memory budget, never one in
// use (drawing, or needed by a queued request). Each is rebuilt from its source (resident anyway) and the job's delta
// file, which lives in the worker's disk cache (<work_dir>/generators/<id>/,
// fetched from the front once; generator_delta.safetensors + result.json,
// checked by the engine against the job's digests).
//
// Thread-safety: Acquire/Release on the engine thread; Resident() from any.
#ifndef RESTYLE_WORKER_GENERATOR_CACHE_H_
#define RESTYLE_WORKER_GENERATOR_CACHE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "worker/engine/stylegan2/generator.h"

namespace restyle::worker {

class GeneratorCache {
 public:
  // `budget_bytes`: parameter bytes of adapted generators kept at most
  // (one in use may exceed it). `disk_dir`: <work_dir>/generators.
  GeneratorCache(int64_t budget_bytes, std::string disk_dir)
      : budget_bytes_(budget_bytes), disk_dir_(std::move(disk_dir)) {}

  // Called (under the cache's lock: keep them short) on every load and
  // eviction, for metrics. Set before use.
  // OnLoad's gets the load's seconds.
  void OnLoad(std::function<void(double seconds)> fn) { on_load_ = std::move(fn); }
  void OnEvict(std::function<void()> fn) { on_evict_ = std::move(fn); }

  // Where generator `name`'s files go on disk ("generators/x" -> <disk>/x).
  std::string DiskDir(const std::string& name) const;

  // The generator, loaded from its disk files on `source` when not in
  // memory; marked in use until Release. Errors from the engine (digest
  // mismatches, missing files) come through the boundary.
  absl::StatusOr<engine::Generator> Acquire(const std::string& name, engine::Generator source,
                                            const torch::Device& device);
  void Release(const std::string& name);
  // A queued request needs `name`: it is not evicted (loaded or not yet)
  // before the matching Unpin, so a long request's generator stays between
  // its batches.
  void Pin(const std::string& name);
  void Unpin(const std::string& name);

  // Names in memory, most recently used first.
  std::vector<std::string> Resident() const;
  int64_t resident_bytes() const;

 private:
  struct Entry {
    engine::Generator generator{nullptr};
    int64_t bytes = 0;
    int in_use = 0;
  };
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::function<void(double)> on_load_;
  std::function<void()> on_evict_;
  const int64_t budget_bytes_;
  const std::string disk_dir_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);  // front: most recent
  std::map<std::string, int> pins_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace restyle::worker

#endif  // RESTYLE_WORKER_GENERATOR_CACHE_H_
