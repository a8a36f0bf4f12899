// restyle-worker: flags -> WorkerOptions, then work for the front until
// SIGTERM or SIGINT (a second one exits at once).
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>

#include <spdlog/spdlog.h>

#include "absl/strings/ascii.h"
#include "common/files.h"
#include "common/logging.h"
#include "common/signals.h"
#include "common/status.h"
#include "worker/worker.h"

int main(int argc, char** argv) {
  restyle::worker::WorkerOptions o;
  std::string device = "cpu", cuda_math = "tf32", log_level = "info", token_file;
  bool no_cudnn_autotune = false;
  double poll_wait = 10;
  uint64_t cache_bytes = 0;
  double window_ms = 2;
  std::vector<std::string> job_settings;
  CLI::App app{"restyle-worker: runs Restyle's engine (adaptation jobs, image generation) for a front"};
  app.add_option("--front", o.front.address, "the front's worker port, host:port")->required();
  app.add_option("--models", o.model_dir,
                 "model directory with manifest.json (default: the embedded models, source "
                 "\"demo\")");
  const std::map<std::string, restyle::worker::EmbeddedModels> embedded_names = {
      {"world", restyle::worker::EmbeddedModels::kWorld},
      {"random", restyle::worker::EmbeddedModels::kRandom}};
  app.add_option("--embedded-models", o.embedded_models,
                 "without --models: world (the toy world's trained models) or random (tiny "
                 "random-weight models, fastest, pictures are noise)")
      ->transform(CLI::CheckedTransformer(embedded_names, CLI::ignore_case))
      ->default_str("world");
  app.add_option("--work-dir", o.work_dir, "job outputs and the cache of adapted generators")
      ->required();
  app.add_option("--id", o.worker_id, "worker id (default: <hostname>-<random>)");
  app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--threads", o.threads, "LibTorch threads (0: all CPUs)")->capture_default_str();
  app.add_option("--cuda-math", cuda_math, "CUDA matrix arithmetic: tf32 or fp32")
      ->check(CLI::IsMember({"tf32", "fp32"}))->capture_default_str();
  app.add_flag("--no-cudnn-autotune", no_cudnn_autotune, "reproducible CUDA convolutions");
  app.add_option("--job-setting", job_settings,
                 "KEY=VALUE: a setting of the machine for every job (conv_mode, channels_last, "
                 "source_precision, stage2.selection_precision, stage2.train_precision)");
  app.add_option("--cache-memory", cache_bytes,
                 "adapted generators kept in memory, e.g. 4GiB or 500MB (0: a quarter of the "
                 "host's memory on the CPU, 8GiB on CUDA)")
      ->transform(CLI::AsSizeValue(false))->capture_default_str();
  app.add_option("--max-generation-tasks", o.max_generation_tasks,
                 "generation requests held at once (the worker's queue)")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--max-generation-batch", o.max_generation_batch,
                 "images drawn in one forward at most (0: 8 on the CPU, 32 on CUDA)")
      ->capture_default_str()->check(CLI::Range(0, 1024));
  app.add_option("--generation-window-ms", window_ms,
                 "how long a request waits for others of its generator to batch with (0: never)")
      ->capture_default_str()->check(CLI::Range(0.0, 10000.0));
  app.add_flag("--always-wait-for-company", o.always_wait_for_company,
               "wait the window even at low load (by default a lone request then runs at once)");
  app.add_option("--png-level", o.png_level, "zlib level of the PNGs sent (0-9)")
      ->capture_default_str()->check(CLI::Range(0, 9));
  app.add_option("--encode-threads", o.encode_threads, "threads encoding PNGs (0: half the CPUs)")
      ->capture_default_str()->check(CLI::Range(0, 256));
  app.add_option("--images-per-slot", o.images_per_slot,
                 "images generated between two training steps")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--poll-wait", poll_wait, "seconds a poll waits at the front")
      ->capture_default_str()->check(CLI::Range(0.1, 30.0));
  app.add_option("--metrics-address", o.metrics_address,
                 "serve Prometheus /metrics here (port 0: any free port; \"\": none)")
      ->capture_default_str();
  app.add_option("--health-address", o.health_address,
                 "plaintext gRPC health for probes: liveness, models, \"\" (ready); \"\": none")
      ->capture_default_str();
  app.add_option("--port-file", o.port_file, "write the bound metrics and health ports here as JSON");
  app.add_option("--tls-ca", o.front.tls_ca_file, "PEM CA: TLS to the front")->check(CLI::ExistingFile);
  app.add_option("--tls-cert", o.front.tls_cert_file,
                 "PEM client certificate for a front that asks workers for one "
                 "(restyled --worker-client-ca); with --tls-key")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", o.front.tls_key_file, "PEM private key of --tls-cert")
      ->check(CLI::ExistingFile);
  app.add_option("--token-file", token_file,
                 "file with the worker's bearer token (one of restyled --worker-tokens-file)")
      ->check(CLI::ExistingFile);
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")->capture_default_str();
  app.set_config("--config", "", "read these flags from a TOML file (key = value, long names; "
                 "the command line wins)");
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error
  CLI11_PARSE(app, argc, argv);

  if (absl::Status s = restyle::InitLogging({.program = "restyle-worker", .level = log_level}); !s.ok()) {
    std::fprintf(stderr, "restyle-worker: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  o.device = device == "cuda" ? restyle::engine::JobDevice::kCuda : restyle::engine::JobDevice::kCpu;
  o.cuda_math = cuda_math == "fp32" ? restyle::engine::CudaMath::kFp32 : restyle::engine::CudaMath::kTf32;
  o.cudnn_autotune = !no_cudnn_autotune;
  o.cache_bytes = static_cast<int64_t>(cache_bytes);
  o.generation_window = absl::Microseconds(static_cast<int64_t>(window_ms * 1000));
  o.poll_wait = absl::Milliseconds(static_cast<int64_t>(poll_wait * 1000));
  for (const std::string& kv : job_settings) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "restyle-worker: --job-setting %s: expected KEY=VALUE\n", kv.c_str());
      return 2;
    }
    o.job_settings.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = restyle::ReadFileToString(token_file);
    if (!token.ok()) {
      std::fprintf(stderr, "restyle-worker: %s\n", std::string(token.status().message()).c_str());
      return 2;
    }
    o.front.token = std::string(absl::StripAsciiWhitespace(*token));
  } else if (const char* token = std::getenv("RESTYLE_TOKEN")) {
    o.front.token = token;
  }

  absl::StatusOr<std::unique_ptr<restyle::worker::Worker>> worker = restyle::worker::Worker::Create(o);
  if (!worker.ok()) {
    spdlog::error("cannot start: {}",
                  restyle::StatusText(worker.status()));
    return 1;
  }
  restyle::worker::Worker* w = worker->get();
  restyle::WatchTerminationSignals([w](int signal, int count) {
    spdlog::info("{} received", signal == SIGTERM ? "SIGTERM" : "SIGINT");
    if (count == 1) {
      w->Shutdown();
    } else {
      spdlog::warn("second signal: exiting now");
      std::_Exit(130);
    }
  });
  absl::Status status = (*worker)->Run();
  if (!status.ok()) {
    spdlog::error("{}", restyle::StatusText(status));
    return 1;
  }
  return 0;
}
