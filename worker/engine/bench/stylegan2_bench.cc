// StyleGAN2 generator forward benchmarks: config-f shapes (style 512,
// n_mlp 8, channel multiplier 2) at 256 and 1024, batch 1 and 4, random
// weights, stored noise, w input, no gradients; each formulation
// (reference = grouped per-sample conv, fused = shared conv on modulated
// activations, fused-transposed = fused with LibTorch's transposed conv for
// upsampling, fused-subpixel = fused with upsampling conv and blur composed
// into one conv and a pixel shuffle; those two in the CUDA-only and block
// benchmarks). Names: sg2/forward/<size>/b<batch>/<formulation>.
// sg2/blocks/...: the forward again, timed per resolution block (the device
// synchronised after each block); the JSON line's extra holds
// "block_ms.<resolution>", the mean over the timed calls.
// CUDA only, the generator shapes of an IPL step at 1024: forward of 32 images
// (stage 1's frozen-source batch) and forward + backward to W+ of 8 images
// (layer selection; sg2/grad_w/...).
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <chrono>
#include <cstdio>
#include <map>

#include <memory>
#include <stdexcept>
#include <string>

#include "worker/engine/bench/bench.h"
#include "worker/engine/stylegan2/generator.h"

namespace restyle::bench {
namespace {

using engine::ConvMode;

// sg2/<kind>/<size>/b<batch>/<formulation>, described as `what`.
Benchmark Named(const std::string& kind, int64_t size, int batch, ConvMode mode,
                const std::string& what) {
  const std::string mode_name = engine::ConvModeName(mode);
  Benchmark b;
  b.name = "sg2/" + kind + "/" + std::to_string(size) + "/b" + std::to_string(batch) + "/" +
           mode_name;
  b.shape = "StyleGAN2 config-f " + std::to_string(size) + "x" + std::to_string(size) + ", " +
            what + ", " + mode_name;
  b.batch = batch;
  return b;
}

// A config-f generator of `size` with random weights, frozen, on ctx's device
// (in bfloat16 with --source-precision bf16).
engine::Generator FrozenGenerator(int64_t size, const Context& ctx) {
  auto g = engine::RandomGenerator(engine::Sg2Config::Official(size), /*seed=*/1);
  g->to(torch::Device(ctx.device == "cuda" ? torch::kCUDA : torch::kCPU));
  if (ctx.source_bf16) g->to(torch::kBFloat16);
  g->eval();
  g->SetAllTrainable(false);
  if (ctx.extra != nullptr) (*ctx.extra)["params"] = std::to_string(g->parameters().size());
  return g;
}

Benchmark Sg2Forward(int64_t size, int batch, ConvMode mode) {
  Benchmark b = Named("forward", size, batch, mode, "w input, stored noise");
  b.warmup = 1;
  b.iters = size >= 1024 ? 2 : 3;
  if (batch > 4) {
    b.cuda_only = true;
    b.iters = 5;
  }
  b.prepare = [size, batch, mode](const Context& ctx) -> std::function<void()> {
    auto g = FrozenGenerator(size, ctx);
    const torch::Device device = g->input->input.device();
    auto w = torch::randn({batch, 512}).to(device, g->input->input.scalar_type());
    const bool channels_last = ctx.channels_last;
    return [g, w, mode, device, channels_last]() mutable {
      torch::InferenceMode guard;
      engine::SynthesisOptions o;
      o.noise = engine::NoiseMode::kStored;
      o.conv = mode;
      o.channels_last = channels_last;
      auto img = g->Generate({w}, o).image;
      if (device.is_cuda()) img.sum().item<float>();  // synchronise
    };
  };
  return b;
}

// Forward + backward to the W+ codes (no weight gradients), as layer selection.
Benchmark Sg2GradW(int64_t size, int batch, ConvMode mode) {
  Benchmark b =
      Named("grad_w", size, batch, mode, "W+ input with grad, random noise, backward to W+");
  b.cuda_only = true;
  b.warmup = 1;
  b.iters = 5;
  b.prepare = [size, batch, mode](const Context& ctx) -> std::function<void()> {
    if (ctx.source_bf16) throw std::invalid_argument("grad_w runs in float32 only");
    auto g = FrozenGenerator(size, ctx);
    auto w = torch::randn({batch, g->config().n_latent(), 512}).to(g->input->input.device());
    const bool channels_last = ctx.channels_last;
    return [g, w, mode, channels_last]() mutable {
      torch::AutoGradMode grad_mode(true);
      torch::Tensor codes = w.clone().requires_grad_(true);
      engine::SynthesisOptions o;
      o.input_is_latent = true;
      o.noise = engine::NoiseMode::kRandom;
      o.conv = mode;
      o.channels_last = channels_last;
      auto img = g->Synthesize(codes, o).image;
      auto grad = torch::autograd::grad({img.square().mean()}, {codes})[0];
      grad.sum().item<float>();  // synchronise
    };
  };
  return b;
}

// Forward with the device synchronised after every resolution block, and the
// mean milliseconds of each block in the JSON line (where the time goes).
Benchmark Sg2Blocks(int64_t size, int batch, ConvMode mode, bool cuda_only) {
  Benchmark b = Named("blocks", size, batch, mode, "w input, stored noise, timed per block");
  b.cuda_only = cuda_only;
  b.warmup = 1;
  b.iters = cuda_only ? 5 : 2;
  b.prepare = [size, batch, mode](const Context& ctx) -> std::function<void()> {
    auto g = FrozenGenerator(size, ctx);
    const torch::Device device = g->input->input.device();
    auto w = torch::randn({batch, 512}).to(device, g->input->input.scalar_type());
    const bool channels_last = ctx.channels_last;
    auto sums = std::make_shared<std::map<int64_t, double>>();
    auto calls = std::make_shared<int>(-1);  // the warm-up call is not counted
    std::map<std::string, std::string>* extra = ctx.extra;
    return [g, w, mode, device, channels_last, sums, calls, extra]() mutable {
      using Clock = std::chrono::steady_clock;
      torch::InferenceMode guard;
      auto sync = [&] {
        if (device.is_cuda()) torch::cuda::synchronize();
      };
      sync();
      Clock::time_point last = Clock::now();
      const bool counted = ++*calls > 0;
      engine::SynthesisOptions o;
      o.noise = engine::NoiseMode::kStored;
      o.conv = mode;
      o.channels_last = channels_last;
      o.after_block = [&](int64_t resolution) {
        sync();
        const Clock::time_point now = Clock::now();
        if (counted) (*sums)[resolution] += std::chrono::duration<double, std::milli>(now - last).count();
        last = now;
      };
      g->Generate({w}, o);
      if (counted && extra != nullptr) {
        for (const auto& [resolution, ms] : *sums) {
          char value[32];
          std::snprintf(value, sizeof(value), "%.3f", ms / *calls);
          (*extra)["block_ms." + std::to_string(resolution)] = value;
        }
      }
    };
  };
  return b;
}

const Registrar k256blocks(Sg2Blocks(256, 4, ConvMode::kFused, /*cuda_only=*/false));
const Registrar k1024blocks32f(Sg2Blocks(1024, 32, ConvMode::kFused, /*cuda_only=*/true));
const Registrar k1024blocks32r(Sg2Blocks(1024, 32, ConvMode::kReference, /*cuda_only=*/true));
const Registrar k1024blocks32t(Sg2Blocks(1024, 32, ConvMode::kFusedTransposed,
                                         /*cuda_only=*/true));
const Registrar k1024blocks32s(Sg2Blocks(1024, 32, ConvMode::kFusedSubpixel,
                                         /*cuda_only=*/true));
const Registrar k256blocks_s(Sg2Blocks(256, 4, ConvMode::kFusedSubpixel, /*cuda_only=*/false));
const Registrar k1024b32s(Sg2Forward(1024, 32, ConvMode::kFusedSubpixel));
const Registrar k1024gw8s(Sg2GradW(1024, 8, ConvMode::kFusedSubpixel));
const Registrar k1024b32f(Sg2Forward(1024, 32, ConvMode::kFused));
const Registrar k1024b32r(Sg2Forward(1024, 32, ConvMode::kReference));
const Registrar k1024gw8f(Sg2GradW(1024, 8, ConvMode::kFused));
const Registrar k1024gw8r(Sg2GradW(1024, 8, ConvMode::kReference));
const Registrar k256b1f(Sg2Forward(256, 1, ConvMode::kFused));
const Registrar k256b1r(Sg2Forward(256, 1, ConvMode::kReference));
const Registrar k256b4f(Sg2Forward(256, 4, ConvMode::kFused));
const Registrar k256b4r(Sg2Forward(256, 4, ConvMode::kReference));
const Registrar k1024b1f(Sg2Forward(1024, 1, ConvMode::kFused));
const Registrar k1024b1r(Sg2Forward(1024, 1, ConvMode::kReference));
const Registrar k1024b4f(Sg2Forward(1024, 4, ConvMode::kFused));
const Registrar k1024b4r(Sg2Forward(1024, 4, ConvMode::kReference));

}  // namespace
}  // namespace restyle::bench
