#include "tests/integration/postgres_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace restyle::testing {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The newest /usr/lib/postgresql/<version>/bin with initdb and postgres.
std::string FindBinDir() {
  if (const char* dir = std::getenv("RESTYLE_POSTGRES_BIN_DIR"); dir != nullptr && *dir) return dir;
  std::string best;
  int best_version = -1;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    int version = 0;
    const std::string bin = e.path().string() + "/bin";
    if (absl::SimpleAtoi(e.path().filename().string(), &version) && version > best_version &&
        fs::exists(bin + "/initdb") && fs::exists(bin + "/postgres")) {
      best = bin;
      best_version = version;
    }
  }
  return best;
}

// Who runs initdb and postgres: this process unless it is root.
absl::Status Unprivileged(uid_t* uid, gid_t* gid) {
  *uid = geteuid();
  *gid = getegid();
  if (*uid != 0) return absl::OkStatus();
  std::vector<std::string> names = {"postgres", "nobody"};
  if (const char* user = std::getenv("RESTYLE_POSTGRES_USER"); user != nullptr && *user) {
    names = {user};
  }
  for (const std::string& name : names) {
    if (const passwd* pw = getpwnam(name.c_str()); pw != nullptr && pw->pw_uid != 0) {
      *uid = pw->pw_uid;
      *gid = pw->pw_gid;
      return absl::OkStatus();
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("the tests run as root, which PostgreSQL refuses, and no user ", names.front(),
                   " exists to run it as (set RESTYLE_POSTGRES_USER)"));
}

// Starts argv[0] as uid:gid with stdout and stderr appended to `log`; the
// child gets `death_signal` when this thread ends.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args, const std::string& log, uid_t uid,
                            gid_t gid, int death_signal) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const bool drop = geteuid() != uid;
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int in = open("/dev/null", O_RDONLY);
    if (out < 0 || in < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    close_range(3, ~0U, 0);
    if (drop && (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) _exit(126);
    // After the credentials change, which clears it.
    prctl(PR_SET_PDEATHSIG, death_signal);
    if (getppid() != parent) _exit(1);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// Waits up to `timeout` for `pid` to exit; its wait status, or nullopt.
std::optional<int> WaitFor(pid_t pid, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (true) {
    int status = 0;
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid || (done < 0 && errno == ECHILD)) return status;
    if (absl::Now() >= end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Runs `sql` on a new connection to `url`.
absl::Status RunSql(const std::string& url, const std::string& sql) {
  PGconn* c = PQconnectdb(url.c_str());
  absl::Status status;
  if (PQstatus(c) != CONNECTION_OK) {
    status = absl::UnavailableError(absl::StrCat("connect ", url, ": ", PQerrorMessage(c)));
  } else {
    PQsetNoticeProcessor(
        c, [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
    PGresult* r = PQexec(c, sql.c_str());
    const ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
      status = absl::InternalError(absl::StrCat(sql, ": ", PQresultErrorMessage(r)));
    }
    PQclear(r);
  }
  PQfinish(c);
  return status;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start(const Options& options) {
  const std::string bin_dir = options.bin_dir.empty() ? FindBinDir() : options.bin_dir;
  if (bin_dir.empty() || !fs::exists(bin_dir + "/initdb") || !fs::exists(bin_dir + "/postgres")) {
    return absl::NotFoundError(
        "no PostgreSQL server binaries (/usr/lib/postgresql/<version>/bin/initdb and postgres): "
        "install Debian's postgresql package (make deps), or set RESTYLE_POSTGRES_BIN_DIR");
  }
  uid_t uid = 0;
  gid_t gid = 0;
  if (absl::Status s = Unprivileged(&uid, &gid); !s.ok()) return s;
  // Short (a unix socket's path has ~100 bytes at most) and reachable by
  // the server's user.
  std::string pattern = (fs::temp_directory_path() / "restyle-pg-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", pattern, ": ", strerror(errno)));
  }
  if (chown(pattern.c_str(), uid, gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", pattern, ": ", strerror(errno)));
  }
  std::unique_ptr<PostgresServer> server(new PostgresServer(options, bin_dir, pattern, uid, gid));
  if (absl::Status s = server->InitDb(); !s.ok()) return s;
  if (server->options_.tcp) {
    // A port free now (the OS's pick, released for postgres to take).
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      close(fd);
      return absl::InternalError(absl::StrCat("no free port: ", strerror(errno)));
    }
    server->port_ = ntohs(addr.sin_port);
    close(fd);
  }
  if (absl::Status s = server->Launch(); !s.ok()) return s;
  return server;
}

PostgresServer::~PostgresServer() {
  Stop().IgnoreError();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

absl::Status PostgresServer::InitDb() {
  const std::string log = dir_ + "/initdb.log";
  absl::StatusOr<pid_t> pid =
      Spawn({bin_dir_ + "/initdb", "--pgdata", dir_ + "/data", "--username", "restyle", "--auth",
             "trust", "--encoding", "UTF8", "--no-locale", "--no-sync"},
            log, uid_, gid_, SIGKILL);
  if (!pid.ok()) return pid.status();
  const std::optional<int> status = WaitFor(*pid, options_.start_timeout);
  if (!status) {
    kill(*pid, SIGKILL);
    WaitFor(*pid, absl::Seconds(5));
    return absl::DeadlineExceededError(absl::StrCat(
        "initdb took over ", absl::FormatDuration(options_.start_timeout), ":\n", ReadFile(log)));
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return absl::InternalError(
        absl::StrCat("initdb failed (wait status ", *status, "):\n", ReadFile(log)));
  }
  return absl::OkStatus();
}

absl::Status PostgresServer::Launch() {
  // No TCP (listen_addresses empty): the socket in dir_ alone, so no port is
  // taken. SIGQUIT when this thread dies: an immediate shutdown.
  // With Options::tcp, 127.0.0.1 and the port picked at Start too.
  absl::StatusOr<pid_t> pid =
      Spawn({bin_dir_ + "/postgres", "-D", dir_ + "/data", "-k", dir_, "-p", std::to_string(port_),
             "-c", options_.tcp ? "listen_addresses=127.0.0.1" : "listen_addresses=", "-c",
             "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c",
             "max_connections=100"},
            dir_ + "/postgres.log", uid_, gid_, SIGQUIT);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  // Ready when postmaster.pid (its pid first) ends with the status "ready".
  const absl::Time end = absl::Now() + options_.start_timeout;
  while (true) {
    const std::vector<std::string> lines =
        absl::StrSplit(ReadFile(dir_ + "/data/postmaster.pid"), '\n');
    if (lines.size() >= 8 && lines[0] == std::to_string(pid_) &&
        absl::StripAsciiWhitespace(lines[7]) == "ready") {
      return absl::OkStatus();
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("postgres exited at start (wait status ", status, "):\n", Log()));
    }
    if (absl::Now() >= end) {
      Stop().IgnoreError();
      return absl::DeadlineExceededError(absl::StrCat("postgres was not ready within ",
                                                      absl::FormatDuration(options_.start_timeout),
                                                      ":\n", Log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

absl::Status PostgresServer::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  const pid_t pid = pid_;
  pid_ = -1;
  // SIGINT: fast shutdown (sessions ended, a checkpoint); then SIGQUIT
  // (immediate), then SIGKILL.
  for (const auto& [signal, wait] :
       {std::pair{SIGINT, absl::Seconds(15)}, std::pair{SIGQUIT, absl::Seconds(5)},
        std::pair{SIGKILL, absl::Seconds(5)}}) {
    kill(pid, signal);
    if (WaitFor(pid, wait)) {
      return signal == SIGINT ? absl::OkStatus()
                              : absl::DeadlineExceededError("postgres ignored a fast shutdown");
    }
  }
  return absl::InternalError("postgres survived SIGKILL");
}

absl::Status PostgresServer::Restart() {
  if (absl::Status s = Stop(); !s.ok()) return s;
  return Launch();
}

std::string PostgresServer::Url(const std::string& database) const {
  // The socket's name has the port in it.
  return absl::StrCat("postgresql:///", database, "?host=", dir_,
                      options_.tcp ? absl::StrCat("&port=", port_) : "", "&user=restyle");
}

std::string PostgresServer::TcpUrl(const std::string& database, int port) const {
  return absl::StrCat("postgresql://restyle@127.0.0.1:", port, "/", database);
}

absl::Status PostgresServer::CreateDatabase(const std::string& name) {
  if (absl::Status s = RunSql(Url(), absl::StrCat("DROP DATABASE IF EXISTS ", name)); !s.ok()) {
    return s;
  }
  return RunSql(Url(), absl::StrCat("CREATE DATABASE ", name));
}

absl::Status PostgresServer::Execute(const std::string& database, const std::string& sql) {
  return RunSql(Url(database), sql);
}

std::string PostgresServer::Log() const { return ReadFile(dir_ + "/postgres.log"); }

namespace {

// The binary's shared server; stopped after the last test.
struct Shared {
  bool tried = false;
  absl::Status error;
  std::unique_ptr<PostgresServer> server;
};

Shared& TheShared() {
  static Shared* shared = new Shared;
  return *shared;
}

class SharedPostgresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { TheShared().server.reset(); }
};

[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new SharedPostgresEnvironment);

}  // namespace

absl::StatusOr<PostgresServer*> SharedPostgres() {
  Shared& shared = TheShared();
  if (!shared.tried) {
    shared.tried = true;
    absl::StatusOr<std::unique_ptr<PostgresServer>> server =
        PostgresServer::Start(PostgresServer::Options());
    if (server.ok()) {
      shared.server = *std::move(server);
    } else {
      shared.error = server.status();
    }
  }
  if (!shared.error.ok()) return shared.error;
  return shared.server.get();
}

bool PostgresRequired() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

}  // namespace restyle::testing
