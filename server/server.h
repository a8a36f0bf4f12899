// restyled: the front. It accepts jobs and image requests, keeps every
// accepted job in its store (SQLite in the data directory, or PostgreSQL:
// open_job_store.h), queues work for the workers that connect to it, streams
// progress and serves health.
//
// Three gRPC servers on three ports:
//   api     restyle.v1.RestyleService + health + reflection (TLS, client tokens)
//   worker  restyle.worker.v1.WorkerService + health (TLS, worker tokens
//           and/or client certificates; never a client's token)
//   health  grpc.health.v1 only, plaintext, for probes (no reflection)
// Health: "" and "restyle.v1.RestyleService" are SERVING while at least one
// worker is connected with its models loaded; "restyle.worker.v1.
// WorkerService" while the front takes workers (it is up and not draining).
//
//   ServerOptions o;
//   o.data_dir = "/var/lib/restyle";
//   auto server = Server::Create(o);      // opens the store, binds the ports
//   (*server)->Wait();                    // until Shutdown() from a signal
//
// Thread-safety: Shutdown may be called from any thread (once Create
// returned); Wait from one.
#ifndef RESTYLE_SERVER_SERVER_H_
#define RESTYLE_SERVER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/api_service.h"
#include "common/metrics.h"
#include "server/front.h"
#include "server/grpc_metrics.h"
#include "server/health_service.h"
#include "server/open_job_store.h"
#include "server/replicas.h"
#include "server/worker_service.h"
#include "worker/engine/clip/tokenizer.h"

namespace restyle::server {

struct ServerOptions {
  // Where artifacts/ and the SQLite database (restyle.db) live. Required.
  std::string data_dir;
  // "": the job store is SQLite in data_dir; "postgresql://...": that
  // PostgreSQL database (open_job_store.h).
  std::string database_url;
  // With a shared store (PostgreSQL, several replicas): HOST:PORT at which
  // the other replicas reach this one's API port; "": `host` when it is
  // one address, else $POD_IP, else the hostname, with the bound API port.
  std::string advertise_address;
  // The address the three ports listen on.
  std::string host = "0.0.0.0";
  // 0: the OS picks a free port (reported by the accessors and port_file).
  int api_port = 8700;
  int worker_port = 8701;
  int health_port = 8702;
  // Prometheus /metrics (HTTP); -1: none.
  int metrics_port = 8703;
  // PEM files; both set: TLS on the api and worker ports.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Bearer tokens of the API port's clients, one per line (auth.h); "": no
  // authentication there.
  std::string tokens_file;
  // Bearer tokens of the worker port's workers; "": none asked. With
  // tokens_file set, the worker port needs credentials of its own: this or
  // worker_client_ca_file (Create refuses otherwise).
  std::string worker_tokens_file;
  // PEM CA bundle: the worker port asks every worker for a client
  // certificate signed by it (mutual TLS; needs tls_cert_file).
  std::string worker_client_ca_file;
  // CLIP's BPE vocabulary (bpe_simple_vocab_16e6.txt.gz), to check job texts
  // as the workers will tokenize them; "": the one shipped with Restyle.
  std::string clip_vocab;
  // When set, {"api": P, "worker": P, "health": P, "metrics": P} is written here once the
  // ports are bound (for scripts and tests that start restyled on port 0).
  std::string port_file;
  FrontLimits limits;
  SchedulerOptions scheduler;
  // On Shutdown, how long the ports stay open after health turns
  // NOT_SERVING (new work refused with UNAVAILABLE, reason DRAINING), so that
  // probes and load balancers notice before connections are refused.
  absl::Duration drain_delay = absl::Seconds(1);
  // Then how long calls may take to finish before they are cancelled.
  absl::Duration shutdown_grace = absl::Seconds(5);
};

class Server {
 public:
  // Opens the store, gives the leases of a previous run two lease periods
  // for their workers to reconnect, binds the ports and starts serving.
  static absl::StatusOr<std::unique_ptr<Server>> Create(const ServerOptions& options);
  ~Server();

  int api_port() const { return api_port_; }
  int worker_port() const { return worker_port_; }
  int health_port() const { return health_port_; }
  int metrics_port() const { return metrics_server_ ? metrics_server_->port() : -1; }

  // Blocks until Shutdown has completed.
  void Wait();
  // Graceful stop: health NOT_SERVING, new work refused (UNAVAILABLE), calls
  // finish within shutdown_grace, running jobs keep their leases (their
  // workers reconnect to the next front), the store is closed cleanly.
  void Shutdown();

 private:
  explicit Server(const ServerOptions& options) : options_(options) {}
  absl::Status Start();
  void SetHealth(bool ready);
  // Sets the queue and worker gauges, then again in a second.
  void UpdateGauges();

  const ServerOptions options_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<Authenticator> auth_;         // the API port's
  std::unique_ptr<Authenticator> worker_auth_;  // the worker port's
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  FrontMetrics metrics_{*registry_};
  GrpcMetrics grpc_metrics_{*registry_};
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<engine::Tokenizer> tokenizer_;
  EventHub hub_;
  std::unique_ptr<Executor> store_executor_;
  std::unique_ptr<Executor> io_executor_;
  std::unique_ptr<TimerQueue> timers_;
  std::unique_ptr<Scheduler> scheduler_;
  Replicas::Options replica_;
  std::unique_ptr<Replicas> replicas_;  // with a shared store only
  std::unique_ptr<Forwarder> forwarder_;  // the same
  Front front_;
  std::unique_ptr<ApiService> api_service_;
  std::unique_ptr<WorkerService> worker_service_;
  HealthState health_;
  std::vector<std::unique_ptr<HealthService>> health_services_;  // one per server
  std::unique_ptr<grpc::Server> api_server_;
  std::unique_ptr<grpc::Server> worker_server_;
  std::unique_ptr<grpc::Server> health_server_;
  int api_port_ = 0;
  int worker_port_ = 0;
  int health_port_ = 0;
  std::optional<bool> health_logged_;  // the status last logged
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  absl::Notification stopped_;
};

}  // namespace restyle::server

#endif  // RESTYLE_SERVER_SERVER_H_
