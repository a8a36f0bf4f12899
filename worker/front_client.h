// The worker's connection to the front's worker port: one channel (keepalive
// pings, fast reconnects after a front restart; TLS, with a client
// certificate when given), the bearer token, the session secret and a
// deadline on every call, and the artifact transfers in both directions
// (chunked, sha256 checked on both ends, downloads written atomically).
//
// Thread-safety: thread-safe (gRPC stubs are).
#ifndef RESTYLE_WORKER_FRONT_CLIENT_H_
#define RESTYLE_WORKER_FRONT_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "restyle/worker/v1/worker_service.grpc.pb.h"

namespace restyle::worker {

namespace wv1 = restyle::worker::v1;

struct ConnectionOptions {
  // The front's worker port, "host:port".
  std::string address;
  // PEM CA bundle: TLS to the front ("" plaintext).
  std::string tls_ca_file;
  // PEM client certificate and its key, for a front that asks workers for
  // one (restyled --worker-client-ca); both or neither.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Sent as "authorization: Bearer <token>" ("" none).
  std::string token;
};

class FrontClient {
 public:
  static absl::StatusOr<std::unique_ptr<FrontClient>> Create(const ConnectionOptions& options);

  // A context with the token, the session and `timeout` as deadline.
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) const;
  // The session secret RegisterWorker answered: sent with every call from
  // now on (metadata "restyle-worker-session").
  void SetSession(std::string session);
  wv1::WorkerService::Stub& stub() { return *stub_; }

  // A unary call with `timeout`: `call(context)` runs it; the status comes
  // back with its ErrorDetail (common/grpc_status.h).
  absl::Status Call(absl::Duration timeout,
                    const std::function<grpc::Status(grpc::ClientContext*)>& call) const;

  // Uploads the file at `path` as `header.file` of a leased job (size and
  // sha256 filled in here).
  absl::StatusOr<restyle::v1::Artifact> Upload(wv1::UploadArtifactRequest::Header header,
                                               const std::string& path);
  // Downloads artifact `artifact.name()` to `path` (temporary name, then
  // rename), checking size and sha256 against `artifact` (DATA_LOSS, reason
  // DIGEST_MISMATCH, when they differ).
  absl::Status Download(const std::string& worker, const restyle::v1::Artifact& artifact,
                        const std::string& path);

 private:
  FrontClient(std::shared_ptr<grpc::Channel> channel, std::string token)
      : channel_(std::move(channel)),
        stub_(wv1::WorkerService::NewStub(channel_)),
        token_(std::move(token)) {}

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<wv1::WorkerService::Stub> stub_;
  const std::string token_;
  mutable absl::Mutex mu_;
  std::string session_ ABSL_GUARDED_BY(mu_);
};

}  // namespace restyle::worker

#endif  // RESTYLE_WORKER_FRONT_CLIENT_H_
