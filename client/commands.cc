#include "client/commands.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/args.h"
#include "client/exit_codes.h"
#include "client/follow.h"
#include "client/format.h"
#include "client/images.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/names.h"
#include "common/job_spec.h"
#include "common/status.h"
#include "common/time.h"
#include "worker/engine/adapt_job/settings.h"

namespace restyle::client {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<v1::Job> FetchJob(Connection& c, const std::string& job) {
  v1::GetJobRequest request;
  RESTYLE_ASSIGN_OR_RETURN(*request.mutable_name(), ResourceName(job, kJobs));
  v1::Job response;
  RESTYLE_RETURN_IF_ERROR(c.Call([&](grpc::ClientContext* ctx) { return c.api().GetJob(ctx, request, &response); }));
  return response;
}

absl::StatusOr<v1::Generator> FetchGenerator(Connection& c, const std::string& name) {
  v1::GetGeneratorRequest request;
  RESTYLE_ASSIGN_OR_RETURN(*request.mutable_name(), ResourceName(name, kGenerators));
  v1::Generator response;
  RESTYLE_RETURN_IF_ERROR(
      c.Call([&](grpc::ClientContext* ctx) { return c.api().GetGenerator(ctx, request, &response); }));
  return response;
}

absl::StatusOr<v1::JobState> ParseState(const std::string& name) {
  for (int s = v1::JOB_STATE_QUEUED; s <= v1::JOB_STATE_CANCELLED; ++s) {
    if (StateName(static_cast<v1::JobState>(s)) == absl::AsciiStrToLower(name)) {
      return static_cast<v1::JobState>(s);
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--state ", name, ": one of queued, running, cancelling, succeeded, failed, cancelled"));
}

// The images of one Generate call, in order.
absl::StatusOr<std::vector<v1::GenerateResponse>> Draw(Connection& c, v1::GenerateRequest request,
                                                       const Output& o) {
  // A minute, and a second per image on top.
  std::unique_ptr<grpc::ClientContext> context =
      c.Context(absl::Seconds(60) + absl::Seconds(request.seeds_size()));
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      c.api().Generate(context.get(), request);
  std::vector<v1::GenerateResponse> images;
  v1::GenerateResponse image;
  while (reader->Read(&image)) {
    if (o.json) std::fprintf(o.out, "%s\n", JsonLine(image).c_str());
    images.push_back(image);
  }
  RESTYLE_RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  return images;
}

// A message about a request field ("spec.settings.stage1.lr must be > 0")
// or a setting key ("stage1.lr needs a finite number") as one about the
// flag of `restyle adapt` that sets it.
absl::Status AboutFlags(const absl::Status& status) {
  std::string message(status.message());
  const std::pair<const char*, const char*> fields[] = {
      {"spec.source_generator", "--source"}, {"spec.target_text", "--target"},
      {"spec.source_text", "--source-text"}, {"spec.method", "--method"},
      {"spec.seed", "--seed"},               {"spec.priority", "--priority"},
      {"spec.max_queue_time", "--max-queue-time"}, {"spec.max_run_time", "--max-run-time"},
      {"request_id", "--request-id"}};
  std::string field = ErrorDetailOf(status).metadata().count("field")
                          ? ErrorDetailOf(status).metadata().at("field")
                          : "";
  std::string flag;
  for (const auto& [f, name] : fields) {
    if (field == f) flag = name;
  }
  std::string key = field.rfind("spec.settings.", 0) == 0 ? field.substr(14) : "";
  if (field.empty()) {  // a local parse error names the key first
    key = message.substr(0, message.find(' '));
    field = key;
  }
  std::string rest = message.rfind(field, 0) == 0 ? message.substr(field.size()) : "";
  if (const engine::JobSetting* s = key.empty() ? nullptr : engine::FindJobSetting(key)) {
    flag = "--" + s->flag;
    // "needs a finite number, got "nan"": and the range it takes.
    const size_t got = rest.find(", got ");
    if (!s->range.empty() && rest.rfind(" needs ", 0) == 0 && got != std::string::npos) {
      rest.insert(got, " " + s->range);
    }
  }
  if (flag.empty() || message.rfind(field, 0) != 0) return status;
  return WithErrorDetail(absl::Status(status.code(), flag + rest), ErrorDetailOf(status));
}

// A --source error said about the flag.
absl::Status AboutSource(const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat("--source: ", status.message()));
}

}  // namespace

int Fail(const Connection& c, const Output& o, const absl::Status& status, absl::string_view service) {
  std::fprintf(o.err, "restyle: %s\n", c.Explain(status, service).c_str());
  return ExitCodeOfFailure(status);
}

int Adapt(Connection& c, const Output& o, const AdaptCommand& command) {
  v1::AdaptRequest request;
  v1::JobSpec& spec = *request.mutable_spec();
  absl::StatusOr<std::string> source = ResourceName(command.source, kGenerators);
  if (!source.ok()) return Fail(c, o, AboutSource(source.status()));
  spec.set_source_generator(*source);
  spec.set_target_text(command.target);
  spec.set_source_text(command.source_text);
  if (command.method == "nada") spec.set_method(v1::METHOD_NADA);
  if (command.method == "ipl") spec.set_method(v1::METHOD_IPL);
  if (command.seed) spec.set_seed(*command.seed);
  spec.set_priority(command.priority);
  if (command.max_queue_time) *spec.mutable_max_queue_time() = ToProtoDuration(*command.max_queue_time);
  if (command.max_run_time) *spec.mutable_max_run_time() = ToProtoDuration(*command.max_run_time);
  for (const auto& [key, text] : command.settings) {
    absl::Status s;
    try {
      s = SetAdaptSetting(*spec.mutable_settings(), key, text);
    } catch (const std::out_of_range&) {
      // SetAdaptSetting throws (std::stoll) for a negative value of an
      // unsigned setting, which the table stores wrapped ("--stage1-seed -1").
      const engine::JobSetting* setting = engine::FindJobSetting(key);
      s = absl::InvalidArgumentError(absl::StrCat(key, " must be a whole number ",
                                                  setting != nullptr ? setting->range : "", ", got ", text));
    }
    if (!s.ok()) return Fail(c, o, AboutFlags(s));
  }
  // Every setting's range, as the front checks it, before the job exists.
  if (absl::StatusOr<engine::JobOptions> options = JobOptionsFromSpec(spec); !options.ok()) {
    return Fail(c, o, AboutFlags(options.status()));
  }
  // The same request id on every try: a retry never makes a second job.
  request.set_request_id(command.request_id.empty() ? RandomUuid() : command.request_id);
  v1::Job job;
  absl::Status status;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  for (absl::Duration backoff = absl::Milliseconds(250);; backoff = std::min(backoff * 2, absl::Seconds(4))) {
    status = c.Call([&](grpc::ClientContext* ctx) { return c.api().Adapt(ctx, request, &job); });
    if (status.code() != absl::StatusCode::kUnavailable || absl::Now() + backoff > give_up) break;
    absl::SleepFor(backoff);
  }
  if (!status.ok()) return Fail(c, o, AboutFlags(status));
  if (o.json) {
    std::fprintf(o.out, "%s\n", JsonLine(job).c_str());
  } else {
    std::fprintf(o.out, "%s created (%s)\n", job.name().c_str(), Activity(job).c_str());
  }
  std::fflush(o.out);
  if (!command.follow) return kExitOk;
  return Follow(c, job.name(), {.json = o.json, .terminal = o.terminal, .after_seq = 0,
                                .out = o.out, .err = o.err});
}

int Watch(Connection& c, const Output& o, const std::string& job, int64_t after_seq) {
  absl::StatusOr<std::string> name = ResourceName(job, kJobs);
  if (!name.ok()) return Fail(c, o, name.status());
  return Follow(c, *name, {.json = o.json, .terminal = o.terminal, .after_seq = after_seq,
                                  .out = o.out, .err = o.err});
}

int Wait(Connection& c, const Output& o, const std::string& job, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  v1::WaitJobRequest request;
  absl::StatusOr<std::string> name = ResourceName(job, kJobs);
  if (!name.ok()) return Fail(c, o, name.status());
  request.set_name(*name);
  v1::Job result;
  while (true) {
    const absl::Duration left = std::min(until - absl::Now(), absl::Hours(1));
    *request.mutable_timeout() = ToProtoDuration(std::max(left, absl::Milliseconds(1)));
    absl::Status s = c.Call([&](grpc::ClientContext* ctx) { return c.api().WaitJob(ctx, request, &result); },
                            left + absl::Seconds(10));
    if (!s.ok()) return Fail(c, o, s);
    const bool done = result.state() == v1::JOB_STATE_SUCCEEDED || result.state() == v1::JOB_STATE_FAILED ||
                      result.state() == v1::JOB_STATE_CANCELLED;
    if (done || absl::Now() >= until) break;
  }
  if (o.json) {
    std::fprintf(o.out, "%s\n", JsonLine(result).c_str());
  } else {
    std::fprintf(o.out, "%s\n", Outcome(result).c_str());
  }
  const bool done = result.state() == v1::JOB_STATE_SUCCEEDED || result.state() == v1::JOB_STATE_FAILED ||
                    result.state() == v1::JOB_STATE_CANCELLED;
  if (!done) {
    if (!o.json) std::fprintf(o.err, "restyle: %s is still %s after %s\n", result.name().c_str(),
                              Activity(result).c_str(), HumanDuration(timeout).c_str());
    return kExitTimedOut;
  }
  return ExitCodeOfJob(result);
}

int GetJob(Connection& c, const Output& o, const std::string& job) {
  absl::StatusOr<v1::Job> j = FetchJob(c, job);
  if (!j.ok()) return Fail(c, o, j.status());
  std::fprintf(o.out, "%s", o.json ? (JsonLine(*j) + "\n").c_str() : DescribeJob(*j, absl::Now()).c_str());
  return kExitOk;
}

int ListJobs(Connection& c, const Output& o, const ListCommand& command) {
  v1::ListJobsRequest request;
  for (const std::string& name : command.states) {
    absl::StatusOr<v1::JobState> state = ParseState(name);
    if (!state.ok()) return Fail(c, o, state.status());
    request.add_states(*state);
  }
  if (!command.source.empty()) {
    absl::StatusOr<std::string> source = ResourceName(command.source, kGenerators);
    if (!source.ok()) return Fail(c, o, AboutSource(source.status()));
    request.set_source_generator(*source);
  }
  std::vector<std::vector<std::string>> rows = {{"NAME", "STATE", "SOURCE", "TARGET", "METHOD", "AGE"}};
  const absl::Time now = absl::Now();
  v1::ListJobsResponse all;  // -o json: the pages as one response
  int shown = 0;
  do {
    request.set_page_size(std::min(1000, command.limit - shown));
    v1::ListJobsResponse response;
    absl::Status s = c.Call([&](grpc::ClientContext* ctx) { return c.api().ListJobs(ctx, request, &response); });
    if (!s.ok()) return Fail(c, o, s);
    for (const v1::Job& j : response.jobs()) {
      *all.add_jobs() = j;
      rows.push_back({j.name(), Activity(j), j.spec().source_generator(),
                      "\"" + j.spec().target_text() + "\"",
                      j.spec().method() == v1::METHOD_NADA ? "nada" : "ipl", Age(j.create_time(), now)});
      ++shown;
    }
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty() && shown < command.limit);
  if (o.json) {
    // The token of the page after the last job shown, as the API gives it.
    std::fprintf(o.out, "%s\n", JsonList("jobs", all.jobs(), request.page_token()).c_str());
  } else {
    if (shown == 0) {
      std::fprintf(o.out, "No jobs.\n");
    } else {
      std::fputs(Table(rows).c_str(), o.out);
    }
  }
  return kExitOk;
}

int CancelJob(Connection& c, const Output& o, const std::string& job) {
  v1::CancelJobRequest request;
  absl::StatusOr<std::string> name = ResourceName(job, kJobs);
  if (!name.ok()) return Fail(c, o, name.status());
  request.set_name(*name);
  v1::Job response;
  absl::Status s = c.Call([&](grpc::ClientContext* ctx) { return c.api().CancelJob(ctx, request, &response); });
  if (!s.ok()) return Fail(c, o, s);
  if (o.json) {
    std::fprintf(o.out, "%s\n", JsonLine(response).c_str());
  } else {
    std::fprintf(o.out, "%s %s%s\n", response.name().c_str(), StateName(response.state()).c_str(),
                 response.state() == v1::JOB_STATE_CANCELLING ? " (its worker stops after this step)" : "");
  }
  return kExitOk;
}

int ListGenerators(Connection& c, const Output& o, const std::string& kind) {
  v1::ListGeneratorsRequest request;
  if (kind == "source") request.set_kind(v1::GENERATOR_KIND_SOURCE);
  if (kind == "adapted") request.set_kind(v1::GENERATOR_KIND_ADAPTED);
  // The description last and cut to a line's width (`get generators/ID` and
  // -o json show it whole).
  std::vector<std::vector<std::string>> rows = {{"NAME", "KIND", "RESOLUTION", "SIZE", "AGE", "DESCRIPTION"}};
  const absl::Time now = absl::Now();
  v1::ListGeneratorsResponse all;  // -o json: the pages as one response
  do {
    request.set_page_size(1000);
    v1::ListGeneratorsResponse response;
    absl::Status s =
        c.Call([&](grpc::ClientContext* ctx) { return c.api().ListGenerators(ctx, request, &response); });
    if (!s.ok()) return Fail(c, o, s);
    for (const v1::Generator& g : response.generators()) {
      *all.add_generators() = g;
      constexpr size_t kWidth = 60;
      std::string what = g.description();
      if (what.size() > kWidth) {
        size_t cut = kWidth - 3;
        while (cut > 0 && (static_cast<unsigned char>(what[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
        what = what.substr(0, cut) + "...";
      }
      if (g.kind() == v1::GENERATOR_KIND_SOURCE && g.ready_workers() == 0) what += " (no worker now)";
      rows.push_back({g.name(), g.kind() == v1::GENERATOR_KIND_SOURCE ? "source" : "adapted",
                      absl::StrCat(g.resolution()), FormatBytes(g.size_bytes()),
                      Age(g.create_time(), now), what});
    }
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  if (o.json) {
    std::fprintf(o.out, "%s\n", JsonList("generators", all.generators()).c_str());
  } else {
    std::fputs(rows.size() == 1 ? "No generators.\n" : Table(rows).c_str(), o.out);
  }
  return kExitOk;
}

int GetGenerator(Connection& c, const Output& o, const std::string& generator) {
  absl::StatusOr<v1::Generator> g = FetchGenerator(c, generator);
  if (!g.ok()) return Fail(c, o, g.status());
  std::fprintf(o.out, "%s",
               o.json ? (JsonLine(*g) + "\n").c_str() : DescribeGenerator(*g, absl::Now()).c_str());
  return kExitOk;
}

int DeleteGenerator(Connection& c, const Output& o, const std::string& generator) {
  v1::DeleteGeneratorRequest request;
  absl::StatusOr<std::string> name = ResourceName(generator, kGenerators);
  if (!name.ok()) return Fail(c, o, name.status());
  request.set_name(*name);
  v1::DeleteGeneratorResponse response;
  absl::Status s =
      c.Call([&](grpc::ClientContext* ctx) { return c.api().DeleteGenerator(ctx, request, &response); });
  if (!s.ok()) return Fail(c, o, s);
  if (o.json) {
    std::fprintf(o.out, "%s\n", JsonLine(response).c_str());
  } else {
    std::fprintf(o.out, "%s deleted\n", request.name().c_str());
  }
  return kExitOk;
}

int Generate(Connection& c, const Output& o, const GenerateCommand& command) {
  v1::GenerateRequest request;
  absl::StatusOr<std::string> name = ResourceName(command.generator, kGenerators);
  if (!name.ok()) return Fail(c, o, name.status());
  request.set_generator(*name);
  // Where the images go, before any call: files go into directories that
  // exist (only --out's own directory is made, like mkdir).
  if (!command.out_dir.empty()) {
    if (absl::Status s = CheckOutputDirectory("--out", command.out_dir); !s.ok()) return Fail(c, o, s);
  }
  if (!command.grid.empty()) {
    if (absl::Status s = CheckOutputFile("--grid", command.grid); !s.ok()) return Fail(c, o, s);
  }
  for (uint64_t seed : command.seeds) request.add_seeds(seed);
  request.set_max_resolution(command.max_resolution);
  std::string source;
  if (command.truncation) request.set_truncation(*command.truncation);
  if (command.with_source) {
    absl::StatusOr<v1::Generator> g = FetchGenerator(c, command.generator);
    if (!g.ok()) return Fail(c, o, g.status());
    if (g->kind() != v1::GENERATOR_KIND_ADAPTED) {
      return Fail(c, o, absl::InvalidArgumentError(
                            absl::StrCat("--with-source: ", g->name(), " is a source itself")));
    }
    source = g->lineage().source_generator();
    // The source's images take the adapted one's truncation (the job's own
    // unless --truncation), so that each pair differs only by the adaptation.
    const v1::AdaptSettings& s = g->lineage().settings();
    if (!command.truncation) {
      request.set_truncation(s.has_sample_truncation() ? s.sample_truncation() : 0.7);
    }
  }
  absl::StatusOr<std::vector<v1::GenerateResponse>> adapted = Draw(c, request, o);
  if (!adapted.ok()) return Fail(c, o, adapted.status());
  std::vector<v1::GenerateResponse> source_images;
  if (!source.empty()) {
    v1::GenerateRequest from_source = request;
    from_source.set_generator(source);
    absl::StatusOr<std::vector<v1::GenerateResponse>> s = Draw(c, from_source, o);
    if (!s.ok()) return Fail(c, o, s.status());
    source_images = *std::move(s);
  }
  auto write = [&](const std::string& path, const std::string& bytes) -> absl::Status {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
    return absl::OkStatus();
  };
  if (!command.out_dir.empty()) {
    std::error_code ec;
    fs::create_directory(command.out_dir, ec);  // its parent exists (checked above)
    if (ec) {
      return Fail(c, o, absl::PermissionDeniedError(
                            absl::StrCat("cannot make directory ", command.out_dir, ": ", ec.message())));
    }
    for (size_t i = 0; i < adapted->size(); ++i) {
      const std::string base = absl::StrFormat("%s/seed%04d", command.out_dir, (*adapted)[i].seed());
      absl::Status s = write(base + ".png", (*adapted)[i].png());
      if (s.ok() && !source_images.empty()) s = write(base + "_source.png", source_images[i].png());
      if (!s.ok()) return Fail(c, o, s);
    }
    if (!o.json) {
      const size_t n = adapted->size() + source_images.size();
      std::fprintf(o.out, "wrote %zu image%s to %s\n", n, n == 1 ? "" : "s", command.out_dir.c_str());
    }
  }
  if (!command.grid.empty()) {
    std::vector<Rgb> a, s;
    for (const auto* set : {&*adapted, &source_images}) {
      for (const v1::GenerateResponse& r : *set) {
        absl::StatusOr<Rgb> rgb = DecodePng(r.png());
        if (!rgb.ok()) return Fail(c, o, rgb.status());
        (set == &*adapted ? a : s).push_back(*std::move(rgb));
      }
    }
    const int columns = command.columns > 0 ? command.columns : std::min<int>(8, static_cast<int>(a.size()));
    absl::Status st = write(command.grid, EncodePng(Grid(GridTiles(a, s, columns), columns)));
    if (!st.ok()) return Fail(c, o, st);
    if (!o.json) {
      std::fprintf(o.out, "wrote %s (%zu seed%s%s)\n", command.grid.c_str(), a.size(),
                   a.size() == 1 ? "" : "s", s.empty() ? "" : ", source rows above adapted rows");
    }
  }
  return kExitOk;
}

int ListWorkers(Connection& c, const Output& o) {
  v1::ListWorkersResponse response;
  absl::Status s = c.Call([&](grpc::ClientContext* ctx) { return c.api().ListWorkers(ctx, {}, &response); });
  if (!s.ok()) return Fail(c, o, s);
  // The replica each worker talks to, when they talk to more than one.
  std::set<std::string> fronts;
  for (const v1::Worker& w : response.workers()) fronts.insert(w.front());
  const bool by_front = fronts.size() > 1;
  std::vector<std::vector<std::string>> rows = {{"NAME", "DEVICE", "SOURCES", "JOB", "RESIDENT", "HEARTBEAT"}};
  if (by_front) rows[0].push_back("FRONT");
  const absl::Time now = absl::Now();
  if (o.json) {
    std::fprintf(o.out, "%s\n", JsonList("workers", response.workers()).c_str());
    return kExitOk;
  }
  for (const v1::Worker& w : response.workers()) {
    rows.push_back({w.name(), w.device(), absl::StrJoin(w.sources(), ","), w.job().empty() ? "-" : w.job(),
                    std::to_string(w.resident_generators_size()), Age(w.last_heartbeat_time(), now) + " ago"});
    if (by_front) rows.back().push_back(w.front());
  }
  std::fputs(rows.size() == 1 ? "No workers.\n" : Table(rows).c_str(), o.out);
  return kExitOk;
}

int Health(Connection& c, const Output& o, const std::string& service) {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  absl::Status s = c.Call([&](grpc::ClientContext* ctx) { return c.health().Check(ctx, request, &response); });
  if (!s.ok()) return Fail(c, o, s, grpc::health::v1::Health::service_full_name());
  const std::string status = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  std::fprintf(o.out, "%s\n", o.json ? JsonLine(response).c_str() : status.c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? kExitOk : kExitError;
}

}  // namespace restyle::client
