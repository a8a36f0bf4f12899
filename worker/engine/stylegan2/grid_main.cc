// restyle-sg2-grid: writes a rows x cols PNG grid of generator samples.
//
//   restyle-sg2-grid [--weights G.safetensors] [--out grid.png] [--seed 0]
//                    [--rows 4] [--cols 4] [--truncation 1.0] [--size 32]
//                    [--threads N]
//
// Without --weights a tiny random generator (--size, style 64, 32 channels)
// is built deterministically from --seed. z, noise and everything else come
// from --seed too, so the same flags give the same file.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "worker/engine/common/cpu_allocator.h"
#include "worker/engine/common/error.h"
#include "worker/engine/common/threads.h"
#include "worker/engine/image/png.h"
#include "worker/engine/stylegan2/generator.h"

int main(int argc, char** argv) {
  using namespace restyle::engine;
  std::string weights, out = "grid.png";
  uint64_t seed = 0;
  int64_t rows = 4, cols = 4, size = 32;
  double truncation = 1.0;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--weights") weights = next();
    else if (a == "--out") out = next();
    else if (a == "--seed") seed = std::stoull(next());
    else if (a == "--rows") rows = std::stoll(next());
    else if (a == "--cols") cols = std::stoll(next());
    else if (a == "--size") size = std::stoll(next());
    else if (a == "--truncation") truncation = std::stod(next());
    else if (a == "--threads") threads = std::stoi(next());
    else {
      std::fprintf(stderr, "usage: %s [--weights F] [--out F] [--seed N] [--rows R] [--cols C] "
                           "[--truncation T] [--size S] [--threads N]\n", argv[0]);
      return 2;
    }
  }
  try {
    SetThreadCount(threads);
    InstallCachingCpuAllocator();
    auto start = std::chrono::steady_clock::now();
    Generator g{nullptr};
    if (weights.empty()) {
      Sg2Config c;
      c.size = size;
      c.style_dim = 64;
      c.n_mlp = 8;
      for (int64_t r = 4; r <= size; r *= 2) c.channels.push_back(32);
      g = RandomGenerator(c, seed);
    } else {
      g = LoadGenerator(weights);
    }
    torch::NoGradGuard no_grad;
    auto rng = at::detail::createCPUGenerator(seed + 1);
    auto z = at::randn({rows * cols, g->config().style_dim}, rng);
    SynthesisOptions o;
    o.input_is_latent = false;
    o.noise = NoiseMode::kRandom;
    o.rng = rng;
    if (truncation < 1.0) {
      o.truncation = truncation;
      o.truncation_latent = g->latent_avg.defined() ? g->latent_avg : g->MeanLatent(4096, rng);
    }
    auto images = g->Generate({z}, o).image;
    WritePng(out, Uint8Grid(images, cols));
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    std::printf("wrote %s (%lldx%lld, %s) in %.0f ms\n", out.c_str(), (long long)rows,
                (long long)cols, g->config().ToString().c_str(), ms.count());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s: %s\n", ErrorCodeName(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
