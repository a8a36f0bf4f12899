// Status across the RPC edge, in both directions, in one place each.
//
// ToGrpcStatus is the only place the service turns an absl::Status into a
// grpc::Status: the code and message as they are, and in the
// `grpc-status-details-bin` trailer a restyle.v1.RpcStatus (the layout of
// google.rpc.Status) holding the ErrorDetail, with a reason always set (the
// code's name when the status had none). A retry delay also goes out as
// `grpc-retry-pushback-ms`, the trailer gRPC's own retry policy honours.
// FromGrpcStatus is the way back for the worker and the CLI.
//
// Thread-safety: free functions; ToGrpcStatus writes trailers to `context`,
// which must be the handler's own, before the call is finished.
#ifndef RESTYLE_COMMON_GRPC_STATUS_H_
#define RESTYLE_COMMON_GRPC_STATUS_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace restyle {

grpc::Status ToGrpcStatus(const absl::Status& status, grpc::ServerContextBase* context);

// The status a client received, with its ErrorDetail (status.h) when the
// server sent one.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace restyle

#endif  // RESTYLE_COMMON_GRPC_STATUS_H_
