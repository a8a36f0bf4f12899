// Adaptation training-step benchmarks at paper shapes: a StyleGAN2 config-f
// generator (random weights) and a ViT-B/32-shaped CLIP (random weights),
// random noise like training. One timed call = one step of the training core
// (worker/engine/adapt/ipl.h), optimizer update included:
//   adapt/stage1_step/256/vit_b32/b8    stage 1 (mapper), batch 8 (quick figure)
//   adapt/stage1_step/256/vit_b32/b32   stage 1, batch 32 (paper; 5 GB, a minute on CPU)
//   adapt/stage2_step/256/vit_b32/b2    stage 2 (IPL), batch 2, layer selection on (8 z)
//   adapt/stage1_step/1024/vit_b32/b32  the same at 1024 (CUDA only; a full IPL run
//   adapt/stage2_step/1024/vit_b32/b2   is 300 of each, see bench/gpu_check.sh)
// Heavy on CPU: warmup 0, one or two timed calls; on CUDA one warmup call and
// at least 5 timed ones.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include <memory>
#include <string>

#include "worker/engine/adapt/ipl.h"
#include "worker/engine/bench/bench.h"
#include "worker/engine/clip/checkpoint.h"
#include "worker/engine/clip/random_weights.h"
#include "worker/engine/clip/tokenizer.h"

namespace restyle::bench {
namespace {

using namespace restyle::engine;

// Everything a step reads, kept alive by the timed closure.
struct StepFixture {
  AdaptOptions options;
  ClipModel clip{nullptr};
  Generator source{nullptr};
  Generator source_lowp{nullptr};     // --source-precision bf16
  Generator stage2_lowp{nullptr};  // --selection-precision / --train-precision bf16
  bool select_lowp = false, train_lowp = false;
  JobTexts texts;
  torch::Device device{torch::kCPU};
  at::Generator rng;

  AdaptContext context() {
    AdaptContext ctx{clip.get(), source.get(), &texts, &options};
    ctx.source_lowp = source_lowp.is_empty() ? nullptr : source_lowp.get();
    ctx.selection_lowp = select_lowp ? stage2_lowp.get() : nullptr;
    ctx.train_lowp = train_lowp ? stage2_lowp.get() : nullptr;
    return ctx;
  }
};

std::shared_ptr<StepFixture> MakeFixture(const Context& ctx, AdaptMethod method,
                                         int64_t size) {
  auto f = std::make_shared<StepFixture>();
  f->options.method = method;
  f->options.target_class = "disney";
  ConvMode mode;
  if (ParseConvMode(ctx.conv, &mode)) {  // validated by the driver; "" keeps the default
    f->options.conv_mode = mode;
    f->options.frozen_conv_mode = mode;
  }
  f->device = torch::Device(ctx.device == "cuda" ? torch::kCUDA : torch::kCPU);
  f->clip = LoadClipFromTensors(RandomClipWeights(ClipConfig::VitB32(), /*seed=*/1), "vit-b32");
  f->clip->to(f->device);
  f->source = RandomGenerator(Sg2Config::Official(size), /*seed=*/2);
  f->source->SetAllTrainable(false);
  f->source->to(f->device);
  if (ctx.source_bf16) f->source_lowp = LowPrecisionCopy(*f->source, torch::kBFloat16);
  f->options.channels_last = ctx.channels_last;
  auto tokenizer = Tokenizer::FromFile(DefaultVocabPath());
  {
    torch::NoGradGuard no_grad;
    f->texts = ComputeJobTexts(*f->clip, TokenizeJobTexts(*tokenizer, f->options));
  }
  if (f->device.is_cuda()) {
    f->rng = at::globalContext().defaultGenerator(f->device).clone();
    f->rng.set_current_seed(3);
  } else {
    f->rng = at::make_generator<at::CPUGeneratorImpl>(3);
  }
  return f;
}

torch::Tensor Z(StepFixture& f, int64_t n) { return DrawZ(n, 512, f.rng).to(f.device); }

// Timing settings: a couple of calls on CPU, more on CUDA (only 1024 runs there
// by default; 256 ones follow --device too).
void HeavyTiming(Benchmark& b, int cpu_iters, bool cuda_only) {
  b.cuda_only = cuda_only;
  b.warmup = cuda_only ? 1 : 0;
  b.iters = cuda_only ? 5 : cpu_iters;
}

Benchmark Stage1(int64_t size, int batch) {
  Benchmark b;
  b.name = "adapt/stage1_step/" + std::to_string(size) + "/vit_b32/b" + std::to_string(batch);
  b.shape = "IPL stage 1: SG2 " + std::to_string(size) +
            " config-f + ViT-B/32 (random weights), mapper Adam step";
  b.batch = batch;
  HeavyTiming(b, batch >= 32 ? 1 : 2, size > 256);
  b.prepare = [size, batch](const Context& ctx) -> std::function<void()> {
    auto f = MakeFixture(ctx, AdaptMethod::kIpl, size);
    f->options.stage1.batch = batch;
    auto mapper = NewMapperForJob(*f->source, *f->clip, f->options);
    mapper->to(f->device);
    auto adam = std::make_shared<Adam>(MakeMapperAdam(*mapper, f->options));
    return [f, mapper, adam, batch]() mutable {
      const Stage1Losses l = Stage1Step(f->context(), *mapper, *adam, Z(*f, batch), f->rng);
      (void)l;  // the step returns host doubles: already synchronised
    };
  };
  return b;
}

Benchmark Stage2(int64_t size, int batch) {
  Benchmark b;
  b.name = "adapt/stage2_step/" + std::to_string(size) + "/vit_b32/b" + std::to_string(batch);
  b.shape = "IPL stage 2: SG2 " + std::to_string(size) +
            " config-f + ViT-B/32 (random weights), layer selection "
            "(8 z, 1 iter), generator Adam step + EMA";
  b.batch = batch;
  HeavyTiming(b, 2, size > 256);
  b.prepare = [size, batch](const Context& ctx) -> std::function<void()> {
    auto f = MakeFixture(ctx, AdaptMethod::kIpl, size);
    f->options.stage2.batch = batch;
    f->options.stage2.auto_layer_iters = 1;
    auto mapper = NewMapperForJob(*f->source, *f->clip, f->options);
    mapper->to(f->device);
    for (auto& p : mapper->parameters()) p.set_requires_grad(false);
    Generator target = CloneForTraining(*f->source);
    Generator ema = CloneForTraining(*f->source);
    f->select_lowp = ctx.selection_bf16;
    f->train_lowp = ctx.train_bf16;
    if (ctx.selection_bf16 || ctx.train_bf16) {
      f->stage2_lowp = LowPrecisionCopy(*target, torch::kBFloat16);
    }
    auto adam = std::make_shared<Adam>(MakeGeneratorAdam(*target, f->options));
    if (ctx.extra != nullptr) {
      (*ctx.extra)["layers_k"] =
          std::to_string(AutoLayerK(f->options.stage2, f->source->config().n_latent()));
    }
    return [f, mapper, target, ema, adam, batch]() mutable {
      const Stage2Result r =
          Stage2Step(f->context(), mapper.get(), *target, *ema, *adam, Z(*f, batch),
                     Z(*f, f->options.stage2.auto_layer_batch), f->rng);
      (void)r;
    };
  };
  return b;
}

const Registrar kStage1b8(Stage1(256, 8));
const Registrar kStage1b32(Stage1(256, 32));
const Registrar kStage2b2(Stage2(256, 2));
const Registrar kStage1_1024(Stage1(1024, 32));
const Registrar kStage2_1024(Stage2(1024, 2));

}  // namespace
}  // namespace restyle::bench
