// gRPC callback reactors the front's handlers share.
//
// ServerStream<Msg>: a server-streaming call fed from any thread. Producers
// Write() messages into a bounded queue; the reactor writes them one at a
// time (gRPC allows one write in flight) and, after Finish(), sends the
// status once the queue is empty. A producer never blocks: a full queue
// (a client reading too slowly) ends the stream with RESOURCE_EXHAUSTED and
// the overflow message the owner chose, which keeps one slow client from
// holding memory or slowing anyone else.
//
// LongUnary: a unary call answered later (long polls, WaitJob) that learns
// when the client cancels.
//
// Both outlive their reactor safely: handlers keep the shared_ptr, the
// reactor drops its reference when gRPC is done with it (OnDone), and later
// calls find the call closed and do nothing. Both turn the final
// absl::Status into the call's grpc::Status (ToGrpcStatus, with its
// trailers) under their lock, while the call's context is still alive.
//
// Thread-safety: every public method is thread-safe.
#ifndef RESTYLE_SERVER_REACTORS_H_
#define RESTYLE_SERVER_REACTORS_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_callback.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"

namespace restyle::server {

template <typename Msg>
class ServerStream : public std::enable_shared_from_this<ServerStream<Msg>> {
 public:
  // At most `max_queued` messages wait; one more ends the stream with
  // `overflow` (RESOURCE_EXHAUSTED and what to do).
  static std::shared_ptr<ServerStream> Create(grpc::CallbackServerContext* context,
                                              size_t max_queued, absl::Status overflow) {
    std::shared_ptr<ServerStream> s(new ServerStream(context, max_queued, std::move(overflow)));
    s->reactor_ = new Reactor(s);
    return s;
  }

  // What the handler returns to gRPC. Call once.
  grpc::ServerWriteReactor<Msg>* reactor() { return reactor_; }

  // Queues `msg`; false when the call is finishing, done or just overflowed.
  bool Write(Msg msg) {
    bool start = false;
    {
      absl::MutexLock lock(&mu_);
      if (finish_ || done_) return false;
      if (queue_.size() >= max_queued_) {
        queue_.clear();
        finish_ = ToGrpcStatus(overflow_, context_);
        start = !writing_;
      } else {
        queue_.push_back(std::move(msg));
        start = !writing_;
      }
      if (start) writing_ = true;
    }
    if (start) Pump();
    return true;
  }

  // Sends `status` after the queued messages. Only the first Finish counts.
  void Finish(const absl::Status& status) {
    bool start = false;
    {
      absl::MutexLock lock(&mu_);
      if (finish_ || done_) return;
      finish_ = ToGrpcStatus(status, context_);
      start = !writing_;
      if (start) writing_ = true;
    }
    if (start) Pump();
  }

  // Runs (once, on a gRPC thread) when the client cancels or the call breaks.
  void OnCancel(std::function<void()> fn) {
    absl::MutexLock lock(&mu_);
    on_cancel_ = std::move(fn);
  }
  // Runs after each message is written, with the number still queued (for
  // producers that read more only when the client has taken what was sent).
  void OnWritten(std::function<void(size_t queued)> fn) {
    absl::MutexLock lock(&mu_);
    on_written_ = std::move(fn);
  }

  // Messages waiting to be written.
  size_t queued() const {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

  // True once Finish was asked or the call ended.
  bool closed() const {
    absl::MutexLock lock(&mu_);
    return finish_.has_value() || done_;
  }

 private:
  class Reactor : public grpc::ServerWriteReactor<Msg> {
   public:
    explicit Reactor(std::shared_ptr<ServerStream> stream) : stream_(std::move(stream)) {}
    void OnWriteDone(bool ok) override { stream_->WriteDone(ok); }
    void OnCancel() override { stream_->Cancelled(); }
    void OnDone() override {
      stream_->Done();
      delete this;
    }

   private:
    std::shared_ptr<ServerStream> stream_;  // keeps the state alive until OnDone
  };

  ServerStream(grpc::CallbackServerContext* context, size_t max_queued, absl::Status overflow)
      : context_(context), max_queued_(max_queued), overflow_(std::move(overflow)) {}

  // With writing_ set by the caller: starts the next write, or the finish, or
  // clears writing_ when there is nothing to do.
  void Pump() {
    Reactor* reactor = nullptr;
    const Msg* next = nullptr;
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      reactor = done_ ? nullptr : reactor_;
      if (reactor == nullptr || finished_) {
        writing_ = false;
        return;
      }
      if (!queue_.empty() && !(finish_ && broken_)) {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        next = &current_;
      } else if (finish_) {
        finish = finish_;
        finished_ = true;
      } else {
        writing_ = false;
        return;
      }
    }
    if (next != nullptr) {
      reactor->StartWrite(next);
    } else {
      reactor->Finish(*finish);
    }
  }

  void WriteDone(bool ok) {
    std::function<void(size_t)> on_written;
    size_t queued = 0;
    {
      absl::MutexLock lock(&mu_);
      if (!ok) {
        broken_ = true;
        queue_.clear();
        if (!finish_) finish_ = grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke");
        context_ = nullptr;
      }
      on_written = on_written_;
      queued = queue_.size();
    }
    Pump();  // writing_ is still set
    if (ok && on_written) on_written(queued);
  }

  void Cancelled() {
    std::function<void()> on_cancel;
    {
      absl::MutexLock lock(&mu_);
      on_cancel = std::move(on_cancel_);
    }
    if (on_cancel) on_cancel();
    Finish(absl::CancelledError("cancelled by the client"));
  }

  void Done() {
    absl::MutexLock lock(&mu_);
    done_ = true;
    reactor_ = nullptr;
    context_ = nullptr;
    queue_.clear();
    on_cancel_ = nullptr;
    on_written_ = nullptr;
  }

  mutable absl::Mutex mu_;
  grpc::CallbackServerContext* context_ ABSL_GUARDED_BY(mu_);
  const size_t max_queued_;
  const absl::Status overflow_;
  Reactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<Msg> queue_ ABSL_GUARDED_BY(mu_);
  Msg current_ ABSL_GUARDED_BY(mu_);  // the message being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // reactor->Finish called
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> finish_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_cancel_ ABSL_GUARDED_BY(mu_);
  std::function<void(size_t)> on_written_ ABSL_GUARDED_BY(mu_);
};

// A unary call finished later, once. The response message is gRPC's (the
// handler's `response` argument): fill it inside Finish's `fill`.
class LongUnary : public std::enable_shared_from_this<LongUnary> {
 public:
  static std::shared_ptr<LongUnary> Create(grpc::CallbackServerContext* context) {
    std::shared_ptr<LongUnary> call(new LongUnary(context));
    call->reactor_ = new Reactor(call);
    return call;
  }
  grpc::ServerUnaryReactor* reactor() { return reactor_; }

  // Runs `fill` (to set the response) and finishes with the status it
  // returns, unless the call was finished before. Returns whether this call
  // finished it (false: `fill` did not run).
  bool Finish(const std::function<absl::Status()>& fill) {
    Reactor* reactor;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || reactor_ == nullptr) return false;
      finished_ = true;
      reactor = reactor_;
      status = ToGrpcStatus(fill(), context_);
    }
    reactor->Finish(status);
    return true;
  }
  void OnCancel(std::function<void()> fn) {
    absl::MutexLock lock(&mu_);
    on_cancel_ = std::move(fn);
  }
  bool finished() const {
    absl::MutexLock lock(&mu_);
    return finished_;
  }

 private:
  class Reactor : public grpc::ServerUnaryReactor {
   public:
    explicit Reactor(std::shared_ptr<LongUnary> call) : call_(std::move(call)) {}
    void OnCancel() override { call_->Cancelled(); }
    void OnDone() override {
      call_->Done();
      delete this;
    }

   private:
    std::shared_ptr<LongUnary> call_;
  };

  explicit LongUnary(grpc::CallbackServerContext* context) : context_(context) {}
  void Cancelled() {
    std::function<void()> fn;
    {
      absl::MutexLock lock(&mu_);
      fn = std::move(on_cancel_);
    }
    if (fn) fn();
    Finish([] { return absl::CancelledError("cancelled by the client"); });
  }
  void Done() {
    absl::MutexLock lock(&mu_);
    reactor_ = nullptr;
    finished_ = true;
    on_cancel_ = nullptr;
  }

  mutable absl::Mutex mu_;
  grpc::CallbackServerContext* const context_;
  Reactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_cancel_ ABSL_GUARDED_BY(mu_);
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_REACTORS_H_
