#include "client/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/args.h"
#include "client/commands.h"
#include "client/connection.h"
#include "client/exit_codes.h"
#include "common/files.h"
#include "common/job_spec.h"
#include "common/status.h"
#include "worker/engine/adapt_job/settings.h"

namespace restyle::client {
namespace {

// The front's limits on requests (server/validate.h and validate.cc), checked
// here too so that a bad value is refused before any call.
constexpr int64_t kMaxPriority = 1000;
constexpr int64_t kMaxSeedsPerCall = 1024;
constexpr int64_t kMaxResolution = 16384;
constexpr int64_t kMaxInt = std::numeric_limits<int>::max();

// The top-level options that take a value, as typed ("--server", "-o").
std::vector<std::string> ValueOptions(const CLI::App& app) {
  std::vector<std::string> out;
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_items_expected_min() == 0) continue;
    for (const std::string& name : option->get_lnames()) out.push_back("--" + name);
    for (const std::string& name : option->get_snames()) out.push_back("-" + name);
  }
  return out;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"restyle: adapt image generators to a domain named in text, follow the jobs, and "
               "draw images from the results."};
  app.footer(std::string("\n") + kExitCodesHelp +
             "\nThe server: --server or $RESTYLE_SERVER; a token: --token-file or $RESTYLE_TOKEN.");
  app.require_subcommand(1);
  app.fallthrough();
  ConnectionOptions connection;
  std::string token_file, output = "text", timeout_text = "30s";
  app.add_option("--server", connection.server, "restyled's API address, host:port")
      ->envname("RESTYLE_SERVER")->capture_default_str();
  app.add_option("--tls-ca", connection.tls_ca_file, "PEM CA bundle: talk TLS to the server")
      ->check(CLI::ExistingFile);
  app.add_option("--token-file", token_file, "file holding the bearer token (else $RESTYLE_TOKEN)")
      ->check(CLI::ExistingFile);
  app.add_option("--timeout", timeout_text, "deadline of each call (90s, 2m)")->capture_default_str();
  app.add_option("-o,--output", output,
                 "text, or json: protobuf JSON (lists: one document; streams: one object a line)")
      ->check(CLI::IsMember({"text", "json"}))->capture_default_str();

  // --- adapt ---------------------------------------------------------------------
  AdaptCommand adapt;
  std::string seed_text, priority_text = "0", max_queue_text, max_run_text;
  CLI::App* adapt_cmd = app.add_subcommand("adapt", "create an adaptation job (and follow it)");
  adapt_cmd->add_option("--source", adapt.source, "the source generator (restyle generators)")->required();
  adapt_cmd->add_option("--target", adapt.target, "the target domain, e.g. \"ukiyo-e\"")->required();
  adapt_cmd->add_option("--source-text", adapt.source_text,
                        "the source domain's class word [default: the source's own, e.g. photo]");
  adapt_cmd->add_option("--method", adapt.method, "ipl (the default) or nada")
      ->check(CLI::IsMember({"ipl", "nada"}));
  adapt_cmd->add_option("--seed", seed_text, "one seed for the job: stage 1 N, stage 2 N+1, samples N+2");
  adapt_cmd->add_option("--priority", priority_text, "higher runs first, in [-1000, 1000]")
      ->capture_default_str();
  adapt_cmd->add_option("--max-queue-time", max_queue_text, "fail the job when no worker took it by then");
  adapt_cmd->add_option("--max-run-time", max_run_text, "fail a run that takes longer");
  adapt_cmd->add_option("--request-id", adapt.request_id, "idempotency key [default: a new UUID]");
  adapt_cmd->add_flag("-f,--follow", adapt.follow, "follow the job to its end (Ctrl-C detaches)");
  // Every request setting of the engine's table, with restyle-train's name and help.
  for (const engine::JobSetting* s : RequestSettings()) {
    const std::string key = s->key;
    const std::string group = "Settings (" + s->section + ")";
    if (s->kind == engine::SettingKind::kBool) {
      adapt_cmd
          ->add_flag_function(
              "--" + s->flag + ",!--no-" + s->flag,
              [&adapt, key](int64_t n) { adapt.settings.emplace_back(key, n > 0 ? "true" : "false"); },
              engine::SettingHelp(*s))
          ->group(group);
    } else {
      adapt_cmd
          ->add_option_function<std::string>(
              "--" + s->flag, [&adapt, key](const std::string& v) { adapt.settings.emplace_back(key, v); },
              engine::SettingHelp(*s))
          ->type_name(engine::SettingValueName(*s))
          ->group(group);
    }
  }

  // --- jobs ----------------------------------------------------------------------
  std::string job, after_seq_text = "0";
  CLI::App* watch_cmd = app.add_subcommand("watch", "follow a job's progress to its end (Ctrl-C detaches)");
  watch_cmd->add_option("job", job, "jobs/ID or ID")->required();
  watch_cmd->add_option("--after-seq", after_seq_text, "show only the events after this one (>= 0)");
  std::string wait_text = "1h";
  CLI::App* wait_cmd = app.add_subcommand("wait", "wait until a job ends (exit code: its outcome)");
  wait_cmd->add_option("job", job, "jobs/ID or ID")->required();
  wait_cmd->add_option("--timeout", wait_text, "give up after this long (exit code 5)")->capture_default_str();
  CLI::App* get_cmd = app.add_subcommand("get", "show a job");
  get_cmd->add_option("job", job, "jobs/ID or ID")->required();
  ListCommand list;
  std::string limit_text = std::to_string(list.limit);
  CLI::App* list_cmd = app.add_subcommand("list", "list jobs, newest first");
  list_cmd->add_option("--state", list.states, "only these states (repeat)");
  list_cmd->add_option("--source", list.source, "only jobs of this source generator");
  list_cmd->add_option("--limit", limit_text, "at most this many (>= 1)")->capture_default_str();
  CLI::App* cancel_cmd = app.add_subcommand("cancel", "cancel a job (a running one stops after its step)");
  cancel_cmd->add_option("job", job, "jobs/ID or ID")->required();

  // --- generators ---------------------------------------------------------------------
  std::string generator, kind;
  CLI::App* generators_cmd = app.add_subcommand("generators", "list source and adapted generators");
  generators_cmd->add_option("--kind", kind, "source or adapted")->check(CLI::IsMember({"source", "adapted"}));
  CLI::App* generator_cmd = app.add_subcommand("generator", "show a generator and its lineage");
  generator_cmd->add_option("generator", generator, "generators/ID or ID")->required();
  CLI::App* delete_cmd = app.add_subcommand("delete", "delete an adapted generator (and its job's files)");
  delete_cmd->add_option("generator", generator, "generators/ID or ID")->required();
  GenerateCommand generate;
  std::string seeds_text = "0-7", columns_text, truncation_text, max_resolution_text;
  CLI::App* generate_cmd = app.add_subcommand("generate", "draw images by seed");
  generate_cmd->add_option("generator", generate.generator, "generators/ID or ID")->required();
  generate_cmd->add_option("--seeds", seeds_text,
                            "0-15, 3, 1,5,9: at most 1024 (each image depends on its seed alone)")
      ->capture_default_str();
  generate_cmd->add_option("--out", generate.out_dir,
                           "write seedNNNN.png files in this directory (made if missing; its parent "
                           "must exist)");
  generate_cmd->add_option("--grid", generate.grid,
                           "write all of them as one PNG grid, in a directory that exists");
  generate_cmd->add_option("--columns", columns_text, "grid columns, in [1, 1024] [default: up to 8]");
  generate_cmd->add_option("--truncation", truncation_text, "in [0, 1] [default: the job's own, or 0.7]");
  generate_cmd->add_flag("--with-source", generate.with_source,
                         "also the source generator's image of each seed (above it in the grid)");
  generate_cmd->add_option("--max-resolution", max_resolution_text,
                           "downscale images larger than this many pixels a side, in [0, 16384] "
                           "[default: 0, none]");
  CLI::App* workers_cmd = app.add_subcommand("workers", "list the connected workers");
  std::string health_service;
  CLI::App* health_cmd = app.add_subcommand(
      "health", "a health port's status (--server HOST:PORT; exit 0 only when SERVING)");
  health_cmd->add_option("--service", health_service,
                         "the service to ask about (\"\": the whole server; the front's health port "
                         "also knows restyle.worker.v1.WorkerService, a worker's liveness and models)");

  // An unknown command is said as one (CLI11 would say "A subcommand is
  // required"), with the nearest commands.
  std::vector<std::string> commands;
  for (const CLI::App* command : app.get_subcommands([](const CLI::App*) { return true; })) {
    commands.push_back(command->get_name());
  }
  if (std::optional<std::string> word =
          FirstWord(std::vector<std::string>(argv + std::min(argc, 1), argv + argc), ValueOptions(app));
      word && std::find(commands.begin(), commands.end(), *word) == commands.end()) {
    std::fprintf(stderr, "restyle: %s\n(restyle --help)\n", UnknownCommandMessage(*word, commands).c_str());
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_name() == "RequiredError" && app.get_subcommands().empty()) {  // no command at all
      std::fprintf(stderr, "restyle: a command is required: %s\n(restyle --help)\n",
                   absl::StrJoin(commands, ", ").c_str());
      return kExitUsage;
    }
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }

  Output o;
  o.json = output == "json";
  o.terminal = isatty(STDOUT_FILENO) == 1;
  auto usage = [&](const std::string& message) {
    std::fprintf(stderr, "restyle: %s\n(restyle --help, or restyle COMMAND --help)\n", message.c_str());
    return kExitUsage;
  };
  absl::StatusOr<absl::Duration> timeout = ParseDurationFlag("--timeout", timeout_text);
  if (!timeout.ok()) return usage(std::string(timeout.status().message()));
  connection.timeout = *timeout;
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = ReadFileToString(token_file);
    if (!token.ok()) return usage(std::string(token.status().message()));
    connection.token = std::string(absl::StripAsciiWhitespace(*token));
  } else if (const char* env = std::getenv("RESTYLE_TOKEN")) {
    connection.token = env;
  }
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Create(connection);
  if (!c.ok()) return usage(StatusText(c.status()));
  Connection& conn = **c;

  if (adapt_cmd->parsed()) {
    if (!seed_text.empty()) {
      absl::StatusOr<int64_t> seed = ParseWholeFlag("--seed", seed_text, 0);
      if (!seed.ok()) return usage(std::string(seed.status().message()));
      adapt.seed = *seed;
    }
    absl::StatusOr<int64_t> priority = ParseWholeFlag("--priority", priority_text, -kMaxPriority, kMaxPriority);
    if (!priority.ok()) return usage(std::string(priority.status().message()));
    adapt.priority = static_cast<int>(*priority);
    for (auto [text, target] : {std::pair{&max_queue_text, &adapt.max_queue_time},
                                std::pair{&max_run_text, &adapt.max_run_time}}) {
      if (text->empty()) continue;
      absl::StatusOr<absl::Duration> d =
          ParseDurationFlag(target == &adapt.max_queue_time ? "--max-queue-time" : "--max-run-time", *text);
      if (!d.ok()) return usage(std::string(d.status().message()));
      *target = *d;
    }
    return Adapt(conn, o, adapt);
  }
  if (watch_cmd->parsed()) {
    absl::StatusOr<int64_t> after_seq = ParseWholeFlag("--after-seq", after_seq_text, 0);
    if (!after_seq.ok()) return usage(std::string(after_seq.status().message()));
    return Watch(conn, o, job, *after_seq);
  }
  if (wait_cmd->parsed()) {
    absl::StatusOr<absl::Duration> d = ParseDurationFlag("--timeout", wait_text);
    if (!d.ok()) return usage(std::string(d.status().message()));
    return Wait(conn, o, job, *d);
  }
  if (get_cmd->parsed()) return GetJob(conn, o, job);
  if (list_cmd->parsed()) {
    absl::StatusOr<int64_t> limit = ParseWholeFlag("--limit", limit_text, 1, kMaxInt);
    if (!limit.ok()) return usage(std::string(limit.status().message()));
    list.limit = static_cast<int>(*limit);
    return ListJobs(conn, o, list);
  }
  if (cancel_cmd->parsed()) return CancelJob(conn, o, job);
  if (generators_cmd->parsed()) return ListGenerators(conn, o, kind);
  if (generator_cmd->parsed()) return GetGenerator(conn, o, generator);
  if (delete_cmd->parsed()) return DeleteGenerator(conn, o, generator);
  if (generate_cmd->parsed()) {
    absl::StatusOr<std::vector<uint64_t>> seeds = ParseSeedsFlag("--seeds", seeds_text, kMaxSeedsPerCall);
    if (!seeds.ok()) return usage(std::string(seeds.status().message()));
    generate.seeds = *std::move(seeds);
    if (!truncation_text.empty()) {
      absl::StatusOr<double> truncation = ParseNumberFlag("--truncation", truncation_text, 0, 1);
      if (!truncation.ok()) return usage(std::string(truncation.status().message()));
      generate.truncation = *truncation;
    }
    if (!columns_text.empty()) {
      absl::StatusOr<int64_t> columns = ParseWholeFlag("--columns", columns_text, 1, kMaxSeedsPerCall);
      if (!columns.ok()) return usage(std::string(columns.status().message()));
      generate.columns = static_cast<int>(*columns);
    }
    if (!max_resolution_text.empty()) {
      absl::StatusOr<int64_t> max_resolution =
          ParseWholeFlag("--max-resolution", max_resolution_text, 0, kMaxResolution);
      if (!max_resolution.ok()) return usage(std::string(max_resolution.status().message()));
      generate.max_resolution = static_cast<int>(*max_resolution);
    }
    if (generate.out_dir.empty() && generate.grid.empty() && !o.json) {
      return usage("generate: --out DIR or --grid FILE (or -o json) says where the images go");
    }
    return Generate(conn, o, generate);
  }
  if (workers_cmd->parsed()) return ListWorkers(conn, o);
  if (health_cmd->parsed()) return Health(conn, o, health_service);
  return usage("no command");
}

}  // namespace restyle::client
