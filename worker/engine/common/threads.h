// Thread-count control for LibTorch's intra-op pool.
//
// OpenMP starts with one thread on some machines and LibTorch picks its own
// default elsewhere, so every Restyle binary sets the count explicitly.
#ifndef RESTYLE_WORKER_ENGINE_COMMON_THREADS_H_
#define RESTYLE_WORKER_ENGINE_COMMON_THREADS_H_

namespace restyle::engine {

// The thread count to use when the user gave none: $RESTYLE_THREADS when it
// is a positive integer, otherwise the number of online CPUs.
int DefaultThreadCount();

// Sets LibTorch's intra-op thread count (and OpenMP's) to `threads` (> 0;
// values <= 0 mean DefaultThreadCount()). Returns the count in effect.
int SetThreadCount(int threads);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_COMMON_THREADS_H_
