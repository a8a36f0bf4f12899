// The commands of `restyle`, on typed options (cli.cc fills them from the
// command line). Each prints to `out` (results) and `err` (problems), and
// returns an exit code (exit_codes.h).
//
// Thread-safety: one command at a time.
#ifndef RESTYLE_CLIENT_COMMANDS_H_
#define RESTYLE_CLIENT_COMMANDS_H_

#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "client/connection.h"

namespace restyle::client {

struct Output {
  bool json = false;      // -o json: protobuf JSON (a list one document, a stream a line an object)
  bool terminal = false;  // stdout is a terminal
  FILE* out = stdout;
  FILE* err = stderr;
};

struct AdaptCommand {
  std::string source;       // generator id or name
  std::string target;
  std::string source_text;  // "" = the source's own
  std::string method;       // "" | "ipl" | "nada"
  std::optional<int64_t> seed;
  int priority = 0;
  std::optional<absl::Duration> max_queue_time;
  std::optional<absl::Duration> max_run_time;
  std::string request_id;   // "" = a new UUID
  // Settings of the table by key ("stage1.lr", "0.02"), as given.
  std::vector<std::pair<std::string, std::string>> settings;
  bool follow = false;
};
int Adapt(Connection& c, const Output& o, const AdaptCommand& command);

int Watch(Connection& c, const Output& o, const std::string& job, int64_t after_seq);
int Wait(Connection& c, const Output& o, const std::string& job, absl::Duration timeout);
int GetJob(Connection& c, const Output& o, const std::string& job);

struct ListCommand {
  std::vector<std::string> states;  // "queued", "running", ...
  std::string source;
  int limit = 50;
};
int ListJobs(Connection& c, const Output& o, const ListCommand& command);
int CancelJob(Connection& c, const Output& o, const std::string& job);

int ListGenerators(Connection& c, const Output& o, const std::string& kind);
int GetGenerator(Connection& c, const Output& o, const std::string& generator);
int DeleteGenerator(Connection& c, const Output& o, const std::string& generator);

struct GenerateCommand {
  std::string generator;
  std::vector<uint64_t> seeds;
  std::string out_dir;    // one PNG a seed: seed0007.png (and seed0007_source.png)
  std::string grid;       // one PNG of them all
  int columns = 0;        // 0: up to 8
  std::optional<double> truncation;
  bool with_source = false;
  int max_resolution = 0;
};
int Generate(Connection& c, const Output& o, const GenerateCommand& command);

int ListWorkers(Connection& c, const Output& o);
// grpc.health.v1 Check of `service` at the server (any Restyle port with
// health, such as the plaintext health ports): prints the status; exit 0
// only when SERVING (for scripts and container health checks).
int Health(Connection& c, const Output& o, const std::string& service);

// Prints `restyle: <what went wrong>` about a call to `service` and returns
// its exit code.
int Fail(const Connection& c, const Output& o, const absl::Status& status,
         absl::string_view service = v1::RestyleService::service_full_name());

}  // namespace restyle::client

#endif  // RESTYLE_CLIENT_COMMANDS_H_
