// Bearer-token authentication of the API and worker ports: a call must send
// "authorization: Bearer <token>" with one of the tokens of the port's file
// (one per line; blank lines and lines starting with '#' are ignored). The
// API port takes the clients' tokens (restyled --tokens-file), the worker
// port the workers' (--worker-tokens-file): a client's token on the worker
// port is refused with PERMISSION_DENIED, so holding the API cannot make
// anyone a worker. Tokens are compared in constant time and never logged.
// Without a tokens file every call is let in. The health port never asks.
//
// Thread-safety: immutable after Create and SetOtherPort; Check is
// thread-safe.
#ifndef RESTYLE_SERVER_AUTH_H_
#define RESTYLE_SERVER_AUTH_H_

#include <grpcpp/server_context.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace restyle::server {

class Authenticator {
 public:
  // "" lets every call in. NOT_FOUND / INVALID_ARGUMENT for a missing or
  // empty file. `port` names the port in messages ("api", "worker").
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(const std::string& tokens_file,
                                                               std::string port);

  // The tokens of another port (e.g. the clients' for the worker port): one
  // of them here is PERMISSION_DENIED (reason TOKEN_OF_OTHER_PORT), not a
  // mere INVALID_TOKEN, so an operator sees which token went where. `other`
  // must outlive this. INVALID_ARGUMENT when the two share a token.
  absl::Status SetOtherPort(const Authenticator* other);

  // UNAUTHENTICATED (reason MISSING_TOKEN or INVALID_TOKEN) unless the call
  // carries a valid token; PERMISSION_DENIED (TOKEN_OF_OTHER_PORT) for a
  // token of the other port.
  absl::Status Check(const grpc::ServerContextBase& context) const;
  bool enabled() const { return !tokens_.empty(); }

 private:
  Authenticator(std::vector<std::string> tokens, std::string port)
      : tokens_(std::move(tokens)), port_(std::move(port)) {}
  // Whether the digest `given` is one of this port's tokens (constant time).
  bool Holds(const std::string& given) const;

  std::vector<std::string> tokens_;  // sha256 hex digests
  const std::string port_;
  const Authenticator* other_ = nullptr;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_AUTH_H_
