// restyle-bench: runs the registered engine benchmarks.
// (--filter: a name substring; a trailing '$' anchors it at the end.)
//
//   restyle-bench [--filter SUBSTRING] [--threads N] [--device cpu|cuda] [--list]
//                 [--profile DIR] [--precision fp32|tf32|bf16] [--cudnn-benchmark]
//                 [--conv fused|fused-transposed|fused-subpixel|reference] [--channels-last]
//                 [--source-precision fp32|bf16] [--selection-precision fp32|bf16]
//                 [--train-precision fp32|bf16] [--no-cuda-kernels]
//
// Each benchmark runs in its own child process (this binary re-executed with
// --run-one NAME), so its peak resident memory is its own; the parent prints
// the child's single JSON line on stdout. Progress goes to stderr.
// --profile DIR: after the timed iterations, one more iteration runs under
// LibTorch's profiler and its trace is written to DIR/<name with / as _>.json
// (Chrome trace format; bench/profile_summary.py ranks the operators). On
// CUDA the profiler is Kineto's with CPU and CUDA activities, so the trace
// also holds every GPU kernel (profile_summary.py ranks GPU time by the
// operator that launched it).
// --precision (CUDA): fp32 (default; TF32 off), tf32 (TF32 matmuls and
// convolutions) or bf16 (autocast to bfloat16 around each timed call).
// --cudnn-benchmark (CUDA): let cuDNN time its algorithms per convolution
// shape and keep the fastest (the first, warm-up call pays for the search).
// --conv: the generator formulation of the adaptation steps (adapt/), instead
// of the trainer's default.
// --channels-last: generator activations in NHWC order (sg2/ and adapt/;
// SynthesisOptions::channels_last).
// --source-precision bf16: generator calls without gradients run on a bfloat16
// copy (sg2/forward and sg2/blocks: the whole generator; adapt/: the frozen
// source's images, AdaptContext::source_lowp). sg2/grad_w refuses it.
// --selection-precision bf16: adapt/stage2_step's layer selection runs on a
// bfloat16 copy of G_t (AdaptContext::selection_lowp); --train-precision bf16:
// its G_t images forward and backward too (AdaptContext::train_lowp).
// --no-cuda-kernels: LibTorch's ops where the engine's own CUDA kernels would
// run (builds with -DRESTYLE_CUDA_KERNELS=ON; the JSON line's "cuda_kernels"
// says whether they ran).
// Benchmarks marked cuda_only are skipped on the CPU.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "worker/engine/bench/bench.h"
#include "worker/engine/common/cpu_allocator.h"
#include "worker/engine/common/cuda_math.h"
#include "worker/engine/common/threads.h"
#include "worker/engine/stylegan2/fused_tail.h"
#include "worker/engine/stylegan2/layers.h"

namespace restyle::bench {

std::vector<Benchmark>& Registry() {
  static auto* registry = new std::vector<Benchmark>;
  return *registry;
}

namespace {

struct Flags {
  bool cudnn_benchmark = false;
  bool channels_last = false;
  bool no_cuda_kernels = false;
  std::string source_precision = "fp32";
  std::string selection_precision = "fp32";
  std::string train_precision = "fp32";
  std::string conv;
  std::string filter;
  std::string run_one;
  std::string device = "cpu";
  std::string profile_dir;
  std::string precision = "fp32";
  int threads = 0;
  bool list = false;
};

[[noreturn]] void Usage(const char* argv0, const std::string& error) {
  std::fprintf(stderr,
               "%s\nusage: %s [--filter SUBSTRING] [--threads N] [--device cpu|cuda] [--list]\n"
               "          [--profile DIR] [--precision fp32|tf32|bf16] [--cudnn-benchmark]\n"
               "          [--conv fused|fused-transposed|fused-subpixel|reference] [--channels-last]\n"
               "          [--source-precision fp32|bf16] [--selection-precision fp32|bf16]\n"
               "          [--train-precision fp32|bf16] [--no-cuda-kernels]\n",
               error.c_str(), argv0);
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string& name) -> std::string {
      const std::string prefix = name + "=";
      if (arg.rfind(prefix, 0) == 0) return arg.substr(prefix.size());
      if (i + 1 >= argc) Usage(argv[0], "missing value for " + name);
      return argv[++i];
    };
    auto is = [&](const std::string& name) {
      return arg == name || arg.rfind(name + "=", 0) == 0;
    };
    if (is("--filter")) {
      flags.filter = value("--filter");
    } else if (is("--threads")) {
      const std::string v = value("--threads");
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || n <= 0) Usage(argv[0], "bad --threads " + v);
      flags.threads = static_cast<int>(n);
    } else if (is("--device")) {
      flags.device = value("--device");
      if (flags.device != "cpu" && flags.device != "cuda") Usage(argv[0], "bad --device");
    } else if (is("--precision")) {
      flags.precision = value("--precision");
      if (flags.precision != "fp32" && flags.precision != "tf32" && flags.precision != "bf16") {
        Usage(argv[0], "bad --precision " + flags.precision + " (fp32, tf32 or bf16)");
      }
    } else if (is("--profile")) {
      flags.profile_dir = value("--profile");
    } else if (is("--run-one")) {
      flags.run_one = value("--run-one");
    } else if (is("--conv")) {
      flags.conv = value("--conv");
      engine::ConvMode mode;
      if (!engine::ParseConvMode(flags.conv, &mode) || mode == engine::ConvMode::kAuto) {
        Usage(argv[0], "bad --conv " + flags.conv +
                           " (fused, fused-transposed, fused-subpixel or reference)");
      }
    } else if (arg == "--cudnn-benchmark") {
      flags.cudnn_benchmark = true;
    } else if (arg == "--channels-last") {
      flags.channels_last = true;
    } else if (arg == "--no-cuda-kernels") {
      flags.no_cuda_kernels = true;
    } else if (is("--source-precision") || is("--selection-precision") ||
               is("--train-precision")) {
      // Which of the three: the flag's name up to '=' (if any).
      const std::string name = arg.substr(0, arg.find('='));
      std::string& field = name == "--source-precision"      ? flags.source_precision
                           : name == "--selection-precision" ? flags.selection_precision
                                                             : flags.train_precision;
      field = value(name);
      if (field != "fp32" && field != "bf16") {
        Usage(argv[0], "bad " + name + " " + field + " (fp32 or bf16)");
      }
    } else if (arg == "--list") {
      flags.list = true;
    } else if (arg == "--help" || arg == "-h") {
      Usage(argv[0], "restyle-bench: engine benchmarks, one JSON line each on stdout");
    } else {
      Usage(argv[0], "unknown flag " + arg);
    }
  }
  return flags;
}

// --filter: a substring of the name; a trailing '$' anchors it at the end
// ("sg2/blocks/1024/b32/fused$" is not "...fused-transposed").
bool MatchesFilter(const std::string& name, const std::string& filter) {
  if (filter.empty()) return true;
  if (filter.back() == '$') {
    const std::string tail = filter.substr(0, filter.size() - 1);
    return name.size() >= tail.size() &&
           name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  }
  return name.find(filter) != std::string::npos;
}

// Resident set size now, in bytes (from /proc/self/statm).
int64_t CurrentRssBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

int64_t PeakRssBytes() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

// Sets TF32 and autocast for --precision; returns false when the combination
// cannot run (a precision other than fp32 on the CPU).
bool ApplyPrecision(const Flags& flags) {
  const bool cuda = flags.device == "cuda";
  if (!cuda) return flags.precision == "fp32";
  engine::SetCudaMath(flags.precision == "tf32", flags.cudnn_benchmark);
  if (flags.precision == "bf16") {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
  }
  return true;
}

// Runs one benchmark in this process and prints its JSON line.
int RunOne(const Benchmark& b, const Flags& flags) {
  const int threads = engine::SetThreadCount(flags.threads);
  engine::SetCudaKernelsEnabled(!flags.no_cuda_kernels);
  // Like every Restyle binary: the caching CPU allocator unless
  // RESTYLE_CPU_CACHE_MB=0 (which benchmarks the plain allocator).
  const bool cache = engine::InstallCachingCpuAllocator();
  std::map<std::string, std::string> extra;
  Context ctx{threads, flags.device, flags.precision, flags.conv, flags.channels_last,
              flags.source_precision == "bf16", flags.selection_precision == "bf16",
              flags.train_precision == "bf16", &extra};
  if (!ApplyPrecision(flags)) {
    std::fprintf(stderr, "--precision %s needs --device cuda\n", flags.precision.c_str());
    return 2;
  }
  const int64_t rss_before = CurrentRssBytes();
  std::function<void()> fn = b.prepare(ctx);
  if (flags.precision == "bf16") {
    // Autocast caches the bfloat16 copies of weights; a step changes the
    // weights, so the cache is dropped after every call (as leaving a Python
    // autocast region does).
    fn = [inner = std::move(fn)] {
      inner();
      at::autocast::clear_cache();
    };
  }
  for (int i = 0; i < b.warmup; ++i) fn();
  std::vector<double> ms;
  const auto start = std::chrono::steady_clock::now();
  while (static_cast<int>(ms.size()) < b.iters ||
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
             b.min_seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  double mean = 0;
  for (double v : ms) mean += v / n;
  nlohmann::json line = {{"name", b.name},
                         {"shape", b.shape},
                         {"batch", b.batch},
                         {"threads", threads},
                         {"device", flags.device},
                         {"precision", flags.precision},
                         {"cudnn_benchmark", flags.cudnn_benchmark},
                         {"conv", flags.conv.empty() ? "default" : flags.conv},
                         {"channels_last", flags.channels_last},
                         {"source_precision", flags.source_precision},
                         {"selection_precision", flags.selection_precision},
                         {"train_precision", flags.train_precision},
                         {"cuda_kernels", flags.device == "cuda" && engine::CudaKernelsBuilt() &&
                                              engine::CudaKernelsEnabled()},
                         {"iters", n},
                         {"median_ms", median},
                         {"min_ms", sorted.front()},
                         {"mean_ms", mean},
                         {"peak_rss_bytes", PeakRssBytes()},
                         {"rss_before_bytes", rss_before}};
  line["cpu_cache_mb"] =
      cache ? static_cast<int64_t>(engine::CpuCacheOptionsFromEnv().max_cached_bytes >> 20) : 0;
  if (!b.baseline.empty()) line["baseline"] = b.baseline;
  if (!extra.empty()) line["extra"] = extra;
  if (!flags.profile_dir.empty()) {
    std::string file = b.name;
    std::replace(file.begin(), file.end(), '/', '_');
    file = flags.profile_dir + "/" + file + ".json";
    if (flags.device == "cuda") {
      namespace prof = torch::profiler::impl;
      const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
      const std::set<prof::ActivityType> activities = {prof::ActivityType::CPU,
                                                       prof::ActivityType::CUDA};
      torch::autograd::profiler::prepareProfiler(config, activities);
      torch::autograd::profiler::enableProfiler(config, activities);
      fn();
      torch::cuda::synchronize();
      torch::autograd::profiler::disableProfiler()->save(file);
    } else {
      torch::autograd::profiler::RecordProfile profile(file);
      fn();
    }
    line["profile"] = file;
  }
  std::cout << line.dump() << std::endl;
  return 0;
}

}  // namespace
}  // namespace restyle::bench

int main(int argc, char** argv) {
  using namespace restyle::bench;
  const Flags flags = ParseFlags(argc, argv);
  auto& registry = Registry();
  std::sort(registry.begin(), registry.end(),
            [](const Benchmark& a, const Benchmark& b) { return a.name < b.name; });

  if (!flags.run_one.empty()) {
    for (const auto& b : registry) {
      if (b.name == flags.run_one) {
        try {
          return RunOne(b, flags);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "benchmark %s failed: %s\n", b.name.c_str(), e.what());
          return 1;
        }
      }
    }
    std::fprintf(stderr, "no benchmark named %s\n", flags.run_one.c_str());
    return 2;
  }

  if (flags.precision != "fp32" && flags.device != "cuda") {
    Usage(argv[0], "--precision " + flags.precision + " needs --device cuda");
  }
  if (flags.device == "cuda" && !flags.list) {
    try {
      restyle::engine::RequireCuda();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "restyle-bench: %s\n", e.what());
      return 2;
    }
  }
  if (!flags.profile_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(flags.profile_dir, error);
    if (error) Usage(argv[0], "cannot create --profile " + flags.profile_dir + ": " + error.message());
  }
  int failures = 0, ran = 0, skipped = 0;
  for (const auto& b : registry) {
    if (!MatchesFilter(b.name, flags.filter)) continue;
    if (flags.list) {
      std::printf("%s\t%s\tbatch %d%s\n", b.name.c_str(), b.shape.c_str(), b.batch,
                  b.cuda_only ? "\tcuda only" : "");
      continue;
    }
    if (b.cuda_only && flags.device != "cuda") {
      std::fprintf(stderr, "skipping %s (cuda only)\n", b.name.c_str());
      ++skipped;
      continue;
    }
    std::fprintf(stderr, "running %s ...\n", b.name.c_str());
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<std::string> args = {"/proc/self/exe", "--run-one", b.name, "--device",
                                       flags.device, "--precision", flags.precision};
      if (!flags.profile_dir.empty()) {
        args.push_back("--profile");
        args.push_back(flags.profile_dir);
      }
      if (flags.cudnn_benchmark) args.push_back("--cudnn-benchmark");
      if (flags.channels_last) args.push_back("--channels-last");
      if (flags.no_cuda_kernels) args.push_back("--no-cuda-kernels");
      args.push_back("--source-precision");
      args.push_back(flags.source_precision);
      args.push_back("--selection-precision");
      args.push_back(flags.selection_precision);
      args.push_back("--train-precision");
      args.push_back(flags.train_precision);
      if (!flags.conv.empty()) {
        args.push_back("--conv");
        args.push_back(flags.conv);
      }
      if (flags.threads > 0) {
        args.push_back("--threads");
        args.push_back(std::to_string(flags.threads));
      }
      std::vector<char*> cargs;
      for (auto& a : args) cargs.push_back(a.data());
      cargs.push_back(nullptr);
      execv("/proc/self/exe", cargs.data());
      std::perror("execv");
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ++ran;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++failures;
      std::fprintf(stderr, "benchmark %s failed (status %d)\n", b.name.c_str(), status);
    }
  }
  if (!flags.list && ran == 0 && skipped == 0) {
    std::fprintf(stderr, "no benchmark matches --filter '%s'\n", flags.filter.c_str());
    return 2;
  }
  return failures == 0 ? 0 : 1;
}
