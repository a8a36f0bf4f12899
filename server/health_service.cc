#include "server/health_service.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"

namespace restyle::server {

using grpc::health::v1::HealthCheckResponse;

namespace {
// INVALID_ARGUMENT for a name longer than any service's (an open Watch
// would hold it).
absl::Status CheckServiceName(const std::string& service) {
  constexpr size_t kMaxServiceName = 256;
  if (service.size() <= kMaxServiceName) return absl::OkStatus();
  return InvalidField("service", absl::StrCat("a service name is ", kMaxServiceName, " bytes at most"));
}
}  // namespace

void HealthState::Set(const std::string& service, bool serving) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  const HealthStatus status = serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
  auto it = statuses_.find(service);
  if (it != statuses_.end() && it->second == status) return;
  statuses_[service] = status;
  NotifyLocked(service);
}

void HealthState::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  for (auto& [service, status] : statuses_) {
    status = HealthCheckResponse::NOT_SERVING;
    NotifyLocked(service);
  }
}

HealthStatus HealthState::Get(const std::string& service) const {
  absl::MutexLock lock(&mu_);
  auto it = statuses_.find(service);
  return it == statuses_.end() ? HealthCheckResponse::SERVICE_UNKNOWN : it->second;
}

void HealthState::NotifyLocked(const std::string& service) {
  HealthCheckResponse response;
  response.set_status(statuses_[service]);
  auto [begin, end] = watchers_.equal_range(service);
  for (auto it = begin; it != end;) {
    auto stream = it->second.lock();
    if (stream == nullptr || !stream->Write(response)) {
      it = watchers_.erase(it);
    } else {
      ++it;
    }
  }
}

void HealthState::Watch(const std::string& service,
                        std::shared_ptr<ServerStream<HealthCheckResponse>> stream) {
  absl::MutexLock lock(&mu_);
  auto it = statuses_.find(service);
  HealthCheckResponse response;
  response.set_status(it == statuses_.end() ? HealthCheckResponse::SERVICE_UNKNOWN : it->second);
  stream->Write(response);
  // The services are set before the ports open: an unknown one stays
  // unknown, so its watch is told so and kept open (as the protocol says)
  // without anything kept here for it.
  if (it != statuses_.end()) watchers_.emplace(service, stream);
}

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* context,
                                               const grpc::health::v1::HealthCheckRequest* request,
                                               HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const HealthStatus status = state_->Get(request->service());
  absl::Status result = CheckServiceName(request->service());
  if (result.ok() && status == HealthCheckResponse::SERVICE_UNKNOWN) {
    result = ErrorWithReason(absl::StatusCode::kNotFound, "SERVICE_UNKNOWN",
                             absl::StrCat("no health status for service \"", request->service(),
                                          "\""));
  } else if (result.ok()) {
    response->set_status(status);
  }
  reactor->Finish(ToGrpcStatus(result, context));
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext* context, const grpc::health::v1::HealthCheckRequest* request) {
  auto stream = ServerStream<HealthCheckResponse>::Create(
      context, 16,
      ErrorWithReason(absl::StatusCode::kResourceExhausted, "WATCHER_TOO_SLOW",
                      "the health watcher did not read its updates"));
  if (absl::Status name = CheckServiceName(request->service()); !name.ok()) {
    stream->Finish(name);
  } else {
    state_->Watch(request->service(), stream);
  }
  return stream->reactor();
}

}  // namespace restyle::server
