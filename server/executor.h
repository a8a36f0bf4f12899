// A fixed pool of threads running closures in FIFO order: where the front
// does what blocks (store transactions, file I/O), so that gRPC's callback
// threads never wait on a disk.
//
// Thread-safety: Schedule may be called from any thread. Stop (and the
// destructor) runs what is queued, then joins; closures scheduled after Stop
// are dropped.
#ifndef RESTYLE_SERVER_EXECUTOR_H_
#define RESTYLE_SERVER_EXECUTOR_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace restyle::server {

class Executor {
 public:
  Executor(int threads, std::string name);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  void Schedule(std::function<void()> fn);
  // Runs what is queued, then joins the threads. Idempotent.
  void Stop();
  // Closures waiting to run.
  size_t pending() const;

 private:
  void Loop();

  const std::string name_;
  mutable absl::Mutex mu_;
  // An empty function is the sentinel that ends one thread.
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_EXECUTOR_H_
