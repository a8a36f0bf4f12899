// restyle-replica-bench: job creates per second and lease throughput of one
// against several `restyled` replicas over one PostgreSQL database (issue 20;
// docs/benchmarks.md#replicated-front).
//
//   build/bench/restyle-replica-bench --rounds 3          # its own PostgreSQL
//   build/bench/restyle-replica-bench --database-url
//   postgresql://me@db/postgres
//
// Per round, for each replica count (1 and 3 by default; the order flips every
// other round), two phases, each on a new database, a new shared data
// directory and freshly started replicas (loopback, ports the OS picks):
//
// - creates: a fake worker announces the source generator (no CLIP model, so
//   it never takes a job), then --clients threads, each with its own channel,
//   client i on replica i mod N, send Adapt (a small valid job, a fresh
//   request_id each) for --duration seconds. Accepted creates per second,
//   latency p50/p99, errors by code; afterwards the store must hold exactly
//   the accepted jobs.
// - leases: --workers fake workers (threads, own channels, worker i on
//   replica i mod N) register with the source and a CLIP model name; --jobs
//   jobs are created (spread over the replicas); then every worker loops
//   PollWork(adaptation, --poll-wait) -> CompleteJob with a non-retryable
//   error, so each job ends FAILED and never comes back. Leases per second
//   from the first lease to the last; afterwards every job must be FAILED with
//   attempt 1 and leased once (violations counted; exit status 1 if any).
//
// One JSON line per measurement on stdout (and appended to --out), the last a
// summary with the medians per replica count and the ratios of the largest
// count to the smallest. Everything started here is stopped on every way out:
// the children die with this process (PR_SET_PDEATHSIG), SIGINT/SIGTERM and
// --timeout end the run early and clean up.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/stats.h"
#include "restyle/v1/restyle_service.grpc.pb.h"
#include "restyle/worker/v1/worker_service.grpc.pb.h"
#ifdef RESTYLE_REPLICA_BENCH_OWN_POSTGRES
#include "tests/integration/postgres_server.h"
#endif

namespace {

using restyle::bench::CodeName;
using restyle::bench::Percentile;

namespace fs = std::filesystem;
namespace v1 = restyle::v1;
namespace wv1 = restyle::worker::v1;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

constexpr char kSource[] = "bench-source";

struct Options {
  std::string build = "build";
  bool build_given = false;
  std::string database_url;
  std::vector<int> replicas = {1, 3};
  int rounds = 3;
  int clients = 16;
  double duration_s = 5;
  int jobs = 300;
  int workers = 12;
  double poll_wait_s = 1;
  double timeout_s = 600;
  std::string out;
  std::vector<std::string> restyled_args;
  bool keep_logs = false;
};

// --- stopping: signals and the overall deadline
// ----------------------------------

std::atomic<bool> g_stop{false};  // SIGINT/SIGTERM or --timeout: wind down
std::atomic<bool> g_interrupted{false};  // by a signal
std::atomic<bool> g_timed_out{false};

// Children alive now, for the last-resort kill.
std::mutex g_children_mu;
std::set<pid_t> g_children;

bool Stopping() { return g_stop.load(); }

// --- small helpers
// ------------------------------------------------------------------------

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Tail(const std::string& text, size_t bytes) {
  return text.size() <= bytes ? text : "..." + text.substr(text.size() - bytes);
}


double Median(std::vector<double> v) { return Percentile(std::move(v), 50); }


std::chrono::system_clock::time_point In(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A channel of its own (no subchannel shared with the other channels of this
// process), so each client or worker has its own connection as separate
// processes would.
std::shared_ptr<grpc::Channel> OwnChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

// --- child processes
// -----------------------------------------------------------------------

// A process of ours: stdout and stderr to `log`, killed with this process
// (the death signal follows the forking thread, which is always main's).
class Child {
 public:
  static absl::StatusOr<std::unique_ptr<Child>> Start(
      const std::vector<std::string>& argv, const std::string& log) {
    std::vector<char*> args;
    for (const std::string& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t parent = getpid();
    std::lock_guard<std::mutex> lock(
        g_children_mu);  // registered before any kill can look
    const pid_t pid = fork();
    if (pid < 0)
      return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none,
                  nullptr);  // ours blocks SIGINT/SIGTERM for sigwait
      const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      const int in = open("/dev/null", O_RDONLY);
      if (out < 0 || in < 0) _exit(126);
      dup2(in, 0);
      dup2(out, 1);
      dup2(out, 2);
      close_range(3, ~0U, 0);
      execv(args[0], args.data());
      _exit(127);
    }
    g_children.insert(pid);
    return std::unique_ptr<Child>(new Child(pid, log));
  }

  ~Child() { Stop(5); }

  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      Forget();
      status_ = status;
      return false;
    }
    return true;
  }

  // One SIGTERM (restyled takes a second one as "exit now").
  void Terminate() {
    if (Running() && !terminated_) {
      terminated_ = true;
      kill(pid_, SIGTERM);
    }
  }

  // SIGTERM (unless sent already), then SIGKILL after `grace` seconds. True
  // when it exited on the SIGTERM with status 0.
  bool Stop(double grace) {
    if (!Running())
      return status_ && WIFEXITED(*status_) && WEXITSTATUS(*status_) == 0;
    Terminate();
    const Clock::time_point until =
        Clock::now() +
        std::chrono::microseconds(static_cast<int64_t>(grace * 1e6));
    while (Clock::now() < until) {
      if (!Running())
        return status_ && WIFEXITED(*status_) && WEXITSTATUS(*status_) == 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    status_ = status;
    Forget();
    return false;
  }

  const std::string& log() const { return log_; }

 private:
  Child(pid_t pid, std::string log) : pid_(pid), log_(std::move(log)) {}
  void Forget() {
    std::lock_guard<std::mutex> lock(g_children_mu);
    g_children.erase(pid_);
    pid_ = -1;
  }

  pid_t pid_;
  std::string log_;
  std::optional<int> status_;
  bool terminated_ = false;
};

// --- the database
// ------------------------------------------------------------------------

// libpq on `url`: runs one statement.
absl::Status RunSql(const std::string& url, const std::string& sql) {
  PGconn* c = PQconnectdb(url.c_str());
  absl::Status status;
  if (PQstatus(c) != CONNECTION_OK) {
    std::string message = PQerrorMessage(c);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    status = absl::UnavailableError(
        absl::StrCat("connecting to the database: ", message));
  } else {
    PQsetNoticeProcessor(
        c, [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK &&
        PQresultStatus(r) != PGRES_TUPLES_OK) {
      status =
          absl::InternalError(absl::StrCat(sql, ": ", PQresultErrorMessage(r)));
    }
    PQclear(r);
  }
  PQfinish(c);
  return status;
}

// `url` (postgresql://[authority]/[db][?params]) with another database.
absl::StatusOr<std::string> WithDatabase(const std::string& url,
                                         const std::string& db) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos || (url.rfind("postgresql://", 0) != 0 &&
                                      url.rfind("postgres://", 0) != 0)) {
    return absl::InvalidArgumentError(
        "--database-url must be a postgresql:// (or postgres://) URL");
  }
  const size_t authority = scheme + 3;
  const size_t query = url.find('?', authority);
  const size_t path = url.find('/', authority);
  const std::string params =
      query == std::string::npos ? "" : url.substr(query);
  const size_t authority_end =
      path != std::string::npos && (query == std::string::npos || path < query)
          ? path
          : (query == std::string::npos ? url.size() : query);
  return absl::StrCat(url.substr(0, authority_end), "/", db, params);
}

// Where the databases of the run are made: a server of our own or the given
// one; each phase gets a new database, dropped after.
class Databases {
 public:
  static absl::StatusOr<std::unique_ptr<Databases>> Open(const Options& o) {
    auto d = std::unique_ptr<Databases>(new Databases);
    if (!o.database_url.empty()) {
      if (absl::StatusOr<std::string> u = WithDatabase(o.database_url, "x");
          !u.ok()) {
        return u.status();
      }
      d->admin_url_ = o.database_url;
    } else {
#ifdef RESTYLE_REPLICA_BENCH_OWN_POSTGRES
      std::fprintf(
          stderr,
          "restyle-replica-bench: starting a PostgreSQL server of its own\n");
      absl::StatusOr<std::unique_ptr<restyle::testing::PostgresServer>> server =
          restyle::testing::PostgresServer::Start({});
      if (!server.ok()) return server.status();
      d->server_ = *std::move(server);
      d->admin_url_ = d->server_->Url("postgres");
#else
      return absl::FailedPreconditionError(
          "built without the tests' PostgreSQL fixture "
          "(RESTYLE_BUILD_TESTS=OFF): give "
          "--database-url");
#endif
    }
    if (absl::Status s = RunSql(d->admin_url_, "SELECT 1"); !s.ok()) return s;
    return d;
  }

  // A new empty database; its URL.
  absl::StatusOr<std::string> Create(const std::string& name) {
    if (absl::Status s =
            RunSql(admin_url_, absl::StrCat("DROP DATABASE IF EXISTS ", name));
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            RunSql(admin_url_, absl::StrCat("CREATE DATABASE ", name));
        !s.ok()) {
      return s;
    }
    return WithDatabase(admin_url_, name);
  }

  void Drop(const std::string& name) {
    absl::Status s =
        RunSql(admin_url_, absl::StrCat("DROP DATABASE IF EXISTS ", name));
    if (!s.ok()) {
      std::fprintf(stderr, "restyle-replica-bench: dropping %s: %s\n",
                   name.c_str(), std::string(s.message()).c_str());
    }
  }

  bool own() const {
#ifdef RESTYLE_REPLICA_BENCH_OWN_POSTGRES
    return server_ != nullptr;
#else
    return false;
#endif
  }

 private:
  Databases() = default;
  std::string admin_url_;
#ifdef RESTYLE_REPLICA_BENCH_OWN_POSTGRES
  std::unique_ptr<restyle::testing::PostgresServer> server_;
#endif
};

// --- replicas
// --------------------------------------------------------------------------------

struct Replica {
  std::unique_ptr<Child> process;
  int api_port = 0;
  int worker_port = 0;
  std::string api() const { return absl::StrCat("127.0.0.1:", api_port); }
  std::string worker() const { return absl::StrCat("127.0.0.1:", worker_port); }
};

// A set of replicas on one database and one data directory; stopped when it
// goes.
class ReplicaSet {
 public:
  static absl::StatusOr<std::unique_ptr<ReplicaSet>> Start(
      const Options& o, const std::string& restyled, int n,
      const std::string& url, const std::string& dir) {
    auto set = std::unique_ptr<ReplicaSet>(new ReplicaSet);
    fs::create_directories(dir + "/data");
    for (int i = 0; i < n; ++i) {
      const std::string port_file = absl::StrCat(dir, "/ports-", i, ".json");
      std::vector<std::string> argv = {restyled,
                                       "--data-dir",
                                       dir + "/data",
                                       "--database-url",
                                       url,
                                       "--host",
                                       "127.0.0.1",
                                       "--port",
                                       "0",
                                       "--worker-port",
                                       "0",
                                       "--health-port",
                                       "0",
                                       "--metrics-port",
                                       "-1",
                                       "--port-file",
                                       port_file,
                                       "--max-queued-jobs",
                                       "100000000",
                                       "--drain-delay",
                                       "0",
                                       "--shutdown-grace",
                                       "2"};
      argv.insert(argv.end(), o.restyled_args.begin(), o.restyled_args.end());
      absl::StatusOr<std::unique_ptr<Child>> child =
          Child::Start(argv, absl::StrCat(dir, "/restyled-", i, ".log"));
      if (!child.ok()) return child.status();
      Replica r;
      r.process = *std::move(child);
      set->replicas_.push_back(std::move(r));
    }
    // Started together, then waited for: each writes its ports when it serves.
    for (int i = 0; i < n; ++i) {
      Replica& r = set->replicas_[i];
      const std::string port_file = absl::StrCat(dir, "/ports-", i, ".json");
      const Clock::time_point until = Clock::now() + std::chrono::seconds(30);
      while (!fs::exists(port_file) && r.process->Running() &&
             Clock::now() < until && !Stopping()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (Stopping())
        return absl::CancelledError("stopped while the replicas started");
      if (!fs::exists(port_file)) {
        return absl::UnavailableError(
            absl::StrCat("restyled ", i, " did not start; its log:\n",
                         Tail(ReadFile(r.process->log()), 3000)));
      }
      const Json ports = Json::parse(ReadFile(port_file));
      r.api_port = ports["api"].get<int>();
      r.worker_port = ports["worker"].get<int>();
    }
    return set;
  }

  ~ReplicaSet() { Stop(); }

  // SIGTERM to all at once, then each waited for; the exits that were not
  // clean.
  int Stop() {
    int unclean = 0;
    for (Replica& r : replicas_) {
      if (r.process) r.process->Terminate();
    }
    for (Replica& r : replicas_) {
      if (r.process && !r.process->Stop(10)) ++unclean;
    }
    replicas_.clear();
    return unclean;
  }

  int size() const { return static_cast<int>(replicas_.size()); }
  const Replica& at(int i) const { return replicas_[i % replicas_.size()]; }

 private:
  ReplicaSet() = default;
  std::vector<Replica> replicas_;
};

// --- the fake worker's and the client's messages
// -----------------------------------------------

wv1::RegisterWorkerRequest Registration(const std::string& id, bool can_adapt) {
  wv1::RegisterWorkerRequest r;
  r.set_worker_id(id);
  r.set_hostname("replica-bench");
  r.set_device("cpu");
  r.set_memory_bytes(int64_t{1} << 30);
  r.set_version("replica-bench");
  wv1::SourceModel& m = *r.add_sources();
  m.set_id(kSource);
  m.set_resolution(256);
  m.set_source_text("photo");
  m.set_description(
      "restyle-replica-bench's stand-in source (no model behind it)");
  m.set_digest(
      "0000000000000000000000000000000000000000000000000000000000000000");
  m.set_size_bytes(1);
  m.set_latent_rows(14);
  // A CLIP model is what makes a worker able to adapt (Scheduler::Register).
  if (can_adapt) r.add_clip_models("ViT-B-32");
  r.set_max_generation_tasks(1);
  r.set_max_generation_batch(1);
  r.set_instance_key(absl::StrCat("replica-bench-", id));
  return r;
}

// A small valid job (tests/integration/service_fixture.cc SmallJob's settings).
v1::AdaptRequest SmallJob(const std::string& request_id) {
  v1::AdaptRequest r;
  v1::JobSpec& s = *r.mutable_spec();
  s.set_source_generator(absl::StrCat("generators/", kSource));
  s.set_target_text("sketch");
  v1::AdaptSettings& a = *s.mutable_settings();
  a.mutable_stage1()->set_iterations(2);
  a.mutable_stage1()->set_batch(4);
  a.mutable_stage2()->set_iterations(2);
  a.mutable_stage2()->set_auto_layer_batch(2);
  a.set_mean_latent_samples(64);
  a.set_quality_samples(4);
  a.set_grid_samples(4);
  a.set_preview_samples(4);
  a.set_preview_every(2);
  r.set_request_id(request_id);
  return r;
}

// Registers; the session the front answered goes to `session` (sent with
// the worker's later calls as metadata "restyle-worker-session").
grpc::Status Register(wv1::WorkerService::Stub* stub,
                      const wv1::RegisterWorkerRequest& request,
                      std::string* session = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(In(10));
  wv1::RegisterWorkerResponse response;
  grpc::Status s = stub->RegisterWorker(&context, request, &response);
  if (s.ok() && session != nullptr) *session = response.session();
  return s;
}

grpc::Status Adapt(v1::RestyleService::Stub* stub,
                   const v1::AdaptRequest& request, v1::Job* job) {
  grpc::ClientContext context;
  context.set_deadline(In(10));
  return stub->Adapt(&context, request, job);
}

// Every job in the store, through `api` (ListJobs, pages of 1,000).
absl::StatusOr<std::vector<v1::Job>> AllJobs(const std::string& api) {
  auto stub = v1::RestyleService::NewStub(OwnChannel(api));
  std::vector<v1::Job> jobs;
  std::string token;
  do {
    v1::ListJobsRequest request;
    request.set_page_size(1000);
    request.set_page_token(token);
    v1::ListJobsResponse response;
    grpc::ClientContext context;
    context.set_deadline(In(60));
    const grpc::Status s = stub->ListJobs(&context, request, &response);
    if (!s.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "ListJobs: ", CodeName(s.error_code()), " ", s.error_message()));
    }
    for (v1::Job& j : *response.mutable_jobs()) jobs.push_back(std::move(j));
    token = response.next_page_token();
  } while (!token.empty());
  return jobs;
}

bool WaitConnected(const std::shared_ptr<grpc::Channel>& channel) {
  return channel->WaitForConnected(In(10));
}

// --- output
// ------------------------------------------------------------------------------------

class Output {
 public:
  explicit Output(const std::string& path) : path_(path) {}
  void Line(const Json& line) {
    const std::string text = line.dump();
    std::printf("%s\n", text.c_str());
    std::fflush(stdout);
    if (!path_.empty()) {
      std::ofstream out(path_, std::ios::app);
      out << text << "\n";
    }
  }

 private:
  std::string path_;
};

// --- phase 1: creates
// ----------------------------------------------------------------------------

struct PhaseContext {
  const Options& o;
  const std::string& restyled;
  Databases& databases;
  std::string tmp;  // the run's temporary directory
  int round;
  int replicas;
};

// A start line every thread waits at.
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

absl::StatusOr<Json> RunCreates(const PhaseContext& p) {
  const std::string db = absl::StrCat("replica_bench_", getpid(), "_r", p.round,
                                      "_n", p.replicas, "_creates");
  absl::StatusOr<std::string> url = p.databases.Create(db);
  if (!url.ok()) return url.status();
  struct DropAtEnd {
    Databases& d;
    std::string name;
    ~DropAtEnd() { d.Drop(name); }
  };
  DropAtEnd drop{p.databases,
                 db};  // after the replicas stopped (declared before them)
  const std::string dir =
      absl::StrCat(p.tmp, "/r", p.round, "-n", p.replicas, "-creates");
  absl::StatusOr<std::unique_ptr<ReplicaSet>> set =
      ReplicaSet::Start(p.o, p.restyled, p.replicas, *url, dir);
  if (!set.ok()) return set.status();
  ReplicaSet& replicas = **set;

  Json line = {{"bench", "replicas"},    {"metric", "creates_per_s"},
               {"replicas", p.replicas}, {"round", p.round},
               {"clients", p.o.clients}, {"duration_s", p.o.duration_s}};

  // The source, announced on every replica (so no create waits for a
  // heartbeat to learn it).
  std::vector<std::shared_ptr<grpc::Channel>> worker_channels;
  for (int i = 0; i < p.replicas; ++i) {
    auto channel = OwnChannel(replicas.at(i).worker());
    auto stub = wv1::WorkerService::NewStub(channel);
    const grpc::Status s = Register(
        stub.get(), Registration(absl::StrCat("announcer-", i), false));
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("registering the source on replica ", i, ": ",
                       CodeName(s.error_code()), " ", s.error_message()));
    }
    worker_channels.push_back(channel);
  }

  struct ClientResult {
    std::vector<double> latencies_ms;
    std::vector<Clock::time_point> accepted_at;
    std::map<std::string, int64_t> errors;
    std::map<std::string, std::string> first_error;
    Clock::time_point last_end{};
  };
  std::vector<ClientResult> results(p.o.clients);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < p.o.clients; ++c) {
    channels.push_back(OwnChannel(replicas.at(c).api()));
    if (!WaitConnected(channels.back())) {
      return absl::UnavailableError(
          absl::StrCat("client ", c, " cannot reach ", replicas.at(c).api()));
    }
  }
  Gate gate;
  Clock::time_point start;
  Clock::time_point stop;
  std::vector<std::thread> threads;
  for (int c = 0; c < p.o.clients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = v1::RestyleService::NewStub(channels[c]);
      ClientResult& r = results[c];
      gate.Wait();
      for (int64_t n = 0; Clock::now() < stop && !Stopping(); ++n) {
        const v1::AdaptRequest request = SmallJob(
            absl::StrCat("r", p.round, "-n", p.replicas, "-c", c, "-", n));
        v1::Job job;
        const Clock::time_point sent = Clock::now();
        const grpc::Status s = Adapt(stub.get(), request, &job);
        r.last_end = Clock::now();
        if (s.ok()) {
          r.latencies_ms.push_back(
              std::chrono::duration<double, std::milli>(r.last_end - sent)
                  .count());
          r.accepted_at.push_back(r.last_end);
        } else {
          const std::string code = CodeName(s.error_code());
          if (r.errors[code]++ == 0) r.first_error[code] = s.error_message();
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
    });
  }
  start = Clock::now();
  stop = start +
         std::chrono::microseconds(static_cast<int64_t>(p.o.duration_s * 1e6));
  gate.Open();
  for (std::thread& t : threads) t.join();
  Clock::time_point end = start;
  std::vector<double> latencies;
  std::map<std::string, int64_t> errors;
  Json first_errors = Json::object();
  std::vector<int64_t> per_replica(p.replicas, 0);
  for (int c = 0; c < p.o.clients; ++c) {
    const ClientResult& r = results[c];
    end = std::max(end, r.last_end);
    latencies.insert(latencies.end(), r.latencies_ms.begin(),
                     r.latencies_ms.end());
    per_replica[c % p.replicas] += static_cast<int64_t>(r.latencies_ms.size());
    for (const auto& [code, n] : r.errors) errors[code] += n;
    for (const auto& [code, message] : r.first_error)
      first_errors[code] = message;
  }
  const double wall = std::chrono::duration<double>(end - start).count();
  const int64_t accepted = static_cast<int64_t>(latencies.size());
  // The rate in the first and the second half of the phase: the queue grows
  // all along, so a create whose cost grows with it shows here.
  int64_t first_half = 0;
  const Clock::time_point middle = start + (end - start) / 2;
  for (const ClientResult& r : results) {
    for (const Clock::time_point t : r.accepted_at) first_half += t < middle;
  }

  // The store holds exactly what was acknowledged.
  absl::StatusOr<std::vector<v1::Job>> jobs = AllJobs(replicas.at(0).api());
  if (!jobs.ok()) return jobs.status();
  const int64_t stored = static_cast<int64_t>(jobs->size());
  const int64_t expected = accepted;

  line["value"] = wall > 0 ? static_cast<double>(accepted) / wall : 0;
  line["accepted"] = accepted;
  line["wall_s"] = wall;
  if (wall > 0) {
    line["per_s_by_half"] = {
        2 * static_cast<double>(first_half) / wall,
        2 * static_cast<double>(accepted - first_half) / wall};
  }
  line["latency_ms"] = {
      {"p50", Percentile(latencies, 50)},
      {"p99", Percentile(latencies, 99)},
      {"max", latencies.empty()
                  ? 0
                  : *std::max_element(latencies.begin(), latencies.end())}};
  line["accepted_per_replica"] = per_replica;
  line["errors"] = errors;
  if (!first_errors.empty()) line["first_error"] = first_errors;
  line["jobs_stored"] = stored;
  line["violations"] = std::llabs(stored - expected);
  line["unclean_exits"] = replicas.Stop();
  return line;
}

// --- phase 2: leases
// ------------------------------------------------------------------------------

absl::StatusOr<Json> RunLeases(const PhaseContext& p,
                               const Clock::time_point deadline) {
  const std::string db = absl::StrCat("replica_bench_", getpid(), "_r", p.round,
                                      "_n", p.replicas, "_leases");
  absl::StatusOr<std::string> url = p.databases.Create(db);
  if (!url.ok()) return url.status();
  struct DropAtEnd {
    Databases& d;
    std::string name;
    ~DropAtEnd() { d.Drop(name); }
  };
  DropAtEnd drop{p.databases, db};
  const std::string dir =
      absl::StrCat(p.tmp, "/r", p.round, "-n", p.replicas, "-leases");
  absl::StatusOr<std::unique_ptr<ReplicaSet>> set =
      ReplicaSet::Start(p.o, p.restyled, p.replicas, *url, dir);
  if (!set.ok()) return set.status();
  ReplicaSet& replicas = **set;
  const int W = p.o.workers;
  const int Q = p.o.jobs;

  // The workers register (each on its replica, so every replica knows the
  // source) before any job exists; they poll only once all jobs are queued.
  struct Lease {
    std::string job;
    int attempt;
    Clock::time_point at;
  };
  struct WorkerResult {
    std::vector<Lease> leases;
    int64_t polls = 0;
    int64_t empty_polls = 0;
    int64_t reregistrations = 0;
    std::map<std::string, int64_t> errors;  // "poll:CODE", "complete:CODE"
    std::map<std::string, std::string> first_error;
  };
  std::vector<WorkerResult> results(W);
  std::vector<std::unique_ptr<wv1::WorkerService::Stub>> stubs;
  std::vector<std::string> sessions(W);  // each written by its worker's thread
  for (int w = 0; w < W; ++w) {
    auto channel = OwnChannel(replicas.at(w).worker());
    if (!WaitConnected(channel)) {
      return absl::UnavailableError(absl::StrCat("worker ", w, " cannot reach ",
                                                 replicas.at(w).worker()));
    }
    stubs.push_back(wv1::WorkerService::NewStub(channel));
    const grpc::Status s =
        Register(stubs.back().get(), Registration(absl::StrCat("bench-w", w), true),
                 &sessions[w]);
    if (!s.ok()) {
      return absl::UnavailableError(absl::StrCat("registering worker ", w, ": ",
                                                 CodeName(s.error_code()), " ",
                                                 s.error_message()));
    }
  }

  // The jobs, job j through replica j mod N, by --clients threads.
  {
    std::atomic<int> next{0};
    std::atomic<int> failed{0};
    std::string first_failure;
    std::mutex mu;
    std::vector<std::thread> creators;
    const int n_creators = std::max(1, std::min(p.o.clients, Q));
    for (int c = 0; c < n_creators; ++c) {
      creators.emplace_back([&] {
        std::vector<std::unique_ptr<v1::RestyleService::Stub>> api;
        for (int i = 0; i < p.replicas; ++i) {
          api.push_back(
              v1::RestyleService::NewStub(OwnChannel(replicas.at(i).api())));
        }
        for (int j = next.fetch_add(1); j < Q && !Stopping();
             j = next.fetch_add(1)) {
          v1::Job job;
          const grpc::Status s =
              Adapt(api[j % p.replicas].get(),
                    SmallJob(absl::StrCat("lease-job-", j)), &job);
          if (!s.ok()) {
            failed.fetch_add(1);
            std::lock_guard<std::mutex> lock(mu);
            if (first_failure.empty()) {
              first_failure = absl::StrCat(
                  "job ", j, " through replica ", j % p.replicas, ": ",
                  CodeName(s.error_code()), " ", s.error_message());
            }
          }
        }
      });
    }
    for (std::thread& t : creators) t.join();
    if (failed.load() > 0) {
      return absl::InternalError(absl::StrCat(
          failed.load(), " of ", Q, " jobs were not created: ", first_failure));
    }
    if (Stopping())
      return absl::CancelledError("stopped while creating the jobs");
  }

  std::atomic<int> completed{0};
  std::atomic<bool> done{false};
  // No lease for this long (a job lost to a failed CompleteJob comes back
  // only after its lease TTL): the phase ends, incomplete.
  constexpr auto kStall = std::chrono::seconds(30);
  std::atomic<int64_t> last_lease_ns{Clock::now().time_since_epoch().count()};
  auto stalled = [&] {
    return Clock::now() -
               Clock::time_point(Clock::duration(last_lease_ns.load())) >
           kStall;
  };
  Gate gate;
  std::vector<std::thread> threads;
  const double wait_s = p.o.poll_wait_s;
  for (int w = 0; w < W; ++w) {
    threads.emplace_back([&, w] {
      wv1::WorkerService::Stub* stub = stubs[w].get();
      WorkerResult& r = results[w];
      const std::string worker = absl::StrCat("workers/bench-w", w);
      auto note = [&r](const std::string& what, const grpc::Status& s) {
        const std::string key =
            absl::StrCat(what, ":", CodeName(s.error_code()));
        if (r.errors[key]++ == 0) r.first_error[key] = s.error_message();
      };
      gate.Wait();
      while (!done.load() && !Stopping() && Clock::now() < deadline &&
             !stalled()) {
        wv1::PollWorkRequest poll;
        poll.set_worker(worker);
        poll.set_lane(wv1::LANE_ADAPTATION);
        poll.mutable_wait()->set_seconds(static_cast<int64_t>(wait_s));
        poll.mutable_wait()->set_nanos(
            static_cast<int32_t>((wait_s - std::floor(wait_s)) * 1e9));
        wv1::PollWorkResponse response;
        grpc::ClientContext context;
        context.set_deadline(In(wait_s + 10));
        context.AddMetadata("restyle-worker-session", sessions[w]);
        const grpc::Status s = stub->PollWork(&context, poll, &response);
        ++r.polls;
        if (!s.ok()) {
          note("poll", s);
          if (s.error_code() ==
              grpc::StatusCode::NOT_FOUND) {  // WORKER_UNKNOWN: as a worker
                                              // does
            ++r.reregistrations;
            Register(stub, Registration(absl::StrCat("bench-w", w), true), &sessions[w]);
          } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          }
          continue;
        }
        if (!response.has_adapt()) {
          ++r.empty_polls;
          continue;
        }
        const wv1::AdaptTask& task = response.adapt();
        r.leases.push_back({task.job(), task.attempt(), Clock::now()});
        last_lease_ns.store(r.leases.back().at.time_since_epoch().count());
        wv1::CompleteJobRequest complete;
        complete.set_worker(worker);
        complete.set_job(task.job());
        complete.set_attempt(task.attempt());
        v1::JobError& error = *complete.mutable_error();
        error.set_code(static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
        error.set_code_name("FAILED_PRECONDITION");
        error.set_reason("BENCH_NOT_RUN");
        error.set_message(
            "restyle-replica-bench leases jobs and does not run them");
        complete.set_retryable(false);
        wv1::CompleteJobResponse completed_job;
        grpc::ClientContext complete_context;
        complete_context.set_deadline(In(30));
        complete_context.AddMetadata("restyle-worker-session", sessions[w]);
        const grpc::Status c =
            stub->CompleteJob(&complete_context, complete, &completed_job);
        if (!c.ok()) {
          note("complete", c);
          continue;
        }
        if (completed.fetch_add(1) + 1 >= Q) done.store(true);
      }
    });
  }
  const Clock::time_point start = Clock::now();
  last_lease_ns.store(start.time_since_epoch().count());
  gate.Open();
  for (std::thread& t : threads) t.join();
  const double phase_s = SecondsSince(start);

  // What the workers saw.
  std::map<std::string, int> lease_count;
  std::vector<Clock::time_point> times;
  std::vector<int64_t> per_replica(p.replicas, 0);
  int64_t polls = 0, empty_polls = 0, reregistrations = 0, leased_again = 0;
  std::map<std::string, int64_t> errors;
  Json first_errors = Json::object();
  for (int w = 0; w < W; ++w) {
    const WorkerResult& r = results[w];
    for (const Lease& l : r.leases) {
      ++lease_count[l.job];
      times.push_back(l.at);
      leased_again += l.attempt != 1;
    }
    per_replica[w % p.replicas] += static_cast<int64_t>(r.leases.size());
    polls += r.polls;
    empty_polls += r.empty_polls;
    reregistrations += r.reregistrations;
    for (const auto& [k, n] : r.errors) errors[k] += n;
    for (const auto& [k, m] : r.first_error) first_errors[k] = m;
  }
  std::sort(times.begin(), times.end());
  const int64_t leases = static_cast<int64_t>(times.size());
  const double span =
      leases >= 2
          ? std::chrono::duration<double>(times.back() - times.front()).count()
          : 0;
  int64_t duplicate_leases = 0;
  for (const auto& [job, n] : lease_count) duplicate_leases += n - 1;

  // What the store says: every job a worker leased is FAILED with attempt 1;
  // one nobody here saw leased is still QUEUED with attempt 0 (the phase
  // ended early: incomplete, not a violation).
  absl::StatusOr<std::vector<v1::Job>> jobs = AllJobs(replicas.at(0).api());
  if (!jobs.ok()) return jobs.status();
  int64_t not_failed = 0, attempt_not_one = 0, leased_unseen = 0,
          not_leased = 0;
  for (const v1::Job& j : *jobs) {
    if (lease_count.count(j.name())) {
      not_failed += j.state() != v1::JOB_STATE_FAILED;
      attempt_not_one += j.attempt() != 1;
    } else if (j.attempt() != 0 || j.state() != v1::JOB_STATE_QUEUED) {
      ++leased_unseen;
    } else {
      ++not_leased;
    }
  }
  const int64_t missing =
      std::max<int64_t>(0, Q - static_cast<int64_t>(jobs->size()));
  const int64_t violations = duplicate_leases + leased_again + attempt_not_one +
                             not_failed + leased_unseen + missing;

  Json line = {{"bench", "replicas"},
               {"metric", "leases_per_s"},
               {"replicas", p.replicas},
               {"round", p.round},
               {"value", span > 0 ? static_cast<double>(leases - 1) / span : 0},
               {"leases", leases},
               {"jobs", Q},
               {"workers", W},
               {"poll_wait_s", p.o.poll_wait_s},
               {"span_s", span},
               {"phase_s", phase_s},
               {"leases_per_replica", per_replica},
               {"polls", polls},
               {"empty_polls", empty_polls},
               {"reregistrations", reregistrations},
               {"errors", errors},
               {"check",
                {{"jobs_in_store", jobs->size()},
                 {"duplicate_leases", duplicate_leases},
                 {"leased_with_attempt_over_1", leased_again},
                 {"attempt_not_1", attempt_not_one},
                 {"not_failed", not_failed},
                 {"changed_without_a_lease_seen", leased_unseen},
                 {"missing", missing},
                 {"not_leased", not_leased}}},
               {"violations", violations}};
  if (!first_errors.empty()) line["first_error"] = first_errors;
  if (!done.load() || not_leased > 0) line["incomplete"] = true;
  line["unclean_exits"] = replicas.Stop();
  return line;
}

// --- the run
// -----------------------------------------------------------------------------------------

std::string FindRestyled(const Options& o) {
  const std::string given = o.build + "/server/restyled";
  if (fs::exists(given) || o.build_given) return given;
  // Not there (run from elsewhere): the build tree this program is in.
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path beside =
        self.parent_path().parent_path() / "server" / "restyled";
    if (fs::exists(beside)) return beside.string();
  }
  return given;
}

int Run(const Options& o) {
  const std::string restyled = FindRestyled(o);
  if (!fs::exists(restyled)) {
    std::fprintf(
        stderr,
        "restyle-replica-bench: no %s (build restyled, or give --build DIR)\n",
        restyled.c_str());
    return 2;
  }
  const Clock::time_point run_start = Clock::now();
  const Clock::time_point deadline =
      run_start +
      std::chrono::microseconds(static_cast<int64_t>(o.timeout_s * 1e6));

  std::string tmp =
      (fs::temp_directory_path() / "restyle-replica-bench-XXXXXX").string();
  if (mkdtemp(tmp.data()) == nullptr) {
    std::fprintf(stderr, "restyle-replica-bench: mkdtemp: %s\n",
                 strerror(errno));
    return 2;
  }
  struct RemoveAtEnd {
    std::string dir;
    bool keep;
    ~RemoveAtEnd() {
      std::error_code ec;
      if (!keep) fs::remove_all(dir, ec);
    }
  } remove_tmp{tmp, o.keep_logs};

  absl::StatusOr<std::unique_ptr<Databases>> databases = Databases::Open(o);
  if (!databases.ok()) {
    std::fprintf(stderr, "restyle-replica-bench: %s\n",
                 std::string(databases.status().message()).c_str());
    return 2;
  }

  Output out(o.out);
  std::map<int, std::vector<double>> creates, leases;
  int64_t violations = 0;
  int failures = 0;
  for (int round = 1; round <= o.rounds && !Stopping(); ++round) {
    std::vector<int> order = o.replicas;
    if (round % 2 == 0)
      std::reverse(order.begin(), order.end());  // drift cancels out
    for (int n : order) {
      if (Stopping()) break;
      PhaseContext p{o, restyled, **databases, tmp, round, n};
      std::fprintf(stderr,
                   "restyle-replica-bench: round %d, %d replica(s): creates\n",
                   round, n);
      absl::StatusOr<Json> c = RunCreates(p);
      if (c.ok()) {
        out.Line(*c);
        creates[n].push_back((*c)["value"].get<double>());
        violations += (*c)["violations"].get<int64_t>();
      } else {
        failures += !Stopping();
        std::fprintf(
            stderr,
            "restyle-replica-bench: round %d, %d replica(s), creates: %s\n",
            round, n, std::string(c.status().message()).c_str());
      }
      if (Stopping()) break;
      std::fprintf(stderr,
                   "restyle-replica-bench: round %d, %d replica(s): leases\n",
                   round, n);
      absl::StatusOr<Json> l = RunLeases(p, deadline);
      if (l.ok()) {
        out.Line(*l);
        violations += (*l)["violations"].get<int64_t>();
        if (l->contains("incomplete")) {
          failures += !Stopping();  // a partial figure is not a measurement
        } else {
          leases[n].push_back((*l)["value"].get<double>());
        }
      } else {
        failures += !Stopping();
        std::fprintf(
            stderr,
            "restyle-replica-bench: round %d, %d replica(s), leases: %s\n",
            round, n, std::string(l.status().message()).c_str());
      }
    }
  }

  Json medians_creates = Json::object(), medians_leases = Json::object();
  for (const auto& [n, v] : creates)
    medians_creates[std::to_string(n)] = Median(v);
  for (const auto& [n, v] : leases)
    medians_leases[std::to_string(n)] = Median(v);
  const int lo = *std::min_element(o.replicas.begin(), o.replicas.end());
  const int hi = *std::max_element(o.replicas.begin(), o.replicas.end());
  auto ratio = [&](const std::map<int, std::vector<double>>& m) -> Json {
    if (!m.count(lo) || !m.count(hi) || Median(m.at(lo)) <= 0) return nullptr;
    return Median(m.at(hi)) / Median(m.at(lo));
  };
  Json summary = {
      {"bench", "replicas"},
      {"metric", "summary"},
      {"rounds", o.rounds},
      {"replica_counts", o.replicas},
      {"clients", o.clients},
      {"duration_s", o.duration_s},
      {"jobs", o.jobs},
      {"workers", o.workers},
      {"poll_wait_s", o.poll_wait_s},
      {"creates_per_s_median", medians_creates},
      {"leases_per_s_median", medians_leases},
      {absl::StrCat("ratio_", hi, "_vs_", lo),
       {{"creates_per_s", ratio(creates)}, {"leases_per_s", ratio(leases)}}},
      {"violations", violations},
      {"failed_phases", failures},
      {"cpus", std::thread::hardware_concurrency()},
      {"postgres", (*databases)->own() ? "own (fsync off)" : "--database-url"},
      {"wall_s", SecondsSince(run_start)}};
  if (g_timed_out.load()) summary["timed_out"] = true;
  if (g_interrupted.load()) summary["interrupted"] = true;
  out.Line(summary);
  if (g_interrupted.load()) return 130;
  if (violations > 0 || failures > 0 || g_timed_out.load()) return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "restyle-replica-bench: job creates/s and lease throughput of one "
      "against several "
      "restyled replicas over one PostgreSQL database; JSON lines"};
  app.add_option("--build", o.build, "the build tree with server/restyled")
      ->capture_default_str();
  app.add_option("--database-url", o.database_url,
                 "an existing PostgreSQL server (postgresql://...; a user that "
                 "may CREATE DATABASE): "
                 "each phase makes and drops a database there (default: start "
                 "one of its own with "
                 "Debian's initdb and postgres in a temporary directory)");
  app.add_option("--replicas", o.replicas, "replica counts to compare (repeat)")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  app.add_option("--rounds", o.rounds, "rounds (each runs every replica count)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--clients", o.clients, "client threads creating jobs")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--duration", o.duration_s, "seconds of creates per phase")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--jobs", o.jobs, "queued jobs the lease phase starts with")
      ->check(CLI::Range(2, 1000000))
      ->capture_default_str();
  app.add_option("--workers", o.workers,
                 "fake worker threads in the lease phase")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--poll-wait", o.poll_wait_s, "seconds each PollWork may wait")
      ->check(CLI::Range(0.01, 30.0))
      ->capture_default_str();
  app.add_option("--timeout", o.timeout_s, "seconds the whole run may take")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  app.add_option("--out", o.out, "also append the JSON lines to this file");
  app.add_option("--restyled-arg", o.restyled_args,
                 "one more argument for every restyled (repeat; e.g. "
                 "--restyled-arg=--log-level=warn)")
      ->allow_extra_args(false);
  app.add_flag("--keep-logs", o.keep_logs,
               "keep the temporary directory with the replicas' logs");
  CLI11_PARSE(app, argc, argv);
  o.build_given = app.count("--build") > 0;

  // SIGINT/SIGTERM go to one thread (sigwait), which winds the run down;
  // children get an empty mask back before exec.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::atomic<bool> finished{false};
  std::thread watchdog([&] {
    const Clock::time_point deadline =
        Clock::now() +
        std::chrono::microseconds(static_cast<int64_t>(o.timeout_s * 1e6));
    Clock::time_point hard = Clock::time_point::max();
    while (!finished.load()) {
      timespec tick{0, 200 * 1000 * 1000};
      const int signal = sigtimedwait(&signals, nullptr, &tick);
      if (signal > 0 && !g_stop.load()) {
        std::fprintf(stderr, "restyle-replica-bench: signal %d: stopping\n",
                     signal);
        g_interrupted = true;
        g_stop = true;
        hard = Clock::now() + std::chrono::seconds(30);
      } else if (signal > 0) {
        hard = Clock::now();  // a second signal: at once
      }
      if (!g_stop.load() && Clock::now() >= deadline) {
        std::fprintf(
            stderr,
            "restyle-replica-bench: --timeout %.0f s reached: stopping\n",
            o.timeout_s);
        g_timed_out = true;
        g_stop = true;
        hard = Clock::now() + std::chrono::seconds(30);
      }
      if (Clock::now() >= hard) {
        // Did not wind down: kill what we started and go (postgres follows
        // by its death signal).
        std::lock_guard<std::mutex> lock(g_children_mu);
        for (pid_t pid : g_children) kill(pid, SIGKILL);
        std::fprintf(stderr,
                     "restyle-replica-bench: did not stop in time; killed\n");
        std::_Exit(3);
      }
    }
  });
  const int rc = Run(o);
  finished = true;
  watchdog.join();
  return rc;
}
