// A caching CPU allocator for LibTorch tensors.
//
// LibTorch's default CPU allocator hands every request to malloc. Tensors of
// a StyleGAN2 forward are tens to hundreds of MB, above glibc's mmap
// threshold, so each one is a fresh mmap whose pages the kernel faults in and
// zeroes on first touch, and a munmap on release: on the 2-core machines we
// measured, a third of a 256x256 batch-4 forward went to the kernel (sys
// time) instead of arithmetic. A generator step allocates the same sizes over
// and over, so keeping released large blocks and handing them out again
// removes that cost.
//
// Policy:
//  * requests below `min_cached_bytes` go to LibTorch's own CPU allocation;
//  * larger ones are rounded up to a size class (at most 1/8 larger than the
//    request, 64 KiB granules), mapped with mmap, advised to use transparent
//    huge pages from 2 MiB, and on release kept for reuse by a later request
//    of the same class, up to `max_cached_bytes` kept in total (least
//    recently kept blocks are unmapped first);
//  * a request that finds no kept block of its class first unmaps kept
//    blocks of other classes (oldest first) worth at least its size, so
//    mapped memory (in use + kept) only grows when memory in use does;
//  * ReleaseCachedCpuMemory() unmaps every kept block (between jobs).
//
// Peak resident memory is therefore the tensors' own peak, plus the size-class
// rounding (under 1/8), plus at most one block being replaced.
// Thread-safe. Installing is process-wide and cannot be undone (tensors keep
// a pointer to the deleter); tensors allocated before installation are freed
// by their own allocator as usual.
#ifndef RESTYLE_WORKER_ENGINE_COMMON_CPU_ALLOCATOR_H_
#define RESTYLE_WORKER_ENGINE_COMMON_CPU_ALLOCATOR_H_

#include <cstddef>
#include <cstdint>

namespace restyle::engine {

struct CpuCacheOptions {
  size_t min_cached_bytes = size_t{1} << 20;  // 1 MiB
  size_t max_cached_bytes = size_t{1} << 30;  // 1 GiB
};

// The options from the environment: $RESTYLE_CPU_CACHE_MB overrides
// max_cached_bytes (0 disables caching: InstallCachingCpuAllocator then
// installs nothing).
CpuCacheOptions CpuCacheOptionsFromEnv();

// Makes the caching allocator LibTorch's CPU allocator. Returns false (and
// changes nothing) when max_cached_bytes is 0. Calling it again only updates
// the options.
bool InstallCachingCpuAllocator(const CpuCacheOptions& options = CpuCacheOptionsFromEnv());

struct CpuCacheStats {
  bool installed = false;
  uint64_t hits = 0;          // large requests served from the cache
  uint64_t misses = 0;        // large requests that mapped new memory
  size_t cached_bytes = 0;    // kept for reuse now
  size_t live_bytes = 0;      // large blocks handed out and not yet released
  size_t peak_live_bytes = 0;
};
CpuCacheStats GetCpuCacheStats();

// Unmaps every kept block. Blocks in use are unaffected.
void ReleaseCachedCpuMemory();

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_COMMON_CPU_ALLOCATOR_H_
