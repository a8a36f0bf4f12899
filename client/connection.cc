#include "client/connection.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/grpc_status.h"
#include "common/status.h"

namespace restyle::client {

absl::StatusOr<std::unique_ptr<Connection>> Connection::Create(const ConnectionOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_file.empty()) {
    RESTYLE_ASSIGN_OR_RETURN(std::string ca, ReadFileToString(options.tls_ca_file));
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ca;
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  // restyled accepts pings every 10 s or more, with or without calls.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetMaxReceiveMessageSize(64 << 20);  // one image a message, up to 64 MiB
  args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, "restyle-cli");
  return std::unique_ptr<Connection>(
      new Connection(options, grpc::CreateCustomChannel(options.server, creds, args)));
}

std::unique_ptr<grpc::ClientContext> Connection::Context(absl::Duration timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  const absl::Duration t = timeout > absl::ZeroDuration() ? timeout : options_.timeout;
  context->set_deadline(absl::ToChronoTime(absl::Now() + t));
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  return context;
}

absl::Status Connection::Call(const std::function<grpc::Status(grpc::ClientContext*)>& call,
                              absl::Duration timeout) const {
  std::unique_ptr<grpc::ClientContext> context = Context(timeout);
  return FromGrpcStatus(call(context.get()));
}

bool IsUnreachable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable &&
         (ErrorReason(status).empty() || ErrorReason(status) == "UNAVAILABLE");
}

std::string Connection::Explain(const absl::Status& status) const {
  const std::string message(status.message());
  if (IsUnreachable(status)) {
    std::string why = "it did not answer";
    if (absl::StrContains(message, "Connection refused")) why = "connection refused";
    if (absl::StrContains(message, "DNS") || absl::StrContains(message, "resolve")) {
      why = "the name does not resolve";
    }
    if (absl::StrContains(message, "ssl") || absl::StrContains(message, "SSL") ||
        absl::StrContains(message, "handshake")) {
      why = "the TLS handshake failed (--tls-ca?)";
    }
    return absl::StrCat("cannot reach the Restyle server at ", options_.server, " (", why,
                        "): is restyled running there? (--server, $RESTYLE_SERVER)");
  }
  if (status.code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::StrCat("the Restyle server at ", options_.server, " did not answer within ",
                        absl::FormatDuration(options_.timeout), " (--timeout)");
  }
  std::string code = absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
  for (char& c : code) c = c == '_' ? ' ' : c;
  return absl::StrCat(code, ": ", message);
}

}  // namespace restyle::client
