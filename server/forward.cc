#include "server/forward.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/channel.h"
#include "common/grpc_status.h"
#include "common/status.h"

namespace restyle::server {
namespace {

// Images relayed ahead of the client at most (as the worker's relay).
constexpr size_t kMaxAhead = 4;

// One forwarded call: reads the other front's stream into the client's.
class ForwardedGenerate : public grpc::ClientReadReactor<v1::GenerateResponse>,
                          public std::enable_shared_from_this<ForwardedGenerate> {
 public:
  ForwardedGenerate(std::shared_ptr<ServerStream<v1::GenerateResponse>> stream,
                    const v1::GenerateRequest& request)
      : stream_(std::move(stream)), request_(request) {}

  void Start(v1::RestyleService::Stub* stub, const std::string& front_id,
             const std::string& authorization, absl::Time deadline) {
    self_ = shared_from_this();
    if (deadline != absl::InfiniteFuture()) context_.set_deadline(absl::ToChronoTime(deadline));
    if (!authorization.empty()) context_.AddMetadata("authorization", authorization);
    context_.AddMetadata(kForwardedHeader, front_id);
    std::weak_ptr<ForwardedGenerate> weak = weak_from_this();
    stream_->OnWritten([weak](size_t queued) {
      if (auto self = weak.lock(); self && queued < kMaxAhead) self->Read();
    });
    stream_->OnCancel([weak] {
      if (auto self = weak.lock()) self->context_.TryCancel();
    });
    stub->async()->Generate(&context_, &request_, this);
    Read();
    StartCall();
  }

  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!ok) ended_ = true;
    }
    if (!ok) return;  // OnDone has the status
    if (!stream_->Write(std::move(message_))) {
      context_.TryCancel();
      return;
    }
    if (stream_->queued() < kMaxAhead) Read();
  }

  void OnDone(const grpc::Status& status) override {
    stream_->Finish(FromGrpcStatus(status));
    std::shared_ptr<ForwardedGenerate> self;
    {
      absl::MutexLock lock(&mu_);
      ended_ = true;
      self.swap(self_);  // the last reference, unless a callback holds one
    }
  }

 private:
  // Starts the next read unless one is running or the call ended.
  void Read() {
    {
      absl::MutexLock lock(&mu_);
      if (ended_ || reading_) return;
      reading_ = true;
    }
    StartRead(&message_);
  }

  std::shared_ptr<ServerStream<v1::GenerateResponse>> stream_;
  const v1::GenerateRequest request_;
  grpc::ClientContext context_;
  v1::GenerateResponse message_;
  absl::Mutex mu_;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<ForwardedGenerate> self_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

bool Forwarder::Forwarded(const grpc::CallbackServerContext& context) {
  return context.client_metadata().count(kForwardedHeader) > 0;
}

absl::StatusOr<v1::RestyleService::Stub*> Forwarder::StubFor(const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto it = stubs_.find(address);
  if (it == stubs_.end()) {
    RESTYLE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds,
                             ChannelCredentials(tls_ca_file_));
    auto channel = grpc::CreateCustomChannel(address, creds,
                                             ChannelArguments(absl::Seconds(20), 64 << 20));
    it = stubs_.emplace(address, v1::RestyleService::NewStub(channel)).first;
  }
  return it->second.get();
}

void Forwarder::Generate(const std::string& address, const v1::GenerateRequest& request,
                         const std::string& authorization, absl::Time deadline,
                         std::shared_ptr<ServerStream<v1::GenerateResponse>> stream) {
  absl::StatusOr<v1::RestyleService::Stub*> stub = StubFor(address);
  if (!stub.ok()) {
    stream->Finish(stub.status());
    return;
  }
  spdlog::debug("Generate {} forwarded to the front at {}", request.generator(), address);
  std::make_shared<ForwardedGenerate>(std::move(stream), request)
      ->Start(*stub, front_id_, authorization, deadline);
}

}  // namespace restyle::server
