// What a worker's Generate path spends its time on (docs/benchmarks.md#serving).
//
// serve/generate/<model>/b<batch>/<arithmetic>: GenerateImages of `batch`
//   seeds in one forward at truncation 0.7 (mean latent kept, as the worker
//   keeps it), on the demo generator or config-f at 256 / 1024 with random
//   weights. <arithmetic>: "invariant" (BatchInvariantGuard: what the worker
//   runs, an image the same in any batch) or "fastest" (LibTorch's own
//   kernel per shape, folded weights at batch 1: the engine's best, whose
//   images depend on their batch by float rounding). Images per second:
//   batch * 1000 / median_ms.
// serve/png/<size>/l<level>/<filters>: EncodePng of one generated image (a
//   random config-f generator's; real generators' smoother images compress
//   faster) at zlib level <level>, filters "all" (libpng's adaptive choice)
//   or "sub"; extra: png_bytes.
// serve/cross/<size>/g<G>/b<B>/<way>: B images from G adapted generators of
//   one source. "per-generator": G fused forwards of B/G images (what the
//   worker does). "grouped": one forward in the per-sample-weight (grouped
//   convolution) formulation, the cost of cross-generator batching before
//   any per-generator weight gathering, a lower bound for it.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <memory>
#include <string>
#include <vector>

#include "worker/engine/adapt_job/demo_models.h"
#include "worker/engine/adapt_job/generate.h"
#include "worker/engine/bench/bench.h"
#include "worker/engine/image/png.h"
#include "worker/engine/stylegan2/generator.h"

namespace restyle::bench {
namespace {

using engine::ConvMode;

torch::Device DeviceOf(const Context& ctx) {
  return torch::Device(ctx.device == "cuda" ? torch::kCUDA : torch::kCPU);
}

// "demo" or a config-f size; random weights, on ctx's device.
engine::Generator ServedGenerator(const std::string& model, const Context& ctx) {
  engine::Generator g{nullptr};
  if (model == "demo") {
    g = engine::DemoGenerator();
  } else {
    g = engine::RandomGenerator(engine::Sg2Config::Official(std::stoi(model)), /*seed=*/1);
  }
  g->to(DeviceOf(ctx));
  g->eval();
  return g;
}

void Sync(const Context& ctx) {
  if (ctx.device == "cuda") torch::cuda::synchronize();
}

Benchmark ServeGenerate(const std::string& model, int batch, bool invariant) {
  Benchmark b;
  b.name = "serve/generate/" + model + "/b" + std::to_string(batch) + "/" +
           (invariant ? "invariant" : "fastest");
  b.shape = (model == "demo" ? std::string("the demo generator") : "StyleGAN2 config-f " + model) +
            ", GenerateImages of " + std::to_string(batch) + " seeds in one forward, " +
            (invariant ? "batch-invariant arithmetic" : "fastest kernels per shape");
  b.batch = batch;
  b.warmup = 1;
  b.iters = model == "1024" ? 2 : 3;
  if (model == "1024" && batch > 4) b.cuda_only = true;
  if (model == "256" && batch > 16) b.cuda_only = true;
  b.prepare = [model, batch, invariant](const Context& ctx) -> std::function<void()> {
    auto g = ServedGenerator(model, ctx);
    engine::GenerateOptions o;
    o.truncation = 0.7;
    o.truncation_latent = engine::TruncationLatent(*g);
    o.batch = batch;
    o.batch_invariant = invariant;
    std::vector<uint64_t> seeds;
    for (int i = 0; i < batch; ++i) seeds.push_back(static_cast<uint64_t>(i));
    return [g, o, seeds, ctx]() mutable {
      torch::InferenceMode guard;
      engine::GenerateImages(*g, seeds, o);
      Sync(ctx);
    };
  };
  return b;
}

Benchmark ServePng(int size, int level, bool sub) {
  Benchmark b;
  b.name = "serve/png/" + std::to_string(size) + "/l" + std::to_string(level) + "/" +
           (sub ? "sub" : "all");
  b.shape = std::to_string(size) + "x" + std::to_string(size) + " RGB, zlib level " +
            std::to_string(level) + ", " + (sub ? "the Sub filter" : "adaptive filters");
  b.warmup = 1;
  b.iters = 5;
  b.prepare = [size, level, sub](const Context& ctx) -> std::function<void()> {
    Context cpu = ctx;
    cpu.device = "cpu";
    auto g = ServedGenerator(std::to_string(size), cpu);
    engine::GenerateOptions o;
    o.batch = 1;
    const torch::Tensor pixels = engine::ToUint8Images(engine::GenerateImages(*g, {0}, o))[0];
    engine::PngOptions png;
    png.compression_level = level;
    png.filters = sub ? engine::kPngFilterSub : 0;
    auto* extra = ctx.extra;
    return [pixels, png, extra]() {
      const std::string bytes = engine::EncodePng(pixels, png);
      if (extra != nullptr) (*extra)["png_bytes"] = std::to_string(bytes.size());
    };
  };
  return b;
}

Benchmark ServeCross(int size, int generators, int batch, bool grouped) {
  Benchmark b;
  b.name = "serve/cross/" + std::to_string(size) + "/g" + std::to_string(generators) + "/b" +
           std::to_string(batch) + "/" + (grouped ? "grouped" : "per-generator");
  b.shape = "StyleGAN2 config-f " + std::to_string(size) + ", " + std::to_string(batch) +
            " images of " + std::to_string(generators) + " generators, " +
            (grouped ? "one grouped-convolution forward" : "one fused forward per generator");
  b.batch = batch;
  b.warmup = 1;
  b.iters = 3;
  b.prepare = [size, generators, batch, grouped](const Context& ctx) -> std::function<void()> {
    std::vector<engine::Generator> gs;
    for (int i = 0; i < (grouped ? 1 : generators); ++i) {
      gs.push_back(ServedGenerator(std::to_string(size), ctx));
    }
    const torch::Device device = DeviceOf(ctx);
    return [gs, generators, batch, grouped, device, ctx]() mutable {
      torch::InferenceMode guard;
      engine::SynthesisOptions o;
      o.noise = engine::NoiseMode::kStored;
      if (grouped) {
        o.conv = ConvMode::kReference;
        gs[0]->Generate({torch::randn({batch, 512}, device)}, o);
      } else {
        o.conv = ConvMode::kFused;
        for (int i = 0; i < generators; ++i) {
          gs[i]->Generate({torch::randn({batch / generators, 512}, device)}, o);
        }
      }
      Sync(ctx);
    };
  };
  return b;
}

struct Registrations {
  Registrations() {
    for (int batch : {1, 2, 4, 8, 16, 32}) {
      for (bool invariant : {true, false}) {
        if (batch <= 8) Registry().push_back(ServeGenerate("demo", batch, invariant));
        Registry().push_back(ServeGenerate("256", batch, invariant));
        Registry().push_back(ServeGenerate("1024", batch, invariant));
      }
    }
    for (int size : {256, 1024}) {
      for (int level : {1, 3, 6}) {
        for (bool sub : {false, true}) Registry().push_back(ServePng(size, level, sub));
      }
    }
    for (int g : {2, 4, 8}) {
      for (bool grouped : {true, false}) Registry().push_back(ServeCross(256, g, 8, grouped));
    }
  }
};
const Registrations kRegistrations;

}  // namespace
}  // namespace restyle::bench
