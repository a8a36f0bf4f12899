// What the CLI and the workers share when they dial the front: TLS from a CA
// bundle (or plaintext; a client certificate for workers when asked), and keepalive and reconnect settings the front
// accepts (it allows pings every 10 s or more, with or without calls).
//
// Thread-safety: the functions are safe.
#ifndef RESTYLE_COMMON_CHANNEL_H_
#define RESTYLE_COMMON_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace restyle {

// TLS trusting the PEM bundle `tls_ca_file`; plaintext when it is "". With
// `cert_file` and `key_file` (PEM), that client certificate is presented
// (mutual TLS); INVALID_ARGUMENT for one without the other, or either
// without a CA.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const std::string& tls_ca_file, const std::string& cert_file = "",
    const std::string& key_file = "");

// Keepalive every `keepalive` (a dead front is noticed), reconnects backing
// off from 200 ms to 2 s (a restarted front is found again within seconds),
// and replies up to `max_receive_bytes`.
grpc::ChannelArguments ChannelArguments(absl::Duration keepalive, int max_receive_bytes);

}  // namespace restyle

#endif  // RESTYLE_COMMON_CHANNEL_H_
