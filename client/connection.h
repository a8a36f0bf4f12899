// The CLI's connection to restyled: the server address (--server or
// $RESTYLE_SERVER), TLS (--tls-ca) and a bearer token (--token-file or
// $RESTYLE_TOKEN), keepalive pings the server accepts (every 30 s, idle or
// not), a deadline on every call, and failures said in one line a person can
// act on (an unreachable server is "cannot reach ...", not a gRPC dump).
//
// Thread-safety: thread-safe (gRPC stubs are).
#ifndef RESTYLE_CLIENT_CONNECTION_H_
#define RESTYLE_CLIENT_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "restyle/v1/restyle_service.grpc.pb.h"

namespace restyle::client {

struct ConnectionOptions {
  // host:port of restyled's API port.
  std::string server = "127.0.0.1:8700";
  // PEM CA bundle: TLS ("" plaintext).
  std::string tls_ca_file;
  // Sent as "authorization: Bearer <token>" ("" none).
  std::string token;
  // The deadline of a unary call.
  absl::Duration timeout = absl::Seconds(30);
};

class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Create(const ConnectionOptions& options);

  v1::RestyleService::Stub& api() { return *api_; }
  grpc::health::v1::Health::Stub& health() { return *health_; }
  const ConnectionOptions& options() const { return options_; }

  // A context with the token and a deadline (`timeout`, or the options').
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout = absl::ZeroDuration()) const;

  // A unary call: the status comes back with its ErrorDetail.
  absl::Status Call(const std::function<grpc::Status(grpc::ClientContext*)>& call,
                    absl::Duration timeout = absl::ZeroDuration()) const;

  // One line about a failed call to `service`, for people: "cannot reach
  // the Restyle server at HOST:PORT (connection refused): is restyled
  // running there? (--server, $RESTYLE_SERVER)", "HOST:PORT does not serve
  // the Restyle API (restyle.v1.RestyleService): is it the worker or health
  // port? ...", "HOST:PORT answers HTTP/1.x, not gRPC: is it a metrics
  // port? ...", or "not found: no job jobs/x".
  std::string Explain(const absl::Status& status,
                      absl::string_view service = v1::RestyleService::service_full_name()) const;

 private:
  Connection(ConnectionOptions options, std::shared_ptr<grpc::Channel> channel)
      : options_(std::move(options)),
        channel_(std::move(channel)),
        api_(v1::RestyleService::NewStub(channel_)),
        health_(grpc::health::v1::Health::NewStub(channel_)) {}

  const ConnectionOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::RestyleService::Stub> api_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// True when `status` says the server could not be reached (or did not
// answer in time).
bool IsUnreachable(const absl::Status& status);

// True when `status` is UNIMPLEMENTED without a Restyle reason: the address
// answers gRPC but does not serve the service called (a worker or health
// port given as the API's, say). Restyle's own UNIMPLEMENTED always carries
// a reason (common/grpc_status.h).
bool IsWrongService(const absl::Status& status);

// The exit code of a failed call (exit_codes.h): kExitUnreachable when the
// server could not be reached, did not answer in time, or does not serve
// the service; kExitUsage for INVALID_ARGUMENT; else kExitError.
int ExitCodeOfFailure(const absl::Status& status);

}  // namespace restyle::client

#endif  // RESTYLE_CLIENT_CONNECTION_H_
