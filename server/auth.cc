#include "server/auth.h"

#include <openssl/crypto.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/status.h"
#include "common/sha256.h"

namespace restyle::server {

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Create(const std::string& tokens_file,
                                                                     std::string port) {
  if (tokens_file.empty()) return std::unique_ptr<Authenticator>(new Authenticator({}, std::move(port)));
  RESTYLE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(tokens_file));
  std::vector<std::string> tokens;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    // Stored as digests: equal-length values compare in constant time.
    tokens.push_back(Sha256Hex(line));
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(tokens_file, " holds no token"));
  }
  return std::unique_ptr<Authenticator>(new Authenticator(std::move(tokens), std::move(port)));
}

absl::Status Authenticator::SetOtherPort(const Authenticator* other) {
  for (const std::string& token : other->tokens_) {
    if (Holds(token)) {
      return absl::InvalidArgumentError(
          absl::StrCat("a token is accepted on both the ", port_, " and the ", other->port_,
                       " port: give clients and workers tokens of their own"));
    }
  }
  other_ = other;
  return absl::OkStatus();
}

bool Authenticator::Holds(const std::string& given) const {
  bool match = false;
  for (const std::string& token : tokens_) {
    match |= CRYPTO_memcmp(token.data(), given.data(), token.size()) == 0;
  }
  return match;
}

absl::Status Authenticator::Check(const grpc::ServerContextBase& context) const {
  if (tokens_.empty()) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  constexpr absl::string_view kBearer = "Bearer ";
  if (it == metadata.end() || !absl::StartsWith(absl::string_view(it->second.data(), it->second.size()), kBearer)) {
    return ErrorWithReason(absl::StatusCode::kUnauthenticated, "MISSING_TOKEN",
                           "this server needs a token: send \"authorization: Bearer TOKEN\" "
                           "(restyle --token-file, or RESTYLE_TOKEN)");
  }
  const std::string given =
      Sha256Hex(absl::string_view(it->second.data(), it->second.size()).substr(kBearer.size()));
  if (Holds(given)) return absl::OkStatus();
  if (other_ != nullptr && other_->Holds(given)) {
    return ErrorWithReason(absl::StatusCode::kPermissionDenied, "TOKEN_OF_OTHER_PORT",
                           absl::StrCat("this is the ", port_, " port, and the token is one of the ",
                                        other_->port_, " port's: ",
                                        port_ == "worker"
                                            ? "workers need a token of restyled --worker-tokens-file"
                                            : "clients need a token of restyled --tokens-file"));
  }
  return ErrorWithReason(absl::StatusCode::kUnauthenticated, "INVALID_TOKEN",
                         "the token is not one this server accepts");
}

}  // namespace restyle::server
