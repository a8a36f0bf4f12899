#include "worker/engine/common/cpu_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <cstdlib>
#include <list>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

namespace restyle::engine {
namespace {

constexpr size_t kGranule = size_t{64} << 10;
constexpr size_t kHugePage = size_t{2} << 20;

// Size class of a request of `bytes`: rounded up to an eighth of its power
// of two, and to 64 KiB (so powers of two are classes of their own).
size_t SizeClass(size_t bytes) {
  size_t pow2 = 1;
  while (pow2 * 2 <= bytes) pow2 *= 2;
  const size_t step = std::max(kGranule, pow2 / 8);
  return (bytes + step - 1) / step * step;
}

struct Block {
  void* base;
  size_t size;
};
using Lru = std::list<Block>;  // kept blocks, most recently released first

struct Cache {
  std::mutex mu;
  CpuCacheOptions options;
  Lru lru;
  std::unordered_map<size_t, std::vector<Lru::iterator>> by_class;  // newest last
  std::unordered_map<void*, size_t> sizes;  // every mapping of ours -> its size
  CpuCacheStats stats;

  // Removes a kept block from the bookkeeping (not the mapping itself).
  void Forget(Lru::iterator it) {
    auto& list = by_class[it->size];
    list.erase(std::find(list.begin(), list.end(), it));
    stats.cached_bytes -= it->size;
    lru.erase(it);
  }
};

Cache& TheCache() {
  static Cache* cache = new Cache();  // never destroyed: deleters may run at exit
  return *cache;
}

void Unmap(const std::vector<Block>& blocks) {
  for (const Block& b : blocks) munmap(b.base, b.size);
}

// The one deleter (LibTorch's raw_allocate/raw_deallocate, used by oneDNN,
// need a single one): mappings of the cache are known by address, anything
// else came from c10::alloc_cpu.
void Free(void* base) {
  if (base == nullptr) return;
  Cache& c = TheCache();
  std::vector<Block> unmap;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.sizes.find(base);
    if (it == c.sizes.end()) {
      c10::free_cpu(base);
      return;
    }
    const size_t size = it->second;
    c.stats.live_bytes -= size;
    if (size > c.options.max_cached_bytes) {
      c.sizes.erase(it);
      unmap.push_back({base, size});
    } else {
      // Make room under the cap by dropping the least recently kept.
      while (c.stats.cached_bytes + size > c.options.max_cached_bytes) {
        auto oldest = std::prev(c.lru.end());
        unmap.push_back(*oldest);
        c.sizes.erase(oldest->base);
        c.Forget(oldest);
      }
      c.lru.push_front({base, size});
      c.by_class[size].push_back(c.lru.begin());
      c.stats.cached_bytes += size;
    }
  }
  Unmap(unmap);
}

void* MapOrThrow(size_t size) {
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    ReleaseCachedCpuMemory();  // give the kept blocks back and try once more
    base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw std::bad_alloc();
  }
  if (size >= kHugePage) madvise(base, size, MADV_HUGEPAGE);
  return base;
}

// LibTorch changed c10::Allocator in 2.3: allocate() lost its const and
// copy_data() became pure virtual. Both spellings are declared without
// `override`, so each LibTorch finds the one it asks for and the other is a
// plain overload.
class CachingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) { return Allocate(n); }
  c10::DataPtr allocate(size_t n) const { return Allocate(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const {
    if (count > 0) std::memcpy(dest, src, count);
  }
  c10::DeleterFnPtr raw_deleter() const override { return &Free; }

 private:
  c10::DataPtr Allocate(size_t n) const {
    Cache& c = TheCache();
    const c10::Device cpu(c10::DeviceType::CPU);
    const size_t size = SizeClass(n);
    void* base = nullptr;  // a kept block of the class, when there is one
    bool large;
    std::vector<Block> unmap;
    {
      std::lock_guard<std::mutex> lock(c.mu);
      large = n >= c.options.min_cached_bytes;
      if (large) {
        auto cls = c.by_class.find(size);
        if (cls != c.by_class.end() && !cls->second.empty()) {
          auto it = cls->second.back();
          base = it->base;
          c.Forget(it);
          ++c.stats.hits;
        } else {
          ++c.stats.misses;
          // Hand kept memory of other classes back before mapping more, so
          // live + kept only grows when live memory itself does.
          size_t freed = 0;
          while (freed < size && !c.lru.empty()) {
            auto oldest = std::prev(c.lru.end());
            freed += oldest->size;
            unmap.push_back(*oldest);
            c.sizes.erase(oldest->base);
            c.Forget(oldest);
          }
        }
        c.stats.live_bytes += size;
        c.stats.peak_live_bytes = std::max(c.stats.peak_live_bytes, c.stats.live_bytes);
      }
    }
    if (!large) {
      void* data = c10::alloc_cpu(n);
      return {data, data, &Free, cpu};
    }
    Unmap(unmap);
    if (base == nullptr) {
      try {
        base = MapOrThrow(size);
      } catch (...) {
        std::lock_guard<std::mutex> lock(c.mu);
        c.stats.live_bytes -= size;
        throw;
      }
      std::lock_guard<std::mutex> lock(c.mu);
      c.sizes[base] = size;
    }
    return {base, base, &Free, cpu};
  }
};

}  // namespace

CpuCacheOptions CpuCacheOptionsFromEnv() {
  CpuCacheOptions options;
  if (const char* env = std::getenv("RESTYLE_CPU_CACHE_MB")) {
    char* end = nullptr;
    const long long mb = std::strtoll(env, &end, 10);
    if (end != env && *end == '\0' && mb >= 0) {
      options.max_cached_bytes = static_cast<size_t>(mb) << 20;
    }
  }
  return options;
}

bool InstallCachingCpuAllocator(const CpuCacheOptions& options) {
  Cache& c = TheCache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (!c.stats.installed && options.max_cached_bytes == 0) return false;
  c.options = options;
  if (!c.stats.installed) {
    static CachingCpuAllocator* allocator = new CachingCpuAllocator();
    // Priority above the default's so LibTorch keeps ours.
    c10::SetCPUAllocator(allocator, /*priority=*/1);
    c.stats.installed = true;
  }
  return true;
}

CpuCacheStats GetCpuCacheStats() {
  Cache& c = TheCache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

void ReleaseCachedCpuMemory() {
  Cache& c = TheCache();
  std::vector<Block> blocks;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    blocks.assign(c.lru.begin(), c.lru.end());
    for (const Block& b : blocks) c.sizes.erase(b.base);
    c.lru.clear();
    c.by_class.clear();
    c.stats.cached_bytes = 0;
  }
  Unmap(blocks);
}

}  // namespace restyle::engine
