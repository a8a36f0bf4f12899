// restyle.worker.v1.WorkerService, the front's side of the worker protocol
// (proto/restyle/worker/v1/worker_service.proto): registration, heartbeats
// that renew leases, long polls per lane, progress, artifact transfers in
// both directions, completion, release, and generated images relayed to the
// client that asked for them (read only as fast as that client takes them).
//
// Every report about a job is fenced by the lease's attempt number (ABORTED,
// LEASE_LOST, for a worker whose lease moved on).
//
// Thread-safety: gRPC calls the handlers concurrently; shared state is in
// Front's thread-safe members.
#ifndef RESTYLE_SERVER_WORKER_SERVICE_H_
#define RESTYLE_SERVER_WORKER_SERVICE_H_

#include "restyle/worker/v1/worker_service.grpc.pb.h"
#include "server/front.h"

namespace restyle::server {

class WorkerService final : public wv1::WorkerService::CallbackService {
 public:
  explicit WorkerService(Front* front) : front_(front) {}

  grpc::ServerUnaryReactor* RegisterWorker(grpc::CallbackServerContext* context,
                                           const wv1::RegisterWorkerRequest* request,
                                           wv1::RegisterWorkerResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const wv1::HeartbeatRequest* request,
                                      wv1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* PollWork(grpc::CallbackServerContext* context,
                                     const wv1::PollWorkRequest* request,
                                     wv1::PollWorkResponse* response) override;
  grpc::ServerUnaryReactor* ReportProgress(grpc::CallbackServerContext* context,
                                           const wv1::ReportProgressRequest* request,
                                           wv1::ReportProgressResponse* response) override;
  grpc::ServerReadReactor<wv1::UploadArtifactRequest>* UploadArtifact(
      grpc::CallbackServerContext* context, wv1::UploadArtifactResponse* response) override;
  grpc::ServerWriteReactor<wv1::DownloadArtifactResponse>* DownloadArtifact(
      grpc::CallbackServerContext* context, const wv1::DownloadArtifactRequest* request) override;
  grpc::ServerUnaryReactor* CompleteJob(grpc::CallbackServerContext* context,
                                        const wv1::CompleteJobRequest* request,
                                        wv1::CompleteJobResponse* response) override;
  grpc::ServerUnaryReactor* ReleaseJob(grpc::CallbackServerContext* context,
                                       const wv1::ReleaseJobRequest* request,
                                       wv1::ReleaseJobResponse* response) override;
  grpc::ServerReadReactor<wv1::SendImagesRequest>* SendImages(
      grpc::CallbackServerContext* context, wv1::SendImagesResponse* response) override;

 private:
  Front* const front_;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_WORKER_SERVICE_H_
