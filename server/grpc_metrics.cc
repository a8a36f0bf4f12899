#include "server/grpc_metrics.h"

#include <google/protobuf/descriptor.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/metrics.h"

namespace restyle::server {
namespace {

const char* TypeOf(grpc::experimental::ServerRpcInfo::Type type) {
  using T = grpc::experimental::ServerRpcInfo::Type;
  switch (type) {
    case T::UNARY: return "unary";
    case T::CLIENT_STREAMING: return "client_stream";
    case T::SERVER_STREAMING: return "server_stream";
    case T::BIDI_STREAMING: return "bidi_stream";
  }
  return "unary";
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "Canceled";
    case grpc::StatusCode::UNKNOWN: return "Unknown";
    case grpc::StatusCode::INVALID_ARGUMENT: return "InvalidArgument";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DeadlineExceeded";
    case grpc::StatusCode::NOT_FOUND: return "NotFound";
    case grpc::StatusCode::ALREADY_EXISTS: return "AlreadyExists";
    case grpc::StatusCode::PERMISSION_DENIED: return "PermissionDenied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "ResourceExhausted";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FailedPrecondition";
    case grpc::StatusCode::ABORTED: return "Aborted";
    case grpc::StatusCode::OUT_OF_RANGE: return "OutOfRange";
    case grpc::StatusCode::UNIMPLEMENTED: return "Unimplemented";
    case grpc::StatusCode::INTERNAL: return "Internal";
    case grpc::StatusCode::UNAVAILABLE: return "Unavailable";
    case grpc::StatusCode::DATA_LOSS: return "DataLoss";
    case grpc::StatusCode::UNAUTHENTICATED: return "Unauthenticated";
    default: return "Unknown";
  }
}

}  // namespace

// One per call: counts its start and, when the status goes out, its end.
class GrpcMetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  GrpcMetricsInterceptor(GrpcMetrics* metrics, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics), start_(absl::Now()) {
    // "/restyle.v1.RestyleService/Adapt" -> service, method.
    const std::string full = info->method();
    const size_t slash = full.rfind('/');
    service_ = full.substr(1, slash == std::string::npos ? std::string::npos : slash - 1);
    method_ = slash == std::string::npos ? full : full.substr(slash + 1);
    // A method no service of this binary has (any name a caller makes up)
    // counts as one series, so made-up names cannot grow the label sets.
    const google::protobuf::ServiceDescriptor* known =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service_);
    if (known == nullptr || known->FindMethodByName(method_) == nullptr) {
      service_ = "unknown";
      method_ = "unknown";
    }
    type_ = TypeOf(info->type());
    metrics_->started_.Add({{"grpc_service", service_}, {"grpc_method", method_}, {"grpc_type", type_}})
        .Increment();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      metrics_->handled_
          .Add({{"grpc_service", service_},
                {"grpc_method", method_},
                {"grpc_type", type_},
                {"grpc_code", CodeName(status.error_code())}})
          .Increment();
      metrics_->handling_seconds_
          .Add({{"grpc_service", service_}, {"grpc_method", method_}, {"grpc_type", type_}},
               DurationBuckets())
          .Observe(absl::ToDoubleSeconds(absl::Now() - start_));
    }
    methods->Proceed();
  }

 private:
  GrpcMetrics* const metrics_;
  const absl::Time start_;
  std::string service_, method_;
  const char* type_;
};

namespace {

class Factory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(GrpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new GrpcMetricsInterceptor(metrics_, info);
  }

 private:
  GrpcMetrics* const metrics_;
};

}  // namespace

GrpcMetrics::GrpcMetrics(prometheus::Registry& r)
    : started_(prometheus::BuildCounter()
                   .Name("grpc_server_started_total")
                   .Help("RPCs started on the server")
                   .Register(r)),
      handled_(prometheus::BuildCounter()
                   .Name("grpc_server_handled_total")
                   .Help("RPCs completed on the server, whatever their status")
                   .Register(r)),
      handling_seconds_(prometheus::BuildHistogram()
                            .Name("grpc_server_handling_seconds")
                            .Help("Time from an RPC's start to its status, on the server")
                            .Register(r)) {}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> GrpcMetrics::Interceptors() {
  return std::make_unique<Factory>(this);
}

}  // namespace restyle::server
