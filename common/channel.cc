#include "common/channel.h"

#include "common/files.h"
#include "common/status.h"

namespace restyle {

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const std::string& tls_ca_file, const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError("a client certificate needs both its file and its key's");
  }
  if (tls_ca_file.empty()) {
    if (!cert_file.empty()) {
      return absl::InvalidArgumentError(
          "a client certificate is for TLS: give the front's CA bundle too (--tls-ca)");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  RESTYLE_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFileToString(tls_ca_file));
  if (!cert_file.empty()) {
    RESTYLE_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadFileToString(cert_file));
    RESTYLE_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadFileToString(key_file));
  }
  return grpc::SslCredentials(ssl);
}

grpc::ChannelArguments ChannelArguments(absl::Duration keepalive, int max_receive_bytes) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(absl::ToInt64Milliseconds(keepalive)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetMaxReceiveMessageSize(max_receive_bytes);
  return args;
}

}  // namespace restyle
