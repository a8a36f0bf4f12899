#include "client/connection.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/exit_codes.h"
#include "common/channel.h"
#include "common/files.h"
#include "common/grpc_status.h"
#include "common/status.h"

namespace restyle::client {

absl::StatusOr<std::unique_ptr<Connection>> Connection::Create(const ConnectionOptions& options) {
  RESTYLE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds,
                           ChannelCredentials(options.tls_ca_file));
  // One image a message, up to 64 MiB.
  grpc::ChannelArguments args = ChannelArguments(absl::Seconds(30), 64 << 20);
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

bool IsWrongService(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnimplemented && ErrorReason(status).empty();
}

int ExitCodeOfFailure(const absl::Status& status) {
  if (IsUnreachable(status) || IsWrongService(status) ||
      status.code() == absl::StatusCode::kDeadlineExceeded) {
    return kExitUnreachable;
  }
  return status.code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitError;
}

std::string Connection::Explain(const absl::Status& status, absl::string_view service) const {
  const std::string message(status.message());
  if (IsWrongService(status)) {
    std::string what = absl::StrCat("the service ", service);
    std::string hint;
    if (service == v1::RestyleService::service_full_name()) {
      what = absl::StrCat("the Restyle API (", service, ")");
      hint = ": is it the worker or health port? The API port is 8700 by default (--server, "
             "$RESTYLE_SERVER)";
    } else if (service == grpc::health::v1::Health::service_full_name()) {
      what = absl::StrCat("gRPC health checks (", service, ")");
      hint = ": the health ports are restyled's 8702 and restyle-worker's 8711 by default";
    }
    return absl::StrCat(options_.server, " does not serve ", what, hint);
  }
  if (IsUnreachable(status) && absl::StrContains(message, "http1.x")) {
    return absl::StrCat(options_.server, " answers HTTP/1.x, not gRPC: is it a metrics port? The API port is "
                        "8700 by default (--server, $RESTYLE_SERVER)");
  }
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
