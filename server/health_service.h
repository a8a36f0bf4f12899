// grpc.health.v1 for restyled: Check and Watch over statuses the server sets
// (server.h says which: "" and restyle.v1.RestyleService follow worker
// readiness; restyle.worker.v1.WorkerService is SERVING while the front
// takes workers). Our own implementation rather than gRPC's built-in one,
// whose service has no descriptor for reflection to serve.
//
// One HealthState holds the statuses; each gRPC server gets a HealthService
// on it (a service object registers with one server only).
//
// Thread-safety: thread-safe.
#ifndef RESTYLE_SERVER_HEALTH_SERVICE_H_
#define RESTYLE_SERVER_HEALTH_SERVICE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/reactors.h"

namespace restyle::server {

using HealthStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

class HealthState {
 public:
  void Set(const std::string& service, bool serving);
  // Every known service NOT_SERVING, for good (shutdown).
  void Shutdown();
  // The status of `service`; SERVICE_UNKNOWN for one never set.
  HealthStatus Get(const std::string& service) const;

  // `stream` receives the status of `service` now and on every change.
  void Watch(const std::string& service,
             std::shared_ptr<ServerStream<grpc::health::v1::HealthCheckResponse>> stream);

 private:
  void NotifyLocked(const std::string& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, HealthStatus> statuses_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::multimap<std::string,
                std::weak_ptr<ServerStream<grpc::health::v1::HealthCheckResponse>>>
      watchers_ ABSL_GUARDED_BY(mu_);
};

class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  explicit HealthService(HealthState* state) : state_(state) {}

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context,
      const grpc::health::v1::HealthCheckRequest* request) override;

 private:
  HealthState* const state_;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_HEALTH_SERVICE_H_
