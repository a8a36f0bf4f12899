#include "client/format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/time.h"
#include "google/protobuf/util/json_util.h"

namespace restyle::client {

std::string HumanDuration(absl::Duration d) {
  const double s = absl::ToDoubleSeconds(d);
  if (s < 0) return "0s";
  if (s < 10) return absl::StrFormat("%.1fs", s);
  const int64_t t = static_cast<int64_t>(std::llround(s));
  if (t < 60) return absl::StrCat(t, "s");
  if (t < 3600) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%dh%02dm", t / 3600, (t % 3600) / 60);
}

std::string Age(const google::protobuf::Timestamp& t, absl::Time now) {
  if (t.seconds() == 0 && t.nanos() == 0) return "";
  const int64_t s = absl::ToInt64Seconds(now - FromProtoTime(t));
  if (s < 120) return absl::StrCat(std::max<int64_t>(s, 0), "s");
  if (s < 7200) return absl::StrCat(s / 60, "m");
  if (s < 2 * 86400) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  return v < 10 ? absl::StrFormat("%.1f %s", v, units[u]) : absl::StrFormat("%.0f %s", v, units[u]);
}

std::string StateName(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_QUEUED: return "queued";
    case v1::JOB_STATE_RUNNING: return "running";
    case v1::JOB_STATE_CANCELLING: return "cancelling";
    case v1::JOB_STATE_SUCCEEDED: return "succeeded";
    case v1::JOB_STATE_FAILED: return "failed";
    case v1::JOB_STATE_CANCELLED: return "cancelled";
    default: return "unknown";
  }
}

std::string StageName(v1::JobStage stage) {
  switch (stage) {
    case v1::JOB_STAGE_LOADING: return "loading";
    case v1::JOB_STAGE_TRAINING_MAPPER: return "training mapper";
    case v1::JOB_STAGE_FINE_TUNING_GENERATOR: return "fine-tuning generator";
    case v1::JOB_STAGE_EXPORTING: return "exporting";
    default: return "";
  }
}

std::string Activity(const v1::Job& job) {
  const v1::JobProgress& p = job.progress();
  switch (job.state()) {
    case v1::JOB_STATE_QUEUED:
      return job.queue_position() > 0 ? absl::StrCat("queued #", job.queue_position()) : "queued";
    case v1::JOB_STATE_RUNNING:
    case v1::JOB_STATE_CANCELLING: {
      std::string s = StateName(job.state());
      if (p.stage() == v1::JOB_STAGE_TRAINING_MAPPER || p.stage() == v1::JOB_STAGE_FINE_TUNING_GENERATOR) {
        absl::StrAppend(&s, ", stage ", p.stage() == v1::JOB_STAGE_TRAINING_MAPPER ? 1 : 2, " ",
                        p.step(), "/", p.total());
      } else if (p.stage() != v1::JOB_STAGE_UNSPECIFIED) {
        absl::StrAppend(&s, ", ", StageName(p.stage()));
      }
      return s;
    }
    default:
      return StateName(job.state());
  }
}

int StageNumber(const v1::JobProgress& p, int stages) {
  return p.stage() == v1::JOB_STAGE_TRAINING_MAPPER ? 1 : stages;
}

std::string ProgressLine(const v1::JobProgress& p, int stages, int bar_width, const std::string& timing) {
  const bool mapper = p.stage() == v1::JOB_STAGE_TRAINING_MAPPER;
  std::string line = absl::StrFormat("stage %d/%d %-9s", StageNumber(p, stages), stages,
                                     mapper ? "mapper" : "generator");
  if (bar_width > 0) {
    const double f = p.total() > 0 ? static_cast<double>(p.step()) / p.total() : 0;
    const int filled = static_cast<int>(std::lround(f * bar_width));
    absl::StrAppend(&line, " [", std::string(filled, '#'), std::string(bar_width - filled, '.'), "]");
  }
  absl::StrAppend(&line, absl::StrFormat(" %4d/%d", p.step(), p.total()));
  const auto loss = p.losses().find(mapper ? "total" : "loss");
  if (loss != p.losses().end()) absl::StrAppend(&line, absl::StrFormat("  loss %.4f", loss->second));
  if (p.images_per_second() > 0) {
    absl::StrAppend(&line, absl::StrFormat("  %.0f img/s", p.images_per_second()));
  }
  if (!timing.empty()) absl::StrAppend(&line, "  ", timing);
  return line;
}

std::string WorkerEta(const v1::JobProgress& p, int stages) {
  if (!p.has_eta()) return "";
  return absl::StrCat(StageNumber(p, stages) < stages ? "job ETA " : "ETA ",
                      HumanDuration(FromProtoDuration(p.eta())));
}

std::string Outcome(const v1::Job& job) {
  std::string s = absl::StrCat(job.name(), " ", StateName(job.state()));
  if (job.has_start_time() && job.has_end_time()) {
    absl::StrAppend(&s, " in ",
                    HumanDuration(FromProtoTime(job.end_time()) - FromProtoTime(job.start_time())));
  }
  if (job.state() == v1::JOB_STATE_SUCCEEDED) {
    const v1::QualityReport& q = job.result().quality();
    absl::StrAppend(&s, ": ", job.result().generator(),
                    absl::StrFormat(" (target similarity %.3f -> %.3f, diversity %.3f -> %.3f)",
                                    q.source().target_similarity(), q.adapted().target_similarity(),
                                    q.source().diversity(), q.adapted().diversity()));
    if (q.has_judge()) {
      absl::StrAppend(&s, absl::StrFormat("; judged \"%s\" %.0f%% -> %.0f%%, content kept %.0f%%",
                                          q.judge().target_style(),
                                          100 * q.judge().source_style_rate(),
                                          100 * q.judge().adapted_style_rate(),
                                          100 * q.judge().content_kept()));
    }
  } else if (job.has_error() && !job.error().reason().empty()) {
    absl::StrAppend(&s, ": ", job.error().reason(), ": ", job.error().message());
  }
  return s;
}

namespace {

void Field(std::string* out, const std::string& key, const std::string& value) {
  if (value.empty()) return;
  absl::StrAppend(out, absl::StrFormat("%-17s %s\n", key + ":", value));
}

std::string Time(const google::protobuf::Timestamp& t, absl::Time now) {
  if (t.seconds() == 0) return "";
  return absl::StrCat(absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", FromProtoTime(t), absl::UTCTimeZone()),
                      " (", Age(t, now), " ago)");
}

}  // namespace

std::string DescribeJob(const v1::Job& job, absl::Time now) {
  std::string out;
  const v1::JobSpec& spec = job.spec();
  Field(&out, "Name", job.name());
  Field(&out, "State", Activity(job));
  Field(&out, "Source", absl::StrCat(spec.source_generator(), " (\"", spec.source_text(), "\")"));
  Field(&out, "Target", absl::StrCat("\"", spec.target_text(), "\""));
  Field(&out, "Method", spec.method() == v1::METHOD_NADA ? "NADA" : "IPL");
  if (spec.has_seed()) Field(&out, "Seed", std::to_string(spec.seed()));
  if (spec.priority() != 0) Field(&out, "Priority", std::to_string(spec.priority()));
  const std::string settings = JsonLine(spec.settings());
  if (settings != "{}") Field(&out, "Settings", settings);
  if (job.state() == v1::JOB_STATE_QUEUED && job.has_queue_eta()) {
    Field(&out, "Queue ETA", HumanDuration(FromProtoDuration(job.queue_eta())));
  }
  Field(&out, "Worker", job.worker());
  Field(&out, "Attempt", job.attempt() > 0 ? absl::StrCat(job.attempt(), " (", job.failed_attempts(),
                                                         " failed, at most ", job.max_attempts(), ")")
                                           : "");
  if (job.progress().total() > 0 && (job.state() == v1::JOB_STATE_RUNNING ||
                                     job.state() == v1::JOB_STATE_CANCELLING)) {
    const int stages = spec.method() == v1::METHOD_NADA ? 1 : 2;
    Field(&out, "Progress", ProgressLine(job.progress(), stages, 20, WorkerEta(job.progress(), stages)));
  }
  Field(&out, "Latest preview", job.progress().latest_preview());
  Field(&out, "Created", Time(job.create_time(), now));
  Field(&out, "Started", Time(job.start_time(), now));
  Field(&out, "Ended", Time(job.end_time(), now));
  if (job.state() == v1::JOB_STATE_SUCCEEDED) {
    const v1::JobResult& r = job.result();
    const v1::QualityReport& q = r.quality();
    Field(&out, "Generator", r.generator().empty() ? "(deleted)" : r.generator());
    Field(&out, "Quality",
          absl::StrFormat("target similarity %.3f -> %.3f, diversity %.3f -> %.3f (%d samples)",
                          q.source().target_similarity(), q.adapted().target_similarity(),
                          q.source().diversity(), q.adapted().diversity(), q.samples()));
    if (q.has_judge()) {
      const v1::JudgeScores& j = q.judge();
      Field(&out, "Judge",
            absl::StrFormat("\"%s\" %.0f%% -> %.0f%%, content kept %.0f%%, content entropy "
                            "%.2f -> %.2f bits (the toy world's judge)",
                            j.target_style(), 100 * j.source_style_rate(),
                            100 * j.adapted_style_rate(), 100 * j.content_kept(),
                            j.source_content_entropy_bits(), j.adapted_content_entropy_bits()));
    }
    Field(&out, "Stages",
          absl::StrCat("mapper ", r.stage1().steps(), " steps in ",
                       HumanDuration(FromProtoDuration(r.stage1().duration())),
                       r.stage1_resumed() ? " (resumed)" : "", ", generator ", r.stage2().steps(),
                       " steps in ", HumanDuration(FromProtoDuration(r.stage2().duration()))));
    Field(&out, "Samples", r.samples());
    absl::StrAppend(&out, "Artifacts:\n");
    for (const v1::Artifact& a : r.artifacts()) {
      absl::StrAppend(&out, absl::StrFormat("  %-62s %10s  %s\n", a.name(), FormatBytes(a.size_bytes()),
                                            a.kind()));
    }
  }
  if (job.has_error() && !job.error().reason().empty()) {
    Field(&out, job.state() == v1::JOB_STATE_QUEUED ? "Last failure" : "Error",
          absl::StrCat(job.error().reason(), ": ", job.error().message()));
  }
  return out;
}

std::string DescribeGenerator(const v1::Generator& g, absl::Time now) {
  std::string out;
  Field(&out, "Name", g.name());
  Field(&out, "Kind", g.kind() == v1::GENERATOR_KIND_SOURCE ? "source" : "adapted");
  Field(&out, "Resolution", absl::StrCat(g.resolution(), "x", g.resolution()));
  Field(&out, "Size", FormatBytes(g.size_bytes()));
  Field(&out, "Digest", g.digest());
  Field(&out, "Description", g.description());
  if (g.kind() == v1::GENERATOR_KIND_SOURCE) {
    Field(&out, "Source text", absl::StrCat("\"", g.source_text(), "\""));
    Field(&out, "Ready workers", std::to_string(g.ready_workers()));
  } else {
    const v1::Lineage& l = g.lineage();
    Field(&out, "Source", l.source_generator());
    Field(&out, "Texts", absl::StrCat("\"", l.source_text(), "\" -> \"", l.target_text(), "\""));
    Field(&out, "Method", l.method() == v1::METHOD_NADA ? "NADA" : "IPL");
    Field(&out, "Job", l.job());
    if (l.has_seed()) Field(&out, "Seed", std::to_string(l.seed()));
    const std::string settings = JsonLine(l.settings());
    if (settings != "{}") Field(&out, "Settings", settings);
    Field(&out, "Source digest", l.source_digest());
  }
  Field(&out, "Created", Time(g.create_time(), now));
  return out;
}

std::string JsonLine(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = false;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) return "{}";
  return json;
}

namespace {

// `text` as a JSON string, quotes included.
std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

std::string JsonList(const std::string& key, const std::vector<std::string>& items_json,
                     const std::string& next_page_token) {
  std::string out = absl::StrCat("{", JsonString(key), ":[", absl::StrJoin(items_json, ","));
  absl::StrAppend(&out, "]");
  if (!next_page_token.empty()) absl::StrAppend(&out, ",\"nextPageToken\":", JsonString(next_page_token));
  return out + "}";
}

std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace restyle::client
