#include "worker/health_server.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"

namespace restyle::worker {

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(
    const std::string& address) {
  grpc::EnableDefaultHealthCheckService(true);
  auto health = std::unique_ptr<HealthServer>(new HealthServer());
  grpc::ServerBuilder builder;
  // gRPC adds its health service only to a server with a service of its
  // own: this one answers every other method UNIMPLEMENTED.
  builder.RegisterCallbackGenericService(&health->unimplemented_);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(),
                           &health->port_);
  health->server_ = builder.BuildAndStart();
  if (health->server_ == nullptr || health->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address,
                     " for health checks (in use? --health-address)"));
  }
  grpc::HealthCheckServiceInterface* service =
      health->server_->GetHealthCheckService();
  service->SetServingStatus(kReady, false);
  service->SetServingStatus(kModels, false);
  service->SetServingStatus(kLiveness, true);
  return health;
}

HealthServer::~HealthServer() {
  if (server_ != nullptr)
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(1));
}

void HealthServer::Set(const std::string& service, bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(service, serving);
}

}  // namespace restyle::worker
