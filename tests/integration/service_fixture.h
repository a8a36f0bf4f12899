// Real restyled and restyle-worker processes for the integration tests: on
// loopback, on ports the OS picks, in a temporary directory, stopped when the
// test ends (and killed with it if the test process dies), with helpers to
// call the public API.
#ifndef RESTYLE_TESTS_INTEGRATION_SERVICE_FIXTURE_H_
#define RESTYLE_TESTS_INTEGRATION_SERVICE_FIXTURE_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "restyle/v1/restyle_service.grpc.pb.h"

namespace restyle::testing {

// A child process with its output in a log file.
class Process {
 public:
  Process(std::string name, std::vector<std::string> argv, std::string log_path);
  ~Process();  // SIGKILL if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void Signal(int signal);
  // Waits up to `timeout` for the exit; the exit status, or nullopt.
  std::optional<int> Wait(absl::Duration timeout);
  // SIGTERM, then SIGKILL after `grace`; the exit status.
  int Stop(absl::Duration grace = absl::Seconds(15));
  bool running();
  const std::string& log_path() const { return log_path_; }
  pid_t pid() const { return pid_; }
  std::string Log() const;

 private:
  std::string name_;
  std::string log_path_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// The binaries under test (set by CMake).
std::string RestyledBinary();
std::string WorkerBinary();
std::string GenerateBinary();
std::string CliBinary();
// buf (tools/node_modules), "" when not installed.
std::string BufBinary();

// True when $CI is "true": then nothing that can run may be skipped.
bool RunningInCi();

// `restyled --check` on a data directory: its exit status (0: every
// artifact whole), its output in `out`.
int CheckDataDir(const std::string& data_dir, std::string* out);

// The integer in environment variable `name`, or `fallback` (a test's size
// knob: RESTYLE_FAULT_ROUNDS, RESTYLE_LOAD_SECONDS, ...).
int EnvInt(const char* name, int fallback);

// A fresh directory under the test temp dir.
std::string FreshDir(const std::string& name);

struct FrontPorts {
  int api = 0;
  int worker = 0;
  int health = 0;
  int metrics = 0;
};

// restyled on a data directory. Reads the ports it bound from its port file.
class Front {
 public:
  // `extra` flags are added to the defaults (fast leases for tests: a lease
  // of 2 s, heartbeats every 0.4 s; `extra` may set others).
  // `name` tells apart fronts that share a data directory (replicas on one
  // database): each has its own port file and log, "<name>-N.log" beside
  // the data directory.
  Front(std::string data_dir, std::vector<std::string> extra = {}, FrontPorts ports = {},
        std::string name = "front");
  ~Front();

  const FrontPorts& ports() const { return ports_; }
  std::string api_address() const;
  std::string worker_address() const;
  Process& process() { return *process_; }
  v1::RestyleService::Stub& api() { return *api_; }
  const std::string& data_dir() const { return data_dir_; }
  // Kill -9 / SIGTERM; Restart starts it again on the same ports and data.
  void Kill();
  int Terminate();
  void Restart();

 private:
  void Start();

  std::string data_dir_;
  std::vector<std::string> extra_;
  FrontPorts ports_;
  std::string name_;
  std::unique_ptr<Process> process_;
  std::unique_ptr<v1::RestyleService::Stub> api_;
  int starts_ = 0;
};

// restyle-worker on the demo models, one thread.
std::unique_ptr<Process> StartWorker(const Front& front, const std::string& name,
                                     std::vector<std::string> extra = {});
// The same, reaching the front at `front_address` (a proxy in between).
std::unique_ptr<Process> StartWorkerVia(const Front& front, const std::string& front_address,
                                        const std::string& name, std::vector<std::string> extra = {});

// The /metrics port of worker `name` (its port file), -1 when it has none.
int WorkerMetricsPort(const Front& front, const std::string& name);
// The body of http://127.0.0.1:PORT/PATH ("" when the call fails).
std::string HttpGet(int port, const std::string& path);

// A context with a deadline.
std::unique_ptr<grpc::ClientContext> Ctx(absl::Duration timeout = absl::Seconds(10));

// A demo job of `iterations` steps per stage.
v1::AdaptRequest SmallJob(int iterations = 4, const std::string& target = "ukiyo-e");

absl::StatusOr<v1::Job> Adapt(Front& front, const v1::AdaptRequest& request);
absl::StatusOr<v1::Job> GetJob(Front& front, const std::string& name);
// Polls GetJob until `done(job)` or the timeout; the last job seen.
v1::Job WaitUntil(Front& front, const std::string& name,
                  const std::function<bool(const v1::Job&)>& done,
                  absl::Duration timeout = absl::Seconds(60));
v1::Job WaitDone(Front& front, const std::string& name, absl::Duration timeout = absl::Seconds(60));
// What grpc.health.v1 on 127.0.0.1:PORT says of `service` (a
// HealthCheckResponse status: 1 SERVING, 2 NOT_SERVING), -1 when the call
// fails (no server, unknown service).
int HealthOf(int port, const std::string& service);
// Waits until it says SERVING.
bool WaitHealth(int port, const std::string& service, absl::Duration timeout);
// Waits until the front's health says SERVING (a worker is ready).
bool WaitServing(Front& front, absl::Duration timeout = absl::Seconds(30));

// The reason in a failed call's ErrorDetail ("" when none).
std::string ReasonOf(const grpc::Status& status);
std::map<std::string, std::string> MetadataOf(const grpc::Status& status);

}  // namespace restyle::testing

#endif  // RESTYLE_TESTS_INTEGRATION_SERVICE_FIXTURE_H_
