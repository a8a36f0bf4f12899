// The worker's plaintext gRPC health port, for Kubernetes' native gRPC
// probes (grpc.health.v1, gRPC's own health service):
//   "liveness"  SERVING while the process answers: never tied to the models
//               or the front, so a front restart restarts no worker
//   "models"    SERVING once the models are loaded (the startup probe)
//   ""          SERVING while the front has the worker and it takes work
//               (readiness); NOT_SERVING while it cannot reach the front or
//               drains
//
// Thread-safety: every method may be called from any thread.
#ifndef RESTYLE_WORKER_HEALTH_SERVER_H_
#define RESTYLE_WORKER_HEALTH_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/server.h"


namespace restyle::worker {

class HealthServer {
 public:
  static constexpr const char* kLiveness = "liveness";
  static constexpr const char* kModels = "models";
  static constexpr const char* kReady = "";

  // Listens on `address` ("host:port"; port 0 picks one): "liveness"
  // SERVING, the others NOT_SERVING.
  static absl::StatusOr<std::unique_ptr<HealthServer>> Start(
      const std::string& address);
  ~HealthServer();

  int port() const { return port_; }
  void Set(const std::string& service, bool serving);

 private:
  HealthServer() = default;

  grpc::CallbackGenericService unimplemented_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace restyle::worker

#endif  // RESTYLE_WORKER_HEALTH_SERVER_H_
