#include "tests/integration/service_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "grpc/health/v1/health.grpc.pb.h"


namespace restyle::testing {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

Process::Process(std::string name, std::vector<std::string> argv, std::string log_path)
    : name_(std::move(name)), log_path_(std::move(log_path)) {
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // The child dies with the test, whatever happens to it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (running()) {
    kill(pid_, SIGKILL);
    Wait(absl::Seconds(10));
  }
}

void Process::Signal(int signal) {
  if (pid_ > 0 && !status_) kill(pid_, signal);
}

bool Process::running() {
  if (status_ || pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    status_ = status;
    return false;
  }
  return true;
}

std::optional<int> Process::Wait(absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (running()) {
    if (absl::Now() > until) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return status_;
}

int Process::Stop(absl::Duration grace) {
  Signal(SIGTERM);
  std::optional<int> status = Wait(grace);
  if (!status) {
    ADD_FAILURE() << name_ << " did not stop within " << grace << " of SIGTERM";
    Signal(SIGKILL);
    status = Wait(absl::Seconds(10));
  }
  return status.value_or(-1);
}

std::string Process::Log() const { return ReadAll(log_path_); }

std::string RestyledBinary() { return RESTYLED_BIN; }
bool RunningInCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

int CheckDataDir(const std::string& data_dir, std::string* out) {
  Process check("restyled --check", {RestyledBinary(), "--check", "--data-dir", data_dir},
                data_dir + "/../check.log");
  const std::optional<int> status = check.Wait(absl::Seconds(120));
  *out = check.Log();
  return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

int EnvInt(const char* name, int fallback) {
  int value = fallback;
  const char* text = std::getenv(name);
  if (text != nullptr && !absl::SimpleAtoi(text, &value)) value = fallback;
  return value;
}

std::string WorkerBinary() { return RESTYLE_WORKER_BIN; }
std::string GenerateBinary() { return RESTYLE_GENERATE_BIN; }
std::string CliBinary() { return RESTYLE_CLI_BIN; }
std::string BufBinary() { return fs::exists(RESTYLE_BUF_BIN) ? RESTYLE_BUF_BIN : ""; }

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/restyle_it_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

Front::Front(std::string data_dir, std::vector<std::string> extra, FrontPorts ports,
             std::string name)
    : data_dir_(std::move(data_dir)), extra_(std::move(extra)), ports_(ports), name_(std::move(name)) {
  fs::create_directories(data_dir_);
  Start();
}

Front::~Front() {
  if (process_ && process_->running()) {
    const int status = process_->Stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "restyled ended with status " << status << ":\n" << process_->Log();
  }
}

std::string Front::api_address() const { return absl::StrCat("127.0.0.1:", ports_.api); }
std::string Front::worker_address() const { return absl::StrCat("127.0.0.1:", ports_.worker); }

void Front::Start() {
  const std::string port_file = name_ == "front" ? data_dir_ + "/ports.json"
                                                : absl::StrCat(data_dir_, "/../", name_, ".ports.json");
  fs::remove(port_file);
  std::vector<std::string> argv = {RestyledBinary(),
                                   "--data-dir", data_dir_,
                                   "--host", "127.0.0.1",
                                   "--port", std::to_string(ports_.api),
                                   "--worker-port", std::to_string(ports_.worker),
                                   "--health-port", std::to_string(ports_.health),
                                   "--metrics-port", std::to_string(ports_.metrics),
                                   "--port-file", port_file};
  // The tests' timings, unless `extra` sets them.
  const std::pair<const char*, const char*> timings[] = {
      {"--lease-ttl", "2"}, {"--heartbeat-interval", "0.4"}, {"--shutdown-grace", "2"},
      {"--drain-delay", "0.5"}};
  for (const auto& [flag, value] : timings) {
    if (std::find(extra_.begin(), extra_.end(), flag) == extra_.end()) {
      argv.push_back(flag);
      argv.push_back(value);
    }
  }
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  process_ = std::make_unique<Process>("restyled", argv,
                                       absl::StrCat(data_dir_, "/../", name_, "-", ++starts_, ".log"));
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (!fs::exists(port_file) && process_->running() && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(fs::exists(port_file)) << "restyled did not start:\n" << process_->Log();
  const nlohmann::json ports = nlohmann::json::parse(ReadAll(port_file));
  ports_ = {ports["api"].get<int>(), ports["worker"].get<int>(), ports["health"].get<int>(),
            ports["metrics"].get<int>()};
  api_ = v1::RestyleService::NewStub(
      grpc::CreateChannel(api_address(), grpc::InsecureChannelCredentials()));
}

void Front::Kill() {
  process_->Signal(SIGKILL);
  process_->Wait(absl::Seconds(10));
}

int Front::Terminate() { return process_->Stop(); }

void Front::Restart() { Start(); }

std::unique_ptr<Process> StartWorker(const Front& front, const std::string& name,
                                     std::vector<std::string> extra) {
  return StartWorkerVia(front, front.worker_address(), name, std::move(extra));
}

std::unique_ptr<Process> StartWorkerVia(const Front& front, const std::string& front_address,
                                        const std::string& name, std::vector<std::string> extra) {
  const std::string dir = front.data_dir() + "/../" + name;
  std::vector<std::string> argv = {WorkerBinary(),      "--front",   front_address,
                                   "--work-dir",        dir,
                                   "--id",              name,
                                   "--threads",         "1",
                                   "--poll-wait",       "2",
                                   "--metrics-address", "127.0.0.1:0", "--health-address", "127.0.0.1:0",
                                   "--port-file",       dir + ".ports.json",
                                   // The service's paths on the fastest models; the
                                   // toy world's are exercised by demo_test.
                                   "--embedded-models", "random"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<Process>(name, argv, front.data_dir() + "/../" + name + ".log");
}

int WorkerMetricsPort(const Front& front, const std::string& name) {
  const std::string path = front.data_dir() + "/../" + name + ".ports.json";
  for (int i = 0; i < 200 && !fs::exists(path); ++i) absl::SleepFor(absl::Milliseconds(50));
  if (!fs::exists(path)) return -1;
  return nlohmann::json::parse(ReadAll(path))["metrics"].get<int>();
}

std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[65536];
      for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) response.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

std::unique_ptr<grpc::ClientContext> Ctx(absl::Duration timeout) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return c;
}

v1::AdaptRequest SmallJob(int iterations, const std::string& target) {
  v1::AdaptRequest r;
  v1::JobSpec& s = *r.mutable_spec();
  s.set_source_generator("generators/demo");
  s.set_target_text(target);
  v1::AdaptSettings& a = *s.mutable_settings();
  a.mutable_stage1()->set_iterations(iterations);
  a.mutable_stage1()->set_batch(4);
  a.mutable_stage2()->set_iterations(iterations);
  a.mutable_stage2()->set_auto_layer_batch(2);
  a.set_mean_latent_samples(64);
  a.set_quality_samples(4);
  a.set_grid_samples(4);
  a.set_preview_samples(4);
  a.set_preview_every(2);
  return r;
}

absl::StatusOr<v1::Job> Adapt(Front& front, const v1::AdaptRequest& request) {
  v1::Job job;
  absl::Status s = FromGrpcStatus(front.api().Adapt(Ctx().get(), request, &job));
  if (!s.ok()) return s;
  return job;
}

absl::StatusOr<v1::Job> GetJob(Front& front, const std::string& name) {
  v1::GetJobRequest request;
  request.set_name(name);
  v1::Job job;
  absl::Status s = FromGrpcStatus(front.api().GetJob(Ctx().get(), request, &job));
  if (!s.ok()) return s;
  return job;
}

v1::Job WaitUntil(Front& front, const std::string& name,
                  const std::function<bool(const v1::Job&)>& done, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  v1::Job last;
  while (absl::Now() < until) {
    absl::StatusOr<v1::Job> job = GetJob(front, name);
    if (job.ok()) {
      last = *job;
      if (done(last)) return last;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  ADD_FAILURE() << name << ": condition not met within " << timeout << "; last seen:\n"
                << last.DebugString();
  return last;
}

v1::Job WaitDone(Front& front, const std::string& name, absl::Duration timeout) {
  return WaitUntil(
      front, name,
      [](const v1::Job& j) {
        return j.state() == v1::JOB_STATE_SUCCEEDED || j.state() == v1::JOB_STATE_FAILED ||
               j.state() == v1::JOB_STATE_CANCELLED;
      },
      timeout);
}

int HealthOf(int port, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  auto context = Ctx(absl::Seconds(2));
  const grpc::Status status = stub->Check(context.get(), request, &response);
  return status.ok() ? static_cast<int>(response.status()) : -1;
}

bool WaitHealth(int port, const std::string& service, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (absl::Now() < until) {
    if (HealthOf(port, service) == grpc::health::v1::HealthCheckResponse::SERVING) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

bool WaitServing(Front& front, absl::Duration timeout) {
  return WaitHealth(front.ports().health, "", timeout);
}

std::string ReasonOf(const grpc::Status& status) { return ErrorReason(FromGrpcStatus(status)); }

std::map<std::string, std::string> MetadataOf(const grpc::Status& status) {
  const v1::ErrorDetail d = ErrorDetailOf(FromGrpcStatus(status));
  return {d.metadata().begin(), d.metadata().end()};
}

}  // namespace restyle::testing
