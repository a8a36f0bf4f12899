// restyle-bench: a tiny benchmark registry.
//
// Each benchmark file defines benchmarks with a static Registrar:
//
//   static restyle::bench::Registrar kEncodeImage({
//       .name = "clip/encode_image/vit_b32", .shape = "ViT-B/32 224x224", .batch = 8,
//       .prepare = [](const restyle::bench::Context& ctx) {
//         auto model = ...;                       // not timed
//         return [model]() mutable { model->EncodeImage(x); };  // timed
//       }});
//
// The driver (main.cc) runs every benchmark whose name contains --filter in a
// fresh child process (so peak memory is that benchmark's own), calls the
// timed function `warmup` times, then `iters` times (or until min_seconds),
// and prints one JSON line per benchmark on stdout:
//   {"name", "shape", "batch", "threads", "iters", "median_ms", "min_ms",
//    "mean_ms", "peak_rss_bytes", "extra": {...}}
#ifndef RESTYLE_WORKER_ENGINE_BENCH_BENCH_H_
#define RESTYLE_WORKER_ENGINE_BENCH_BENCH_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace restyle::bench {

struct Context {
  int threads = 1;        // intra-op threads in effect
  std::string device;     // "cpu" or "cuda"
  std::string precision;  // "fp32", "tf32" or "bf16" (autocast); CUDA only beyond fp32
  std::string conv;       // --conv: "" (the options' default) or a ConvModeName
  bool channels_last = false;  // --channels-last
  bool source_bf16 = false;    // --source-precision bf16
  bool selection_bf16 = false;  // --selection-precision bf16
  bool train_bf16 = false;      // --train-precision bf16
  std::map<std::string, std::string>* extra = nullptr;  // free-form fields for the JSON line
};

struct Benchmark {
  std::string name;   // unique, '/'-separated, e.g. "sg2/forward/256/config-f"
  std::string shape;  // human-readable model / input description
  int batch = 1;
  // Name of the matching workload in bench/reference_baseline.py (without its
  // "ref/" prefix) for bench/compare.py; empty: the longest reference name
  // that is a prefix of `name`.
  std::string baseline;
  int warmup = 1;
  int iters = 5;             // at least this many timed calls ...
  double min_seconds = 0.0;  // ... and at least this long in total
  // Too heavy for a CPU: runs only with --device cuda (listed, skipped otherwise).
  bool cuda_only = false;
  // Builds everything the timed call needs (not timed) and returns it.
  std::function<std::function<void()>(const Context&)> prepare;
};

std::vector<Benchmark>& Registry();

struct Registrar {
  explicit Registrar(Benchmark b) { Registry().push_back(std::move(b)); }
};

}  // namespace restyle::bench

#endif  // RESTYLE_WORKER_ENGINE_BENCH_BENCH_H_
