// restyle-train: adapts a StyleGAN2 generator to a text-described domain
// (IPL, or StyleGAN-NADA as the baseline). Parses flags into JobOptions and
// calls the job runner (job.h); everything else lives in the library.
//
//   restyle-train --source G.safetensors --clip ViT-B-32.safetensors[:W] ...
//                 --target "disney" --out DIR [--method ipl|nada|both]
//                 [--config FILE] [--seed N] [--threads N] [--dry-run]
//                 [--SETTING VALUE]...       (every setting of settings.h)
//   restyle-train --demo --out demo-out     (embedded tiny models, IPL and NADA)
//
// Order of precedence: --demo's defaults, then --config, then the other flags
// in command-line order. Usage errors exit 2, job errors 1, Ctrl-C or
// SIGTERM (which cancel the job after the current step; a second one stops at
// once) 130.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include "worker/engine/adapt_job/job.h"
#include "worker/engine/adapt_job/settings.h"
#include "worker/engine/common/cpu_allocator.h"
#include "worker/engine/common/error.h"
#include "worker/engine/common/parse.h"
#include "worker/engine/common/threads.h"

namespace {

using namespace restyle::engine;

std::atomic<bool> g_interrupted{false};

// First Ctrl-C (or SIGTERM): cancel after the current step, which keeps the
// stage-1 checkpoint of a finished stage 1 for a rerun. Second: stop now.
void OnInterrupt(int) {
  if (g_interrupted.exchange(true)) _exit(130);
  constexpr char kNote[] =
      "\nrestyle-train: cancelling after the current step (Ctrl-C again to stop now)\n";
  const ssize_t ignored = write(STDERR_FILENO, kNote, sizeof(kNote) - 1);
  (void)ignored;
}

constexpr char kUsage[] =
    "usage: restyle-train (--world | --demo | --source G.safetensors --clip CLIP[:weight]...)\n"
    "                     --target TEXT --out DIR [--method ipl|nada|both]\n"
    "                     [--config FILE] [--seed N] [--threads N] [--dry-run]\n"
    "                     [--output text|json]\n"
    "                     [--SETTING VALUE]...\n"
    "\n"
    "  --world            the toy world's trained models (32px scenes, photo ->\n"
    "                     sketch by default; IPL and NADA, judged; tools/world/)\n"
    "  --demo             the embedded tiny random models, a short IPL and NADA\n"
    "                     job (60 + 60 steps; --dry-run shows its settings)\n"
    "  --source FILE      the source generator (tools/convert_stylegan2.py)\n"
    "  --clip FILE[:W]    a CLIP model and its weight; repeat to combine models\n"
    "  --out DIR          output directory (a matching stage-1 checkpoint in it\n"
    "                     is reused)\n"
    "  --method M         ipl, nada, or both on the same seeds (--demo without\n"
    "                     --config: both)\n"
    "  --config FILE      settings from a JSON file, nested or flat by key (a\n"
    "                     job's result.json reruns it); flags override it\n"
    "  --seed N           every seed from one: stage 1 N, stage 2 N+1, samples N+2\n"
    "  --threads N        CPU threads (default $RESTYLE_THREADS or all CPUs)\n"
    "  --arithmetic A     fast|fast-transposed|fast-subpixel|reference: sets\n"
    "                     --conv-mode and --frozen-conv-mode together (reference:\n"
    "                     the reference's per-sample formulation, for auditing;\n"
    "                     fast-*: other upsampling convolutions, meant for CUDA)\n"
    "  --dry-run          check every setting, print them as JSON (the form\n"
    "                     --config reads) and exit without running\n"
    "  --output, -o F     text (default: progress bar or lines on stderr, summary\n"
    "                     on stdout) or json: one JSON object per line on stdout,\n"
    "                     {\"event\": \"progress\"|\"log\"|\"result\"|\"error\", ...}\n"
    "\n"
    "Settings: --flag VALUE or --flag=VALUE; a true|false flag alone means true\n"
    "and --no-flag false. Defaults are the paper's (docs/method.md); bf16 and\n"
    "channels-last paths are meant for CUDA and change results by rounding.\n";

[[noreturn]] void Usage(const std::string& error) {
  if (!error.empty()) {
    std::fprintf(stderr, "restyle-train: %s\n(restyle-train --help lists every flag)\n",
                 error.c_str());
    std::exit(2);
  }
  std::fputs(kUsage, stdout);
  std::string section;
  for (const JobSetting& s : JobSettings()) {
    if (s.key == "method") continue;  // --method above (it also takes "both")
    if (s.section != section) {
      section = s.section;
      std::printf("\n%s:\n", section.c_str());
    }
    std::string head = "  --" + s.flag +
                       (s.kind == SettingKind::kBool ? "[=true|false]" : " " + SettingValueName(s));
    constexpr size_t kColumn = 32;
    head = head.size() < kColumn ? head + std::string(kColumn - head.size(), ' ')
                                 : head + "\n" + std::string(kColumn, ' ');
    std::printf("%s %s\n", head.c_str(), SettingHelp(s).c_str());
  }
  std::exit(0);
}

int64_t ParseInt(const std::string& flag, const std::string& value, int64_t min) {
  int64_t v = 0;
  if (ParseInt64(value, &v) && v >= min) return v;
  Usage(flag + " needs an integer >= " + std::to_string(min) + ", got \"" + value + "\"");
}

// An engine message about `setting` ("stage1.lr must be > 0, got -1") as one
// about its flag ("--stage1-lr must be > 0, got -1").
std::string AboutFlag(const JobSetting& setting, const std::string& message) {
  if (message.rfind(setting.key, 0) == 0) return "--" + setting.flag + message.substr(setting.key.size());
  return "--" + setting.flag + ": " + message;
}

std::string ReadFileOrExit(const std::string& path) {
  std::ifstream in(path);
  if (!in) Usage("--config: cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "path" or "path:weight" (the weight only when the part after the last ':'
// is a positive number).
ClipSpec ParseClip(const std::string& value) {
  ClipSpec spec{value, 1.0};
  const size_t colon = value.rfind(':');
  if (colon != std::string::npos && colon + 1 < value.size()) {
    try {
      size_t used = 0;
      const std::string tail = value.substr(colon + 1);
      const double w = std::stod(tail, &used);
      if (used == tail.size()) {
        if (!(w > 0)) Usage("--clip weight must be > 0 in \"" + value + "\"");
        spec = {value.substr(0, colon), w};
      }
    } catch (const std::invalid_argument&) {
    }
  }
  return spec;
}

std::string FormatSeconds(double s) {
  const long t = static_cast<long>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%ld:%02ld", t / 60, t % 60);
  return buf;
}

// Progress bar on a terminal, plain lines (about 20 per stage) otherwise.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool tty) : tty_(tty) {}

  void Print(const JobProgress& p) {
    const std::string& label = p.label;
    std::string losses;
    for (const auto& [name, value] : p.losses) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), " %s %.4f", name.c_str(), value);
      losses += buf;
    }
    char tail[128];
    std::snprintf(tail, sizeof(tail), " | %.1f img/s | ETA %s", p.images_per_second,
                  FormatSeconds(p.eta_seconds).c_str());
    if (tty_) {
      constexpr int kWidth = 24;
      const int filled = static_cast<int>(kWidth * p.step / std::max<int64_t>(1, p.total));
      std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '.');
      std::fprintf(stderr, "\r\033[K[%s] stage %d [%s] %lld/%lld%s%s", label.c_str(), p.stage,
                   bar.c_str(), static_cast<long long>(p.step), static_cast<long long>(p.total),
                   losses.c_str(), tail);
      if (p.step == p.total) std::fputc('\n', stderr);
    } else {
      const int64_t every = std::max<int64_t>(1, p.total / 20);
      if (p.step % every != 0 && p.step != p.total && p.step != 1) return;
      std::fprintf(stderr, "[%s] stage %d step %lld/%lld%s%s\n", label.c_str(), p.stage,
                   static_cast<long long>(p.step), static_cast<long long>(p.total), losses.c_str(),
                   tail);
    }
    if (!p.preview_path.empty() && !tty_) {
      std::fprintf(stderr, "[%s] preview %s\n", label.c_str(), p.preview_path.c_str());
    }
    std::fflush(stderr);
  }

 private:
  bool tty_;
};

// The "threads" a job's result.json records (0 when `json_text` has none).
int RecordedThreads(const std::string& json_text) {
  try {
    const nlohmann::json j = nlohmann::json::parse(json_text);
    const nlohmann::json& o = j.contains("options") ? j["options"] : j;
    if (o.is_object() && o.contains("threads") && o["threads"].is_number_integer()) {
      return o["threads"].get<int>();
    }
  } catch (const nlohmann::json::exception&) {
  }
  return 0;
}

// --output json: one object per line on stdout, flushed (a pipe reader sees
// every step as it happens).
void EmitJson(const nlohmann::ordered_json& event) {
  std::printf("%s\n", event.dump().c_str());
  std::fflush(stdout);
}

nlohmann::ordered_json ProgressEvent(const JobProgress& p) {
  nlohmann::ordered_json losses = nlohmann::ordered_json::object();
  for (const auto& [name, value] : p.losses) losses[name] = value;
  nlohmann::ordered_json j = {{"event", "progress"}, {"label", p.label}, {"stage", p.stage},
                              {"step", p.step},      {"total", p.total}, {"losses", losses},
                              {"images_per_second", p.images_per_second},
                              {"eta_seconds", p.eta_seconds}};
  if (!p.preview_path.empty()) j["preview"] = p.preview_path;
  return j;
}

nlohmann::ordered_json ResultEvent(const JobResult& r) {
  return {{"event", "result"},
          {"label", r.label},
          {"out_dir", r.out_dir},
          {"seconds", r.total_seconds},
          {"stage1_resumed", r.stage1_resumed},
          {"files",
           {{"generator_delta", r.delta_path},
            {"mappers", r.mapper_paths},
            {"samples", r.samples_path},
            {"previews", r.preview_paths},
            {"quality", r.quality_path},
            {"result", r.result_path}}},
          {"quality", nlohmann::ordered_json::parse(r.quality.ToJson())}};
}

// A failed job: "restyle-train: CODE: message" on stderr, or an error event.
void ReportError(bool json_output, const char* code, const std::string& message) {
  if (json_output) {
    EmitJson({{"event", "error"}, {"code", code}, {"message", message}});
  } else {
    std::fprintf(stderr, "\nrestyle-train: %s: %s\n", code, message.c_str());
  }
}

// The demo job: small enough for a couple of minutes on 2 CPU cores.
void SetDemoDefaults(JobOptions& options) {
  options.adapt.target_class = "disney";
  options.adapt.stage1.iterations = 60;
  options.adapt.stage2.iterations = 60;
  options.adapt.stage1.batch = 8;
  options.adapt.stage2.batch = 2;
  options.adapt.mean_latent_samples = 1024;
  options.preview_every = 20;
  options.quality_samples = 32;
}

// The world's job: its generator is small and far from the target, so stage 2
// runs at 6x the paper's learning rate (docs/world.md: at the paper's rate 100
// steps change nothing the judge sees; at 0.03 both methods collapse).
constexpr int64_t kWorldStage1Iterations = 100;
constexpr int64_t kWorldStage2Iterations = 150;
constexpr double kWorldStage2Lr = 0.01;

// The toy world's job (world/world_models.h): photo -> sketch, IPL and NADA
// on the same seeds, judged; a few minutes on 2 CPU cores.
void SetWorldDefaults(JobOptions& options) {
  options.adapt.target_class = "sketch";
  options.adapt.stage1.iterations = kWorldStage1Iterations;
  options.adapt.stage2.iterations = kWorldStage2Iterations;
  options.adapt.stage2.lr = kWorldStage2Lr;
  options.adapt.stage1.batch = 16;
  options.adapt.stage2.batch = 4;
  options.adapt.mean_latent_samples = 1024;
  options.adapt.sample_truncation = 1.0;
  options.preview_every = 50;
  options.quality_samples = 64;
}

}  // namespace

int main(int argc, char** argv) {
  JobOptions options;
  std::string method;  // "" = options.adapt.method
  bool dry_run = false;
  bool json_output = false;  // --output json: JSON lines on stdout
  int recorded_threads = 0;  // the threads a --config result.json ran with (0: none)
  int threads = 0;  // 0: DefaultThreadCount() (1 with --demo)
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  // --demo and --config set defaults that every other flag overrides,
  // wherever it stands.
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--demo") {
      options.demo = true;
      SetDemoDefaults(options);
      method = "both";
      // Tiny models: more threads only add synchronisation (and on a loaded
      // machine OpenMP spinning makes them 10-40x slower).
      threads = 1;
    }
    if (args[i] == "--world") {
      options.world = true;
      SetWorldDefaults(options);
      method = "both";
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    std::string path;
    if (args[i] == "--config" && i + 1 < args.size()) path = args[i + 1];
    else if (args[i].rfind("--config=", 0) == 0) path = args[i].substr(9);
    else continue;
    method = "";  // the file's method (or ipl), unless --method follows
    try {
      const std::string text = ReadFileOrExit(path);
      ApplyJobSettingsJson(options, text);
      recorded_threads = RecordedThreads(text);
    } catch (const Error& e) {
      Usage("--config " + path + ": " + e.what());
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::optional<std::string> inline_value;
    if (const size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto next = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) Usage("missing value for " + a);
      return args[++i];
    };
    if (a == "--source") options.source_generator = next();
    else if (a == "--clip") options.clips.push_back(ParseClip(next()));
    else if (a == "--out") options.out_dir = next();
    else if (a == "--config") next();  // applied above
    else if (a == "--demo" || a == "--world") continue;  // applied above
    else if (a == "--dry-run") dry_run = true;
    else if (a == "--output" || a == "-o") {
      const std::string v = next();
      if (v != "text" && v != "json") Usage("--output must be text or json");
      json_output = v == "json";
    }
    else if (a == "--help" || a == "-h") Usage("");
    else if (a == "--seed") SetJobSeed(options, ParseInt(a, next(), 0));
    else if (a == "--threads") threads = static_cast<int>(ParseInt(a, next(), 1));
    else if (a == "--method") {
      method = next();
      if (method != "ipl" && method != "nada" && method != "both") {
        Usage("--method must be ipl, nada or both");
      }
    }
    else if (a == "--no-cudnn-autotune") options.cudnn_autotune = false;
    else if (a == "--arithmetic") {
      const std::string v = next();
      ConvMode mode = ConvMode::kAuto;
      if (v == "reference") mode = ConvMode::kReference;
      else if (v == "fast-transposed") mode = ConvMode::kFusedTransposed;
      else if (v == "fast-subpixel") mode = ConvMode::kFusedSubpixel;
      else if (v != "fast") {
        Usage("--arithmetic must be fast, fast-transposed, fast-subpixel or reference");
      }
      options.adapt.conv_mode = options.adapt.frozen_conv_mode = mode;
    }
    else if (a.rfind("--", 0) == 0) {
      const std::string name = a.substr(2);
      const JobSetting* s = FindJobSetting(name);
      std::string value;
      if (s == nullptr && name.rfind("no-", 0) == 0 && !inline_value) {
        s = FindJobSetting(name.substr(3));
        if (s == nullptr || s->flag != name.substr(3) || s->kind != SettingKind::kBool) {
          Usage("unknown flag " + a);
        }
        value = "false";
      } else if (s == nullptr || s->flag != name) {
        Usage("unknown flag " + a);
      } else if (s->kind == SettingKind::kBool && !inline_value) {
        value = "true";
      } else {
        value = next();
      }
      if (s->key == "method") method = "";
      try {
        SetJobSetting(options, s->key, value);
      } catch (const Error& e) {
        Usage(AboutFlag(*s, e.what()));
      }
    }
    else Usage("unexpected argument \"" + a + "\"");
  }
  for (const JobSetting& s : JobSettings()) {
    const std::string problem = SettingProblem(options, s);
    if (!problem.empty()) Usage(AboutFlag(s, problem));
  }
  if (dry_run) {
    std::printf("%s\n", JobSettingsJson(options).c_str());
    if (method == "both") std::fprintf(stderr, "restyle-train: would run ipl, then nada\n");
    return 0;
  }
  if (options.demo && options.world) Usage("--demo and --world exclude each other");
  if (options.demo || options.world) {
    if (!options.source_generator.empty() || !options.clips.empty()) {
      Usage(std::string(options.demo ? "--demo" : "--world") +
            " runs on embedded models: drop --source and --clip");
    }
  } else {
    if (options.source_generator.empty()) Usage("--source is required (or --world / --demo)");
    if (options.clips.empty()) Usage("--clip is required (or --world / --demo)");
  }
  if (options.out_dir.empty()) Usage("--out is required");

  std::signal(SIGINT, OnInterrupt);
  std::signal(SIGTERM, OnInterrupt);
  ProgressPrinter printer(::isatty(::fileno(stderr)) != 0);
  JobCallbacks callbacks;
  callbacks.is_cancelled = [] { return g_interrupted.load(); };
  if (json_output) {
    callbacks.on_progress = [](const JobProgress& p) { EmitJson(ProgressEvent(p)); };
    callbacks.on_log = [](const std::string& line) {
      EmitJson({{"event", "log"}, {"message", line}});
    };
  } else {
    callbacks.on_progress = [&](const JobProgress& p) { printer.Print(p); };
    callbacks.on_log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  }

  try {
    const int in_effect = SetThreadCount(threads);
    InstallCachingCpuAllocator();
    if (!json_output) {
      std::fprintf(stderr, "restyle-train: %s, target \"%s\", %d thread%s, out %s\n",
                   options.world  ? "toy world models"
                   : options.demo ? "demo models"
                                  : options.source_generator.c_str(),
                   options.adapt.target_class.c_str(), in_effect, in_effect == 1 ? "" : "s",
                   options.out_dir.c_str());
    }
    if (recorded_threads > 0 && recorded_threads != in_effect &&
        options.device == JobDevice::kCpu) {
      const auto threads_text = [](int n) {
        return std::to_string(n) + (n == 1 ? " thread" : " threads");
      };
      callbacks.on_log("restyle-train: note: the job in --config ran with " +
                       threads_text(recorded_threads) + ", this run uses " +
                       threads_text(in_effect) +
                       " (--threads): CPU results can differ in the last bits");
    }
    const JobModels models = LoadJobModels(options);
    std::vector<AdaptMethod> methods = {options.adapt.method};
    if (method == "both") methods = {AdaptMethod::kIpl, AdaptMethod::kNada};
    else if (!method.empty()) methods = {ParseMethod(method)};
    std::vector<JobResult> results;
    if (methods.size() == 1) {
      options.adapt.method = methods[0];
      results.push_back(RunJob(options, models, callbacks));
    } else {
      results = RunMethods(options, models, methods, callbacks);
    }
    if (json_output) {
      for (const JobResult& r : results) EmitJson(ResultEvent(r));
      return 0;
    }
    for (const JobResult& r : results) {
      std::printf("\n%s (%.1f s%s)\n", r.label.c_str(), r.total_seconds,
                  r.stage1_resumed ? ", stage 1 resumed from checkpoint" : "");
      if (!r.samples_path.empty()) {
        std::printf("  samples (top source, bottom adapted): %s\n", r.samples_path.c_str());
      }
      std::printf("  generator delta: %s\n", r.delta_path.c_str());
      for (const std::string& path : r.mapper_paths) std::printf("  mapper: %s\n", path.c_str());
      if (!r.preview_paths.empty()) {
        std::printf("  previews: %zu in %s/previews\n", r.preview_paths.size(), r.out_dir.c_str());
      }
      std::printf("  quality report: %s\n  result: %s\n", r.quality_path.c_str(),
                  r.result_path.c_str());
      std::printf("%s", r.quality.ToText().c_str());
    }
    if (results.size() == 2) {
      std::printf("\nIPL vs NADA on the same seeds (weighted over CLIP models):\n%s",
                  SideBySide(results[0].quality, results[1].quality).c_str());
      std::printf("(also in %s/comparison.txt)\n", options.out_dir.c_str());
    }
    const JobResult& first = results.front();
    // restyle-generate sits next to this binary (build tree or install dir).
    const std::string generate =
        (std::filesystem::path(argv[0]).parent_path() / "restyle-generate").string();
    std::printf("\nmore images, by seed: %s --job %s%s --seeds 0-15 --grid %s/more.png "
                "--with-source\n",
                generate.c_str(), first.out_dir.c_str(),
                options.demo || options.world ? "" : (" --source " + options.source_generator).c_str(),
                first.out_dir.c_str());
    return 0;
  } catch (const Error& e) {
    ReportError(json_output, ErrorCodeName(e.code()), e.what());
    return e.code() == ErrorCode::kCancelled ? 130 : 1;
  } catch (const c10::Error& e) {
    // LibTorch's own message, without its C++ backtrace.
    ReportError(json_output, "INTERNAL", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    ReportError(json_output, "INTERNAL", e.what());
    return 1;
  }
}
