// restyle-train: adapts a StyleGAN2 generator to a text-described domain
// (IPL, or StyleGAN-NADA as the baseline). Parses flags into JobOptions and
// calls the job runner (job.h); everything else lives in the library.
//
//   restyle-train --source G.safetensors --clip ViT-B-32.safetensors[:W] ...
//                 --target "disney" [--source-text photo] [--method ipl|nada|both]
//                 --out DIR [--seed N] [--stage1-iters N] [--stage2-iters N]
//                 [--stage1-batch N] [--stage2-batch N] [--device cpu|cuda]
//                 [--threads N] [--preview-every N] [--quality-samples N]
//                 [--arithmetic fast|fast-transposed|fast-subpixel|reference]
//   restyle-train --demo --out demo-out     (embedded tiny models, IPL and NADA)
//
// Ctrl-C cancels the job after the current step.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <c10/util/Exception.h>

#include "worker/engine/adapt_job/job.h"
#include "worker/engine/common/cpu_allocator.h"
#include "worker/engine/common/error.h"
#include "worker/engine/common/threads.h"

namespace {

using namespace restyle::engine;

std::atomic<bool> g_interrupted{false};

void OnSigint(int) { g_interrupted.store(true); }

constexpr char kUsage[] =
    "usage: restyle-train (--demo | --source G.safetensors --clip CLIP[:weight]...)\n"
    "                     --target TEXT --out DIR [--source-text photo]\n"
    "                     [--method ipl|nada|both] [--seed N] [--stage1-iters N]\n"
    "                     [--stage2-iters N] [--stage1-batch N] [--stage2-batch N]\n"
    "                     [--device cpu|cuda] [--threads N] [--preview-every N]\n"
    "                     [--quality-samples N]\n"
    "                     [--arithmetic fast|fast-transposed|fast-subpixel|reference]\n"
    "                     [--cuda-math tf32|fp32] [--no-cudnn-autotune]\n"
    "                     [--source-precision fp32|bf16] [--selection-precision fp32|bf16]\n"
    "                     [--train-precision fp32|bf16] [--channels-last]\n"
    "  --arithmetic reference runs every generator call in the reference's\n"
    "  per-sample grouped formulation (slower; for auditing the fast default,\n"
    "  which is the same function up to float rounding); fast-transposed is the\n"
    "  fast one with LibTorch's transposed convolution for upsampling, and\n"
    "  fast-subpixel composes each upsampling convolution and its blur into one\n"
    "  ordinary convolution and a pixel shuffle (both meant for CUDA).\n"
    "  On CUDA, --cuda-math fp32 turns TF32 off and --no-cudnn-autotune keeps\n"
    "  cuDNN's algorithm choice fixed (reproducible runs).\n"
    "  --source-precision bf16 makes the frozen source's images (stage 1's\n"
    "  batches, stage 2's source images) with a bfloat16 copy of it,\n"
    "  --selection-precision bf16 runs stage 2's layer selection on a bfloat16\n"
    "  copy of the trained generator (only the chosen layers can change),\n"
    "  --train-precision bf16 runs its images forward and backward on that copy\n"
    "  (float32 master weights, Adam and EMA), and --channels-last keeps\n"
    "  generator activations in NHWC order; all of these are\n"
    "  meant for CUDA (see docs/benchmarks.md) and change results by rounding.\n";

[[noreturn]] void Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "restyle-train: %s\n", error.c_str());
  std::fputs(kUsage, stderr);
  std::exit(2);
}

int64_t ParseInt(const std::string& flag, const std::string& value, int64_t min) {
  try {
    size_t used = 0;
    const long long v = std::stoll(value, &used);
    if (used == value.size() && v >= min) return v;
  } catch (const std::exception&) {
  }
  Usage(flag + " needs an integer >= " + std::to_string(min) + ", got \"" + value + "\"");
}

// fp32 or bf16 for one of the --*-precision flags.
Precision ParsePrecision(const std::string& flag, const std::string& value) {
  if (value == "fp32") return Precision::kFp32;
  if (value == "bf16") return Precision::kBf16;
  Usage(flag + " must be fp32 or bf16");
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

}  // namespace

int main(int argc, char** argv) {
  JobOptions options;
  std::string method = "ipl";
  bool method_given = false, seed_given = false, target_given = false;
  int threads = 0;  // 0: DefaultThreadCount() (1 with --demo)
  int64_t stage1_iters = -1, stage2_iters = -1, stage1_batch = -1, stage2_batch = -1;
  int64_t preview_every = -1, quality_samples = -1;
  uint64_t seed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Usage("missing value for " + a);
      return argv[++i];
    };
    if (a == "--source") options.source_generator = next();
    else if (a == "--clip") options.clips.push_back(ParseClip(next()));
    else if (a == "--target") options.adapt.target_class = next(), target_given = true;
    else if (a == "--source-text") options.adapt.source_class = next();
    else if (a == "--method") method = next(), method_given = true;
    else if (a == "--out") options.out_dir = next();
    else if (a == "--seed") seed = ParseInt(a, next(), 0), seed_given = true;
    else if (a == "--stage1-iters") stage1_iters = ParseInt(a, next(), 1);
    else if (a == "--stage2-iters") stage2_iters = ParseInt(a, next(), 1);
    else if (a == "--stage1-batch") stage1_batch = ParseInt(a, next(), 2);
    else if (a == "--stage2-batch") stage2_batch = ParseInt(a, next(), 1);
    else if (a == "--device") {
      const std::string d = next();
      if (d == "cpu") options.device = JobDevice::kCpu;
      else if (d == "cuda") options.device = JobDevice::kCuda;
      else Usage("--device must be cpu or cuda");
    }
    else if (a == "--cuda-math") {
      const std::string v = next();
      if (v == "tf32") options.cuda_math = CudaMath::kTf32;
      else if (v == "fp32") options.cuda_math = CudaMath::kFp32;
      else Usage("--cuda-math must be tf32 or fp32");
    }
    else if (a == "--no-cudnn-autotune") options.cudnn_autotune = false;
    else if (a == "--source-precision") {
      options.source_precision = ParsePrecision(a, next());
    }
    else if (a == "--selection-precision") {
      options.selection_precision = ParsePrecision(a, next());
    }
    else if (a == "--train-precision") {
      options.train_precision = ParsePrecision(a, next());
    }
    else if (a == "--channels-last") options.adapt.channels_last = true;
    else if (a == "--threads") threads = static_cast<int>(ParseInt(a, next(), 1));
    else if (a == "--preview-every") preview_every = ParseInt(a, next(), 0);
    else if (a == "--quality-samples") quality_samples = ParseInt(a, next(), 2);
    else if (a == "--demo") options.demo = true;
    else if (a == "--arithmetic") {
      const std::string v = next();
      if (v == "reference") {
        options.adapt.conv_mode = options.adapt.frozen_conv_mode = ConvMode::kReference;
      } else if (v == "fast-transposed") {
        options.adapt.conv_mode = options.adapt.frozen_conv_mode = ConvMode::kFusedTransposed;
      } else if (v == "fast-subpixel") {
        options.adapt.conv_mode = options.adapt.frozen_conv_mode = ConvMode::kFusedSubpixel;
      } else if (v != "fast") {
        Usage("--arithmetic must be fast, fast-transposed, fast-subpixel or reference");
      }
    }
    else if (a == "--help" || a == "-h") Usage("");
    else Usage("unknown flag " + a);
  }
  if (options.demo) {
    if (!options.source_generator.empty() || !options.clips.empty()) {
      Usage("--demo runs on the embedded tiny models: drop --source and --clip");
    }
    // Small enough for a couple of minutes on 2 CPU cores.
    if (!target_given) options.adapt.target_class = "disney";
    if (!method_given) method = "both";
    // Tiny models: more threads only add synchronisation (and on a loaded
    // machine OpenMP spinning makes them 10-40x slower).
    if (threads == 0) threads = 1;
    options.adapt.stage1.iterations = 60;
    options.adapt.stage2.iterations = 60;
    options.adapt.stage1.batch = 8;
    options.adapt.stage2.batch = 2;
    options.adapt.mean_latent_samples = 1024;
    options.preview_every = 20;
    options.quality_samples = 32;
  } else {
    if (options.source_generator.empty()) Usage("--source is required (or --demo)");
    if (options.clips.empty()) Usage("--clip is required (or --demo)");
  }
  if (options.adapt.target_class.empty()) Usage("--target is required");
  if (options.out_dir.empty()) Usage("--out is required");
  if (method != "ipl" && method != "nada" && method != "both") {
    Usage("--method must be ipl, nada or both");
  }
  if (seed_given) SetJobSeed(options, seed);
  if (stage1_iters > 0) options.adapt.stage1.iterations = stage1_iters;
  if (stage2_iters > 0) options.adapt.stage2.iterations = stage2_iters;
  if (stage1_batch > 0) options.adapt.stage1.batch = stage1_batch;
  if (stage2_batch > 0) options.adapt.stage2.batch = stage2_batch;
  if (preview_every >= 0) options.preview_every = preview_every;
  if (quality_samples > 0) options.quality_samples = quality_samples;

  std::signal(SIGINT, OnSigint);
  ProgressPrinter printer(::isatty(::fileno(stderr)) != 0);
  JobCallbacks callbacks;
  callbacks.on_progress = [&](const JobProgress& p) { printer.Print(p); };
  callbacks.is_cancelled = [] { return g_interrupted.load(); };
  callbacks.on_log = [&](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };

  try {
    const int in_effect = SetThreadCount(threads);
    InstallCachingCpuAllocator();
    std::fprintf(stderr, "restyle-train: %s, target \"%s\", %d thread%s, out %s\n",
                 options.demo ? "demo models" : options.source_generator.c_str(),
                 options.adapt.target_class.c_str(), in_effect, in_effect == 1 ? "" : "s",
                 options.out_dir.c_str());
    const JobModels models = LoadJobModels(options);
    std::vector<AdaptMethod> methods;
    if (method == "both") methods = {AdaptMethod::kIpl, AdaptMethod::kNada};
    else methods = {ParseMethod(method)};
    std::vector<JobResult> results;
    if (methods.size() == 1) {
      options.adapt.method = methods[0];
      results.push_back(RunJob(options, models, callbacks));
    } else {
      results = RunMethods(options, models, methods, callbacks);
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
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "\nrestyle-train: %s: %s\n", ErrorCodeName(e.code()), e.what());
    return e.code() == ErrorCode::kCancelled ? 130 : 1;
  } catch (const c10::Error& e) {
    // LibTorch's own message, without its C++ backtrace.
    std::fprintf(stderr, "\nrestyle-train: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nrestyle-train: %s\n", e.what());
    return 1;
  }
}
