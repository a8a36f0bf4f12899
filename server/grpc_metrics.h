// The gRPC server metrics existing dashboards expect (the names of
// go-grpc-prometheus and grpc-ecosystem's middleware), from an interceptor
// on every call of the api and worker ports:
//   grpc_server_started_total{grpc_service,grpc_method,grpc_type}
//   grpc_server_handled_total{grpc_service,grpc_method,grpc_type,grpc_code}
//   grpc_server_handling_seconds{grpc_service,grpc_method,grpc_type} (histogram)
// grpc_type is unary, client_stream, server_stream or bidi_stream; grpc_code
// the status code's name ("OK", "NOT_FOUND").
//
// Thread-safety: thread-safe.
#ifndef RESTYLE_SERVER_GRPC_METRICS_H_
#define RESTYLE_SERVER_GRPC_METRICS_H_

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <vector>

namespace restyle::server {

class GrpcMetrics {
 public:
  explicit GrpcMetrics(prometheus::Registry& registry);

  // An interceptor factory for ServerBuilder::experimental().SetInterceptorCreators.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> Interceptors();

 private:
  friend class GrpcMetricsInterceptor;
  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& handling_seconds_;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_GRPC_METRICS_H_
