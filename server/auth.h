// Bearer-token authentication of the API and worker ports: a call must send
// "authorization: Bearer <token>" with one of the tokens of a file (one per
// line; blank lines and lines starting with '#' are ignored). Tokens are
// compared in constant time and never logged. Without a tokens file every
// call is let in. The health port never asks.
//
// Thread-safety: immutable after Create; Check is thread-safe.
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
  // empty file.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(const std::string& tokens_file);

  // UNAUTHENTICATED (reason MISSING_TOKEN or INVALID_TOKEN) unless the call
  // carries a valid token.
  absl::Status Check(const grpc::ServerContextBase& context) const;
  bool enabled() const { return !tokens_.empty(); }

 private:
  explicit Authenticator(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}
  std::vector<std::string> tokens_;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_AUTH_H_
