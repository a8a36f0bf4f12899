// Generate calls a front cannot serve itself (no worker of its own has the
// generator's source) but another front on the same store can: the call is
// made again to that front, with the client's token and deadline, and its
// images and status are relayed to the client, read only as fast as the
// client takes them. A forwarded call carries `kForwardedHeader`, and a
// front never forwards such a call again (no loops).
//
// The other front is dialled at the address it advertises (restyled
// --advertise-address), with TLS when this front serves TLS, trusting the
// bundle in its --tls-cert (so the certificate must hold its CA, and be
// valid for the advertised name).
//
// Thread-safety: thread-safe.
#ifndef RESTYLE_SERVER_FORWARD_H_
#define RESTYLE_SERVER_FORWARD_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "restyle/v1/restyle_service.grpc.pb.h"
#include "server/reactors.h"

namespace restyle::server {

// Metadata naming the front that forwarded a call.
inline constexpr char kForwardedHeader[] = "restyle-forwarded-by";

class Forwarder {
 public:
  // `tls_ca_file`: "" for plaintext.
  Forwarder(std::string front_id, std::string tls_ca_file)
      : front_id_(std::move(front_id)), tls_ca_file_(std::move(tls_ca_file)) {}

  // Whether the call came from another front.
  static bool Forwarded(const grpc::CallbackServerContext& context);

  // Makes `request` to the front at `address` with `authorization` (the
  // client's "Bearer ..." or "") until `deadline`, and relays what it
  // answers to `stream`. The client leaving cancels the forwarded call.
  void Generate(const std::string& address, const v1::GenerateRequest& request,
                const std::string& authorization, absl::Time deadline,
                std::shared_ptr<ServerStream<v1::GenerateResponse>> stream);

 private:
  absl::StatusOr<v1::RestyleService::Stub*> StubFor(const std::string& address);

  const std::string front_id_;
  const std::string tls_ca_file_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<v1::RestyleService::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_FORWARD_H_
