#include "worker/engine/common/threads.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#include <string>
#include <thread>

namespace restyle::engine {

int DefaultThreadCount() {
  if (const char* env = std::getenv("RESTYLE_THREADS")) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0 && n < 4096) return static_cast<int>(n);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

int SetThreadCount(int threads) {
  if (threads <= 0) threads = DefaultThreadCount();
  at::set_num_threads(threads);
  return at::get_num_threads();
}

}  // namespace restyle::engine
