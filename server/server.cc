#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/resource_quota.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/ids.h"
#include "common/status.h"
#include "worker/engine_boundary.h"

#ifndef RESTYLE_VERSION
#define RESTYLE_VERSION "dev"
#endif

namespace restyle::server {
namespace {

constexpr const char* kServices[] = {"", "restyle.v1.RestyleService"};
constexpr char kWorkerServiceName[] = "restyle.worker.v1.WorkerService";

// The API port's credentials (TLS when a certificate is given), or the
// worker port's (`client_ca`: mutual TLS, every client certificate
// verified against that bundle).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerOptions& o,
                                                                     const std::string& client_ca = "") {
  if (o.tls_cert_file.empty() && o.tls_key_file.empty()) {
    if (!client_ca.empty()) {
      return absl::InvalidArgumentError(
          "--worker-client-ca needs TLS on the ports: give --tls-cert and --tls-key too");
    }
    return grpc::InsecureServerCredentials();
  }
  if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and a key file");
  }
  RESTYLE_ASSIGN_OR_RETURN(std::string cert, ReadFileToString(o.tls_cert_file));
  RESTYLE_ASSIGN_OR_RETURN(std::string key, ReadFileToString(o.tls_key_file));
  grpc::SslServerCredentialsOptions ssl(
      client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                        : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_key_cert_pairs.push_back({key, cert});
  if (!client_ca.empty()) {
    RESTYLE_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFileToString(client_ca));
  }
  return grpc::SslServerCredentials(ssl);
}

// Server reflection on one builder (the API port's) and off on the others:
// the worker protocol and the unauthenticated health port describe
// nothing. (Linking gRPC's reflection library registers its plugin with
// every builder; this option decides per builder.)
class Reflection : public grpc::ServerBuilderOption {
 public:
  explicit Reflection(bool on) : on_(on) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    auto reflection = std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>();
    const std::string name = reflection->name();
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                  [&](const auto& p) { return p->name() == name; }),
                   plugins->end());
    if (on_) plugins->push_back(std::move(reflection));
  }

 private:
  const bool on_;
};

// Bounds on what callers can make a port hold: concurrent calls on one
// connection, and the memory all its calls' buffers take together (past it
// gRPC refuses new calls with RESOURCE_EXHAUSTED instead of growing).
struct PortLimits {
  int max_streams_per_connection;
  int64_t max_memory_bytes;
};
constexpr PortLimits kServingLimits = {1000, int64_t{1} << 30};
constexpr PortLimits kHealthLimits = {100, int64_t{64} << 20};

void Configure(grpc::ServerBuilder& b, const std::string& name, PortLimits limits,
               GrpcMetrics* metrics = nullptr) {
  b.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, limits.max_streams_per_connection);
  grpc::ResourceQuota quota(absl::StrCat("restyled-", name));
  quota.Resize(static_cast<size_t>(limits.max_memory_bytes));
  b.SetResourceQuota(quota);
  if (metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(metrics->Interceptors());
    b.experimental().SetInterceptorCreators(std::move(creators));
  }
  // Clients may ping every 10 s, even between calls (the CLI's and workers'
  // keepalive); the server pings idle connections every minute.
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  b.SetMaxReceiveMessageSize(8 << 20);
}

absl::StatusOr<std::unique_ptr<grpc::Server>> Build(grpc::ServerBuilder& b, const std::string& what,
                                                    int* port, int wanted) {
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (server == nullptr || *port == 0) {
    return ErrorWithReason(absl::StatusCode::kUnavailable, "PORT_IN_USE",
                           absl::StrCat("cannot listen on the ", what, " port ", wanted,
                                        " (in use, or not allowed)"));
  }
  return server;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const ServerOptions& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("a data directory is required");
  std::unique_ptr<Server> server(new Server(options));
  RESTYLE_RETURN_IF_ERROR(server->Start());
  return server;
}

absl::Status Server::Start() {
  std::error_code ec;
  std::filesystem::create_directories(options_.data_dir, ec);
  if (ec) return ErrnoStatus(absl::StrCat("create ", options_.data_dir), ec.value());
  RESTYLE_ASSIGN_OR_RETURN(store_, OpenJobStore({.database_url = options_.database_url,
                                                 .data_dir = options_.data_dir}));
  // Workers get two lease periods to reconnect before their jobs move,
  // unless other fronts on the same store are up (their workers renew
  // their leases through them, and this front's start moves nothing).
  char hostname[256] = {};
  gethostname(hostname, sizeof(hostname) - 1);
  replica_.id = absl::StrCat(hostname, "-", RandomId(6));
  int others = 0;
  if (store_->shared()) {
    RESTYLE_ASSIGN_OR_RETURN(others, Replicas::OthersLive(store_.get(), replica_));
  }
  if (others == 0) {
    RESTYLE_RETURN_IF_ERROR(store_->ExtendLeases(absl::Now() + 2 * options_.scheduler.lease_ttl));
  }
  artifacts_ = std::make_unique<ArtifactStore>(options_.data_dir + "/artifacts", store_.get());
  // Uploads a crash cut short left temporary files; with other fronts on
  // the same directory, only those no upload could still be writing.
  if (const int removed = artifacts_->RemoveTemporaries(store_->shared() ? absl::Hours(1)
                                                                         : absl::ZeroDuration());
      removed > 0) {
    spdlog::info("removed {} temporary file(s) of uploads a crash interrupted", removed);
  }
  RESTYLE_ASSIGN_OR_RETURN(auth_, Authenticator::Create(options_.tokens_file, "api"));
  RESTYLE_ASSIGN_OR_RETURN(worker_auth_, Authenticator::Create(options_.worker_tokens_file, "worker"));
  if (auth_->enabled() && !worker_auth_->enabled() && options_.worker_client_ca_file.empty()) {
    return ErrorWithReason(
        absl::StatusCode::kInvalidArgument, "WORKER_CREDENTIALS_MISSING",
        "--tokens-file guards the API port, and the worker port needs credentials of its own, "
        "or any client could act as a worker: give --worker-tokens-file (the workers' tokens) "
        "and/or --worker-client-ca (workers' client certificates)");
  }
  RESTYLE_RETURN_IF_ERROR(worker_auth_->SetOtherPort(auth_.get()));
  RESTYLE_RETURN_IF_ERROR(auth_->SetOtherPort(worker_auth_.get()));
  const std::string vocab =
      options_.clip_vocab.empty() ? engine::DefaultVocabPath() : options_.clip_vocab;
  RESTYLE_RETURN_IF_ERROR(worker::RunTorchFree(absl::StrCat("loading CLIP's vocabulary ", vocab), [&] {
    tokenizer_ = engine::Tokenizer::FromFile(vocab);
  }));
  RESTYLE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, Credentials(options_));
  RESTYLE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> worker_creds,
                           Credentials(options_, options_.worker_client_ca_file));

  store_executor_ = std::make_unique<Executor>(1, "store");
  io_executor_ = std::make_unique<Executor>(2, "io");
  timers_ = std::make_unique<TimerQueue>();
  SchedulerOptions scheduling = options_.scheduler;
  scheduling.front_id = replica_.id;
  scheduler_ = std::make_unique<Scheduler>(scheduling, store_.get(), store_executor_.get(),
                                           timers_.get(), &hub_);
  RESTYLE_RETURN_IF_ERROR(scheduler_->LoadSources());
  front_.limits = options_.limits;
  front_.store = store_.get();
  front_.artifacts = artifacts_.get();
  front_.hub = &hub_;
  front_.scheduler = scheduler_.get();
  front_.store_executor = store_executor_.get();
  front_.io_executor = io_executor_.get();
  front_.timers = timers_.get();
  front_.auth = auth_.get();
  front_.worker_auth = worker_auth_.get();
  front_.tokenizer = tokenizer_.get();
  front_.metrics = &metrics_;
  if (store_->shared()) {
    forwarder_ = std::make_unique<Forwarder>(replica_.id, options_.tls_cert_file);
    front_.forwarder = forwarder_.get();
  }
  AddBuildInfo(*registry_, "restyled", RESTYLE_VERSION);
  hub_.SetObserver([this](const Events& events) { metrics_.Observe(events); });
  api_service_ = std::make_unique<ApiService>(&front_);
  worker_service_ = std::make_unique<WorkerService>(&front_);

  health_.Set(kWorkerServiceName, true);
  SetHealth(false);
  auto add_health = [this](grpc::ServerBuilder& b) {
    health_services_.push_back(std::make_unique<HealthService>(&health_));
    b.RegisterService(health_services_.back().get());
  };
  const std::string host = options_.host;
  {
    grpc::ServerBuilder b;
    Configure(b, "api", kServingLimits, &grpc_metrics_);
    b.AddListeningPort(absl::StrCat(host, ":", options_.api_port), creds, &api_port_);
    b.SetOption(std::make_unique<Reflection>(true));
    b.RegisterService(api_service_.get());
    add_health(b);
    RESTYLE_ASSIGN_OR_RETURN(api_server_, Build(b, "api", &api_port_, options_.api_port));
  }
  {
    grpc::ServerBuilder b;
    Configure(b, "worker", kServingLimits, &grpc_metrics_);
    b.SetOption(std::make_unique<Reflection>(false));
    b.AddListeningPort(absl::StrCat(host, ":", options_.worker_port), worker_creds, &worker_port_);
    b.RegisterService(worker_service_.get());
    add_health(b);
    RESTYLE_ASSIGN_OR_RETURN(worker_server_,
                             Build(b, "worker", &worker_port_, options_.worker_port));
  }
  {
    grpc::ServerBuilder b;
    Configure(b, "health", kHealthLimits);
    b.SetOption(std::make_unique<Reflection>(false));
    b.AddListeningPort(absl::StrCat(host, ":", options_.health_port),
                       grpc::InsecureServerCredentials(), &health_port_);
    add_health(b);
    RESTYLE_ASSIGN_OR_RETURN(health_server_,
                             Build(b, "health", &health_port_, options_.health_port));
  }
  scheduler_->OnReadinessChange([this](bool ready) { SetHealth(ready); });
  if (store_->shared()) {
    replica_.address = options_.advertise_address;
    if (replica_.address.empty()) {
      // The address it listens on when that is one address; else the pod's
      // (Kubernetes' downward API), else the host's name.
      const char* pod_ip = std::getenv("POD_IP");
      std::string peer_host = hostname;
      if (host != "0.0.0.0" && host != "::" && host != "[::]" && !host.empty()) {
        peer_host = host;
      } else if (pod_ip != nullptr && *pod_ip) {
        peer_host = pod_ip;
      }
      replica_.address = absl::StrCat(peer_host, ":", api_port_);
    }
    replicas_ = std::make_unique<Replicas>(replica_, store_.get(), scheduler_.get(), &hub_,
                                           store_executor_.get(), timers_.get(), &metrics_);
    RESTYLE_RETURN_IF_ERROR(replicas_->Start());
    spdlog::info("replica {} at {}: {} other front(s) live on the same database{}", replica_.id,
                 replica_.address, others,
                 others > 0 ? "; held leases left as they are" : "");
  }
  if (options_.metrics_port >= 0) {
    RESTYLE_ASSIGN_OR_RETURN(metrics_server_,
                             MetricsServer::Start(host, options_.metrics_port, registry_));
  }
  UpdateGauges();
  if (!options_.port_file.empty()) {
    RESTYLE_RETURN_IF_ERROR(WriteFileAtomically(
        options_.port_file, absl::StrCat("{\"api\": ", api_port_, ", \"worker\": ", worker_port_,
                                         ", \"health\": ", health_port_, ", \"metrics\": ",
                                         metrics_port(), "}\n")));
  }
  spdlog::info("restyled serving: api {}:{}, worker {}:{}, health {}:{}, metrics {}{}{}{}; "
               "data in {}, jobs in {}",
               host, api_port_, host, worker_port_, host, health_port_,
               metrics_server_ ? absl::StrCat("http://", host, ":", metrics_port(), "/metrics") : "off",
               options_.tls_cert_file.empty() ? "" : ", TLS",
               auth_->enabled() ? ", client tokens required" : "",
               absl::StrCat(worker_auth_->enabled() ? ", worker tokens required" : "",
                            options_.worker_client_ca_file.empty() ? ""
                                                                   : ", worker certificates required"),
               options_.data_dir,
               DescribeStore({.database_url = options_.database_url, .data_dir = options_.data_dir}));
  return absl::OkStatus();
}

void Server::UpdateGauges() {
  store_executor_->Schedule([this] {
    absl::StatusOr<int64_t> queued = store_->CountQueued();
    metrics_.SetQueued(queued.ok() ? *queued : 0, static_cast<int64_t>(scheduler_->generation_queued()));
    const Scheduler::WorkerCounts w = scheduler_->CountWorkers();
    metrics_.SetWorkers(w.idle, w.training, w.draining);
    timers_->RunAfter(absl::Seconds(1), [this] { UpdateGauges(); });
  });
}

void Server::SetHealth(bool ready) {
  const bool serving = ready && !front_.draining.load();
  for (const char* service : kServices) health_.Set(service, serving);
  if (health_logged_ != serving) {
    spdlog::info("health: {}", serving ? "SERVING (a worker is ready)" : "NOT_SERVING (no worker is ready)");
  }
  health_logged_ = serving;
}

void Server::Shutdown() {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  spdlog::info("shutting down: NOT_SERVING and refusing new work for {}, then letting calls "
               "finish (up to {})",
               absl::FormatDuration(options_.drain_delay), absl::FormatDuration(options_.shutdown_grace));
  front_.draining.store(true);
  health_.Shutdown();
  if (scheduler_) scheduler_->Drain();
  if (replicas_) replicas_->Drain();
  absl::SleepFor(options_.drain_delay);
  const auto deadline = absl::ToChronoTime(absl::Now() + options_.shutdown_grace);
  for (grpc::Server* s : {api_server_.get(), worker_server_.get(), health_server_.get()}) {
    if (s != nullptr) s->Shutdown(deadline);
  }
  if (scheduler_) scheduler_->Stop();
  if (replicas_) replicas_->Stop();
  if (timers_) timers_->Stop();
  if (store_executor_) store_executor_->Stop();
  if (io_executor_) io_executor_->Stop();
  store_.reset();  // closes the database (checkpointing its WAL)
  spdlog::info("stopped; the store is closed");
  stopped_.Notify();
}

void Server::Wait() { stopped_.WaitForNotification(); }

Server::~Server() { Shutdown(); }

}  // namespace restyle::server
