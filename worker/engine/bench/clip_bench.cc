// CLIP benchmarks on a ViT-B/32-shaped model with random weights (N(0, 0.02),
// the same helper the tests use): image encoding at 224x224 (batch 1 and 8)
// and text encoding of 32 IPL-style prompts, with the EOT cut and without it.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/api/include/torch/utils.h>

#include <memory>
#include <string>

#include "worker/engine/bench/bench.h"
#include "worker/engine/clip/checkpoint.h"
#include "worker/engine/clip/model.h"
#include "worker/engine/clip/random_weights.h"

namespace restyle::bench {
namespace {

using engine::ClipConfig;
using engine::ClipModel;

constexpr int kPrompts = 32;

ClipModel MakeModel(const Context& ctx) {
  ClipModel model =
      engine::LoadClipFromTensors(engine::RandomClipWeights(ClipConfig::VitB32(), 7), "random");
  model->to(at::Device(ctx.device));
  return model;
}

// "<sot> a photo of a <word> <eot> 0..." with a random word id per prompt
// (ids of "a", "photo", "of" as CLIP's tokenizer gives them).
at::Tensor PromptTokens() {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Tensor tokens = at::zeros({kPrompts, 77}, at::kLong);
  const int64_t prefix[] = {49406, 320, 1125, 539, 320};
  for (int64_t i = 0; i < kPrompts; ++i) {
    for (int64_t j = 0; j < 5; ++j) tokens[i][j] = prefix[j];
    tokens[i][5] = at::randint(1000, 40000, {1}, gen, at::kLong)[0];
    tokens[i][6] = 49407;
  }
  return tokens;
}

std::function<void()> ImageBench(const Context& ctx, int64_t batch) {
  ClipModel model = MakeModel(ctx);
  const at::Tensor images = at::randn({batch, 3, 224, 224}).to(at::Device(ctx.device));
  (*ctx.extra)["model"] = "ViT-B/32 random N(0,0.02)";
  return [model, images]() mutable {
    at::InferenceMode guard;
    model->EncodeImage(images);
  };
}

std::function<void()> TextBench(const Context& ctx, bool cut) {
  ClipModel model = MakeModel(ctx);
  const at::Tensor tokens = PromptTokens().to(at::Device(ctx.device));
  engine::ClipTextOptions options;
  options.cut_after_eot = cut;
  (*ctx.extra)["positions"] = cut ? "7 (EOT cut)" : "77";
  return [model, tokens, options]() mutable {
    at::InferenceMode guard;
    model->EncodeText(tokens, options);
  };
}

// IPL stage-1 style: token embeddings with the 4 context rows replaced by
// random prompt vectors, encoded through the prompt path (with gradients
// enabled, as during mapper training; forward only).
std::function<void()> PromptPathBench(const Context& ctx) {
  ClipModel model = MakeModel(ctx);
  const at::Tensor tokens = PromptTokens().to(at::Device(ctx.device));
  at::Tensor embeddings;
  {
    at::InferenceMode guard(false);
    torch::NoGradGuard no_grad;
    embeddings = model->TokenEmbedding(tokens).clone();
  }
  const at::Tensor prompts =
      (at::randn({kPrompts, 4, 512}) * 0.02).to(at::Device(ctx.device)).requires_grad_(true);
  const at::Tensor eot = tokens.argmax(-1);
  (*ctx.extra)["positions"] = "7 (EOT cut), grad to prompts";
  return [model, embeddings, prompts, eot]() mutable {
    const at::Tensor x = at::cat({embeddings.slice(1, 0, 1), prompts, embeddings.slice(1, 5)}, 1);
    model->EncodeTextEmbeddings(x, eot);
  };
}

Registrar kImage1({.name = "clip/encode_image/vit_b32",
                   .shape = "ViT-B/32 224x224",
                   .batch = 1,
                   .warmup = 1,
                   .iters = 10,
                   .prepare = [](const Context& ctx) { return ImageBench(ctx, 1); }});
Registrar kImage8({.name = "clip/encode_image/vit_b32/batch8",
                   .shape = "ViT-B/32 224x224",
                   .batch = 8,
                   .warmup = 1,
                   .iters = 5,
                   .prepare = [](const Context& ctx) { return ImageBench(ctx, 8); }});
Registrar kTextCut({.name = "clip/encode_text/vit_b32/eot_cut",
                    .shape = "ViT-B/32 text, 'a photo of a <word>'",
                    .batch = kPrompts,
                    .baseline = "clip/encode_text/vit_b32/full77",
                    .warmup = 1,
                    .iters = 10,
                    .prepare = [](const Context& ctx) { return TextBench(ctx, true); }});
Registrar kTextFull({.name = "clip/encode_text/vit_b32/full77",
                     .shape = "ViT-B/32 text, 'a photo of a <word>'",
                     .batch = kPrompts,
                     .warmup = 1,
                     .iters = 5,
                     .prepare = [](const Context& ctx) { return TextBench(ctx, false); }});
Registrar kPrompt({.name = "clip/encode_text_embeddings/vit_b32/ipl_prompts",
                   .shape = "ViT-B/32 text, [SOT, 4 prompt vectors, word, EOT]",
                   .batch = kPrompts,
                   .baseline = "clip/encode_text/vit_b32/full77",
                   .warmup = 1,
                   .iters = 10,
                   .prepare = [](const Context& ctx) { return PromptPathBench(ctx); }});

}  // namespace
}  // namespace restyle::bench
