// restyled: flags -> ServerOptions, then serve until SIGTERM or SIGINT.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/logging.h"
#include "common/signals.h"
#include "common/status.h"
#include "server/data_check.h"
#include "server/server.h"
#include "server/open_job_store.h"

namespace {

// Seconds as an absl::Duration flag value.
absl::Duration Seconds(double s) { return absl::Milliseconds(static_cast<int64_t>(s * 1000)); }

// restyled --check: 0 when the data directory agrees with the database.
int CheckDataDir(const restyle::server::StoreOptions& options) {
  if (options.database_url.empty() && !std::filesystem::exists(options.data_dir + "/restyle.db")) {
    std::fprintf(stderr, "restyled --check: no database in %s\n", options.data_dir.c_str());
    return 2;
  }
  auto store = restyle::server::OpenJobStore(options);
  if (!store.ok()) {
    std::fprintf(stderr, "restyled --check: %s\n", restyle::StatusText(store.status()).c_str());
    return 2;
  }
  auto report = restyle::server::CheckDataDir(**store, options.data_dir + "/artifacts");
  if (!report.ok()) {
    std::fprintf(stderr, "restyled --check: %s\n", restyle::StatusText(report.status()).c_str());
    return 2;
  }
  for (const std::string& problem : report->problems) std::printf("%s\n", problem.c_str());
  std::printf("%lld jobs (%lld succeeded), %lld artifacts (%lld bytes) checked: %zu problem(s); "
              "%lld temporary file(s) of interrupted uploads\n",
              static_cast<long long>(report->jobs), static_cast<long long>(report->succeeded),
              static_cast<long long>(report->artifacts), static_cast<long long>(report->bytes),
              report->problems.size(), static_cast<long long>(report->leftover_temporaries));
  return report->problems.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  restyle::server::ServerOptions o;
  std::string log_level = "info";
  double lease_ttl = 10, heartbeat = 2, grace = 5, drain = 1;
  CLI::App app{"restyled: the Restyle front server (jobs, queue, artifacts, health)"};
  app.add_option("--data-dir", o.data_dir,
                 "where artifacts live, and the job database unless --database-url")
      ->required();
  app.add_option("--database-url", o.database_url,
                 "keep jobs in this PostgreSQL database (postgresql://USER@HOST:5432/DB; "
                 "password from PGPASSWORD or PGPASSFILE) instead of SQLite in --data-dir")
      ->envname("RESTYLE_DATABASE_URL");
  app.add_option("--advertise-address", o.advertise_address,
                 "HOST:PORT at which the other replicas on the same --database-url reach this "
                 "one's API port (default: --host when it is one address, else $POD_IP, else the "
                 "hostname; with --port)")
      ->envname("RESTYLE_ADVERTISE_ADDRESS");
  app.add_option("--host", o.host, "address to listen on")->capture_default_str();
  app.add_option("--port", o.api_port, "public API port (0: any free port)")->capture_default_str();
  app.add_option("--worker-port", o.worker_port, "port workers connect to")->capture_default_str();
  app.add_option("--health-port", o.health_port, "plaintext gRPC health port for probes")
      ->capture_default_str();
  app.add_option("--metrics-port", o.metrics_port, "Prometheus /metrics port (0: any free port, -1: none)")
      ->capture_default_str();
  app.add_option("--port-file", o.port_file, "write the bound ports here as JSON");
  app.add_option("--tls-cert", o.tls_cert_file, "PEM certificate: TLS on the api and worker ports")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", o.tls_key_file, "PEM private key of --tls-cert")->check(CLI::ExistingFile);
  app.add_option("--tokens-file", o.tokens_file,
                 "bearer tokens clients must send on the api port, one per line")
      ->check(CLI::ExistingFile);
  app.add_option("--worker-tokens-file", o.worker_tokens_file,
                 "bearer tokens workers must send on the worker port, one per line (a client's "
                 "token is refused there; required with --tokens-file unless --worker-client-ca)")
      ->check(CLI::ExistingFile);
  app.add_option("--worker-client-ca", o.worker_client_ca_file,
                 "PEM CA bundle: workers must present a client certificate it signed (mutual "
                 "TLS on the worker port; needs --tls-cert)")
      ->check(CLI::ExistingFile);
  app.add_option("--clip-vocab", o.clip_vocab,
                 "CLIP's bpe_simple_vocab_16e6.txt.gz (default: the one shipped with Restyle)")
      ->check(CLI::ExistingFile);
  app.add_option("--max-queued-jobs", o.limits.max_queued_jobs, "queued jobs at most (then QUEUE_FULL)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-attempts", o.limits.max_attempts, "failed runs before a job fails")
      ->capture_default_str()->check(CLI::Range(1, 100));
  app.add_option("--max-generation-queue", o.scheduler.max_generation_queue,
                 "Generate requests waiting for a worker, at most")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-watch-backlog", o.limits.max_watch_backlog,
                 "events a WatchJob client may fall behind before it is dropped")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-watchers-per-job", o.limits.max_watchers_per_job,
                 "WatchJob and WaitJob calls following one job at once")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-watchers", o.limits.max_watchers,
                 "WatchJob and WaitJob calls following jobs at once, all jobs together")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--lease-ttl", lease_ttl, "seconds a job lease lasts without a heartbeat")
      ->capture_default_str()->check(CLI::Range(0.5, 3600.0));
  app.add_option("--heartbeat-interval", heartbeat, "seconds between worker heartbeats")
      ->capture_default_str()->check(CLI::Range(0.1, 600.0));
  app.add_option("--drain-delay", drain,
                 "seconds between NOT_SERVING and closing the ports on SIGTERM")
      ->capture_default_str()->check(CLI::Range(0.0, 600.0));
  app.add_option("--shutdown-grace", grace, "seconds calls may then take to finish")
      ->capture_default_str()->check(CLI::Range(0.0, 600.0));
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")->capture_default_str();
  bool check = false;
  app.add_flag("--check", check,
               "check the data directory against the database (every artifact's size and sha256, "
               "every succeeded job's files), print what is wrong and exit: 0 when nothing is");
  app.set_config("--config", "", "read these flags from a TOML file (key = value, long names; "
                 "the command line wins)");
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error
  CLI11_PARSE(app, argc, argv);
  if (heartbeat >= lease_ttl) {
    std::fprintf(stderr, "restyled: --heartbeat-interval must be shorter than --lease-ttl\n");
    return 2;
  }
  if (absl::StatusOr<restyle::server::StoreKind> kind =
          restyle::server::StoreKindOf(o.database_url);
      !kind.ok()) {
    std::fprintf(stderr, "restyled: %s\n", std::string(kind.status().message()).c_str());
    return 2;
  }
  o.scheduler.lease_ttl = Seconds(lease_ttl);
  o.scheduler.heartbeat_interval = Seconds(heartbeat);
  o.shutdown_grace = Seconds(grace);
  o.drain_delay = Seconds(drain);
  if (absl::Status s = restyle::InitLogging({.program = "restyled", .level = log_level}); !s.ok()) {
    std::fprintf(stderr, "restyled: %s\n", std::string(s.message()).c_str());
    return 2;
  }

  if (check) return CheckDataDir({.database_url = o.database_url, .data_dir = o.data_dir});

  absl::StatusOr<std::unique_ptr<restyle::server::Server>> server =
      restyle::server::Server::Create(o);
  if (!server.ok()) {
    spdlog::error("cannot start: {}", restyle::StatusText(server.status()));
    return 1;
  }
  restyle::server::Server* s = server->get();
  restyle::WatchTerminationSignals([s](int signal, int count) {
    spdlog::info("{} received", signal == SIGTERM ? "SIGTERM" : "SIGINT");
    if (count == 1) {
      std::thread([s] { s->Shutdown(); }).detach();
    } else {
      spdlog::warn("second signal: exiting now");
      std::_Exit(1);
    }
  });
  (*server)->Wait();
  return 0;
}
