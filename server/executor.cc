#include "server/executor.h"

#include <pthread.h>

namespace restyle::server {

Executor::Executor(int threads, std::string name) : name_(std::move(name)) {
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { Loop(); });
    // Shows in top -H and gdb (at most 15 characters).
    pthread_setname_np(threads_.back().native_handle(), name_.substr(0, 15).c_str());
  }
}

Executor::~Executor() { Stop(); }

void Executor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    for (size_t i = 0; i < threads_.size(); ++i) queue_.emplace_back();
  }
  for (std::thread& t : threads_) t.join();
}

void Executor::Schedule(std::function<void()> fn) {
  if (!fn) return;
  absl::MutexLock lock(&mu_);
  if (stopped_) return;
  queue_.push_back(std::move(fn));
}

size_t Executor::pending() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void Executor::Loop() {
  while (true) {
    std::function<void()> fn;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](std::deque<std::function<void()>>* q) { return !q->empty(); }, &queue_));
      fn = std::move(queue_.front());
      queue_.pop_front();
    }
    if (!fn) return;
    fn();
  }
}

}  // namespace restyle::server
