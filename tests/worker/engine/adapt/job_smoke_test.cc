// A few iterations of both stages the way the job runner drives them (random
// noise, seeded generator, layer selection on), on the tiny golden models:
// everything finite, the torch-1.13 zero-grad quirk persists across steps.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "tests/golden/golden.h"
#include "tests/worker/engine/adapt/adapt_test_util.h"
#include "worker/engine/adapt/ipl.h"
#include "worker/engine/clip/checkpoint.h"

namespace restyle::testing {
namespace {

std::string FirstModel(const std::string& role) {
  for (const std::string kind : {"ipl_stage2", "ipl_stage1"}) {
    for (const GoldenCase& c : CasesOfKind(kind)) return c.ModelPath(role);
  }
  return "";
}

TEST(AdaptJob, TwoIterationsOfEachStage) {
  RESTYLE_REQUIRE_GOLDEN();
  const std::string clip_path = FirstModel("clip");
  ASSERT_FALSE(clip_path.empty());
  engine::AdaptOptions options;
  options.target_class = "sketch";
  options.stage1.batch = 3;
  options.stage2.auto_layer_batch = 2;
  engine::ClipModel clip = engine::LoadClip(clip_path);
  clip->Freeze();
  engine::Generator source =
      engine::LoadGenerator(FirstModel("generator_source"));
  source->SetAllTrainable(false);
  const engine::JobTexts texts = engine::ComputeJobTexts(
      *clip, engine::TokenizeJobTexts(GoldenTokenizer(), options));
  engine::AdaptContext ctx{clip.get(), source.get(), &texts, &options};
  at::Generator rng = at::make_generator<at::CPUGeneratorImpl>(11);
  const int64_t style_dim = source->config().style_dim;

  engine::LatentMapper mapper =
      engine::NewMapperForJob(*source, *clip, options);
  engine::Adam mapper_adam = engine::MakeMapperAdam(*mapper, options);
  const engine::TensorMap mapper_before = StateCopy(*mapper);
  for (int i = 0; i < 2; ++i) {
    const engine::Stage1Losses l = engine::Stage1Step(
        ctx, *mapper, mapper_adam,
        engine::DrawZ(options.stage1.batch, style_dim, rng), rng);
    EXPECT_TRUE(std::isfinite(l.total)) << i;
  }
  EXPECT_FALSE(
      torch::equal(engine::StateDict(*mapper).at("mapping.mapping.4.weight"),
                   mapper_before.at("mapping.mapping.4.weight")));

  engine::Generator target = engine::CloneForTraining(*source);
  engine::Generator ema = engine::CloneForTraining(*source);
  engine::Adam g_adam = engine::MakeGeneratorAdam(*target, options);
  for (int i = 0; i < 2; ++i) {
    const engine::Stage2Result r = engine::Stage2Step(
        ctx, mapper.get(), *target, *ema, g_adam,
        engine::DrawZ(options.stage2.batch, style_dim, rng), {}, rng);
    EXPECT_TRUE(std::isfinite(r.loss)) << i;
    EXPECT_EQ(static_cast<int64_t>(r.trained_layers.size()),
              engine::AutoLayerK(options.stage2, source->config().n_latent()));
  }
  // Every synthesis parameter was stepped twice (zero-grad steps included),
  // the mapping network never.
  for (const auto& item : target->named_parameters()) {
    const bool style = item.key().rfind("style.", 0) == 0;
    EXPECT_EQ(g_adam.StepCount(item.key()), style ? 0 : 2) << item.key();
  }
  const torch::Tensor samples =
      engine::SampleImages(ctx, *ema, engine::DrawZ(2, style_dim, rng),
                           source->MeanLatent(64, rng), rng);
  EXPECT_EQ(samples.size(0), 2);
  EXPECT_TRUE(samples.isfinite().all().item<bool>());
  for (const auto& p : clip->parameters()) EXPECT_FALSE(p.grad().defined());
}

}  // namespace
}  // namespace restyle::testing
