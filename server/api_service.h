// restyle.v1.RestyleService, the public API (proto/restyle/v1/
// restyle_service.proto; every RPC with an example in docs/api.md).
//
// Handlers check the token and the request on the gRPC thread (no I/O),
// hand store work to the store executor and file reads to the I/O executor,
// and return; streams are fed through ServerStream (reactors.h).
//
// Thread-safety: gRPC calls the handlers concurrently; all shared state is
// in Front's thread-safe members.
#ifndef RESTYLE_SERVER_API_SERVICE_H_
#define RESTYLE_SERVER_API_SERVICE_H_

#include "restyle/v1/restyle_service.grpc.pb.h"
#include "server/front.h"

namespace restyle::server {

class ApiService final : public v1::RestyleService::CallbackService {
 public:
  explicit ApiService(Front* front) : front_(front) {}

  grpc::ServerUnaryReactor* Adapt(grpc::CallbackServerContext* context,
                                  const v1::AdaptRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* WaitJob(grpc::CallbackServerContext* context,
                                    const v1::WaitJobRequest* request, v1::Job* response) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* context,
                                                   const v1::WatchJobRequest* request) override;
  grpc::ServerWriteReactor<v1::DownloadArtifactResponse>* DownloadArtifact(
      grpc::CallbackServerContext* context, const v1::DownloadArtifactRequest* request) override;
  grpc::ServerUnaryReactor* ListGenerators(grpc::CallbackServerContext* context,
                                           const v1::ListGeneratorsRequest* request,
                                           v1::ListGeneratorsResponse* response) override;
  grpc::ServerUnaryReactor* GetGenerator(grpc::CallbackServerContext* context,
                                         const v1::GetGeneratorRequest* request,
                                         v1::Generator* response) override;
  grpc::ServerUnaryReactor* DeleteGenerator(grpc::CallbackServerContext* context,
                                            const v1::DeleteGeneratorRequest* request,
                                            v1::DeleteGeneratorResponse* response) override;
  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const v1::ListWorkersRequest* request,
                                        v1::ListWorkersResponse* response) override;

 private:
  Front* const front_;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_API_SERVICE_H_
