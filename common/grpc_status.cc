#include "common/grpc_status.h"

#include <string>

#include "common/status.h"
#include "google/protobuf/any.pb.h"
#include "restyle/v1/error.pb.h"

namespace restyle {

grpc::Status ToGrpcStatus(const absl::Status& status, grpc::ServerContextBase* context) {
  if (status.ok()) return grpc::Status::OK;
  v1::ErrorDetail detail = ErrorDetailOf(status);
  if (detail.reason().empty()) detail.set_reason(DefaultReason(status.code()));
  detail.set_domain(kErrorDomain);
  if (detail.has_retry_delay() && context != nullptr) {
    const int64_t ms = detail.retry_delay().seconds() * 1000 + detail.retry_delay().nanos() / 1000000;
    context->AddTrailingMetadata("grpc-retry-pushback-ms", std::to_string(ms));
  }
  v1::RpcStatus rpc_status;
  rpc_status.set_code(static_cast<int>(status.code()));
  rpc_status.set_message(std::string(status.message()));
  rpc_status.add_details()->PackFrom(detail);
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      rpc_status.SerializeAsString());
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  v1::RpcStatus rpc_status;
  if (!status.error_details().empty() && rpc_status.ParseFromString(status.error_details())) {
    for (const google::protobuf::Any& any : rpc_status.details()) {
      v1::ErrorDetail detail;
      if (any.UnpackTo(&detail)) return WithErrorDetail(out, detail);
    }
  }
  return out;
}

}  // namespace restyle
