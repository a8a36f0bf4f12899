// Training with several CLIP models (ClipGuide): every step with two models of
// different widths and input resolutions equals the weighted combination of
// the same step run with each model alone -- stage-2 loss and gradients,
// layer-selection gradients, and stage 1's one-mapper-per-model updates --
// and a whole job writes, checkpoints and resumes every mapper.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "worker/engine/adapt/ipl.h"
#include "worker/engine/adapt_job/demo_models.h"
#include "tests/worker/engine/adapt_job/job_test_util.h"
#include "worker/engine/adapt_job/job.h"
#include "worker/engine/clip/checkpoint.h"
#include "worker/engine/clip/random_weights.h"
#include "worker/engine/clip/tokenizer.h"
#include "worker/engine/common/error.h"
#include "worker/engine/common/threads.h"

namespace restyle::engine {
namespace {

namespace fs = std::filesystem;

constexpr double kWeightA = 0.25;
constexpr double kWeightB = 1.5;

// A second tiny CLIP unlike the demo one: text width 128 (the demo's is 64),
// embedding 48, 48x48 input (the demo's is 32x32).
ClipModel OtherClip() {
  ClipConfig c = DemoClipConfig();
  c.embed_dim = 48;
  c.image_resolution = 48;
  c.vision_width = 128;
  c.vision_grid = 6;
  c.vision_heads = 2;
  c.vision_layers = 1;
  c.transformer_width = 128;
  c.transformer_heads = 2;
  c.transformer_layers = 1;
  ClipModel clip = LoadClipFromTensors(RandomClipWeights(c, /*seed=*/99, kDemoClipStd), "clip-b");
  clip->Freeze();
  clip->eval();
  return clip;
}

struct Fixture {
  Generator source{nullptr};
  ClipModel a{nullptr};
  ClipModel b{nullptr};
  AdaptOptions options;
  JobTexts texts_a, texts_b;

  AdaptContext Context(const std::vector<std::pair<char, double>>& guides) {
    AdaptContext ctx;
    ctx.source = source.get();
    ctx.options = &options;
    for (const auto& [which, weight] : guides) {
      ctx.guides.push_back(which == 'a' ? ClipGuide{a.get(), &texts_a, weight}
                                        : ClipGuide{b.get(), &texts_b, weight});
    }
    return ctx;
  }
};

Fixture& Models() {
  static Fixture* f = [] {
    SetThreadCount(1);
    auto* f = new Fixture;
    f->source = DemoGenerator();
    f->source->SetAllTrainable(false);
    f->a = DemoClip();
    f->b = OtherClip();
    f->options.target_class = "disney";
    f->options.noise = NoiseMode::kStored;  // separate runs see the same noise
    f->options.stage1.batch = 4;
    f->options.stage2.batch = 3;
    f->options.stage2.auto_layer_batch = 4;
    auto tokenizer = Tokenizer::FromFile(DefaultVocabPath());
    const JobTokens tokens = TokenizeJobTexts(*tokenizer, f->options);
    torch::NoGradGuard no_grad;
    f->texts_a = ComputeJobTexts(*f->a, tokens);
    f->texts_b = ComputeJobTexts(*f->b, tokens);
    return f;
  }();
  return *f;
}

torch::Tensor W(int64_t n, uint64_t seed) {
  Fixture& f = Models();
  torch::NoGradGuard no_grad;
  at::Generator rng = at::make_generator<at::CPUGeneratorImpl>(seed);
  return f.source->Mapping(DrawZ(n, f.source->config().style_dim, rng));
}

// |a - b| <= 1e-4 * max|b| + 1e-7 elementwise: float32 summation order
// (noise-weight gradients sum over every pixel), far below what a wrong
// weight or a missing model would change.
void ExpectClose(const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double scale = b.abs().max().item<double>();
  const double diff = (a - b).abs().max().item<double>();
  EXPECT_LE(diff, 1e-4 * scale + 1e-7) << what << ": max|a-b| " << diff << ", max|b| " << scale;
}

struct Stage2Run {
  Stage2Result result;
  Stage2Trace trace;
};

Stage2Run RunStage2(const AdaptContext& ctx, const std::vector<LatentMapperImpl*>& mappers,
                    const torch::Tensor& w) {
  Fixture& f = Models();
  Generator target = CloneForTraining(*f.source);
  Generator ema = CloneForTraining(*f.source);
  Adam adam = MakeGeneratorAdam(*target, *ctx.options);
  Stage2Run run;
  run.result = Stage2StepFromW(ctx, mappers, *target, *ema, adam, w, {}, c10::nullopt, &run.trace);
  return run;
}

// Stage 2 with two models = kWeightA x (model A alone) + kWeightB x (model B
// alone): the loss, each model's own loss and every generator gradient.
void CheckStage2IsWeightedSum(AdaptMethod method) {
  Fixture& f = Models();
  f.options.method = method;
  f.options.stage2.auto_layer_iters = 0;  // the same trainable layers in every run
  LatentMapper mapper_a = NewMapperForJob(*f.source, *f.a, f.options);
  LatentMapper mapper_b = NewMapperForJob(*f.source, *f.b, f.options);
  ASSERT_NE(mapper_a->config().text_width, mapper_b->config().text_width);
  const bool ipl = method == AdaptMethod::kIpl;
  auto maybe = [ipl](LatentMapper& m) -> LatentMapperImpl* { return ipl ? m.get() : nullptr; };
  const torch::Tensor w = W(f.options.stage2.batch, 5);

  const Stage2Run alone_a = RunStage2(f.Context({{'a', 1.0}}), {maybe(mapper_a)}, w);
  const Stage2Run alone_b = RunStage2(f.Context({{'b', 1.0}}), {maybe(mapper_b)}, w);
  const Stage2Run both = RunStage2(f.Context({{'a', kWeightA}, {'b', kWeightB}}),
                                   {maybe(mapper_a), maybe(mapper_b)}, w);
  f.options.stage2.auto_layer_iters = 1;

  ASSERT_EQ(both.result.guide_losses.size(), 2u);
  EXPECT_NEAR(both.result.guide_losses[0], alone_a.result.loss, 1e-6);
  EXPECT_NEAR(both.result.guide_losses[1], alone_b.result.loss, 1e-6);
  EXPECT_NEAR(both.result.loss, kWeightA * alone_a.result.loss + kWeightB * alone_b.result.loss,
              1e-6);
  EXPECT_NE(alone_a.result.loss, alone_b.result.loss);  // the models do differ
  ASSERT_FALSE(both.trace.grads.empty());
  for (const auto& [name, grad] : both.trace.grads) {
    ASSERT_TRUE(alone_a.trace.grads.count(name) && alone_b.trace.grads.count(name)) << name;
    ExpectClose(grad, kWeightA * alone_a.trace.grads.at(name) + kWeightB * alone_b.trace.grads.at(name),
                "gradient of " + name);
  }
}

TEST(MultiClip, IplStage2IsTheWeightedSumOfEachModel) {
  CheckStage2IsWeightedSum(AdaptMethod::kIpl);
}

TEST(MultiClip, NadaStage2IsTheWeightedSumOfEachModel) {
  CheckStage2IsWeightedSum(AdaptMethod::kNada);
}

TEST(MultiClip, LayerSelectionFollowsTheWeightedSum) {
  Fixture& f = Models();
  at::Generator rng = at::make_generator<at::CPUGeneratorImpl>(8);
  const torch::Tensor z = DrawZ(f.options.stage2.auto_layer_batch, f.source->config().style_dim, rng);
  auto w_grad = [&](const AdaptContext& ctx) {
    Generator target = CloneForTraining(*f.source);
    LayerSelectionTrace trace;
    SelectLayers(ctx, *target, z, 1, c10::nullopt, &trace);
    return std::make_pair(trace.w_grads.at(0), trace.losses.at(0));
  };
  const auto [grad_a, loss_a] = w_grad(f.Context({{'a', 1.0}}));
  const auto [grad_b, loss_b] = w_grad(f.Context({{'b', 1.0}}));
  const auto [grad_both, loss_both] = w_grad(f.Context({{'a', kWeightA}, {'b', kWeightB}}));
  EXPECT_NEAR(loss_both, kWeightA * loss_a + kWeightB * loss_b, 1e-6);
  ExpectClose(grad_both, kWeightA * grad_a + kWeightB * grad_b, "W+ gradient");
}

// Stage 1 trains one mapper per model, each exactly as if its model were alone.
TEST(MultiClip, Stage1TrainsOneMapperPerModel) {
  Fixture& f = Models();
  f.options.method = AdaptMethod::kIpl;
  const torch::Tensor w = W(f.options.stage1.batch, 6);
  auto train = [&](const AdaptContext& ctx, std::vector<LatentMapper>& mappers) {
    std::vector<Adam> adams;
    adams.reserve(mappers.size());
    std::vector<MapperSlot> slots;
    for (auto& m : mappers) adams.push_back(MakeMapperAdam(*m, f.options));
    for (size_t i = 0; i < mappers.size(); ++i) slots.push_back({mappers[i].get(), &adams[i]});
    std::vector<Stage1Losses> losses;
    for (int step = 0; step < 2; ++step) losses = Stage1StepFromW(ctx, slots, w);
    return losses;
  };
  std::vector<LatentMapper> alone_a = {NewMapperForJob(*f.source, *f.a, f.options)};
  std::vector<LatentMapper> alone_b = {NewMapperForJob(*f.source, *f.b, f.options)};
  std::vector<LatentMapper> both = {NewMapperForJob(*f.source, *f.a, f.options),
                                    NewMapperForJob(*f.source, *f.b, f.options)};
  TensorMap initial_b;
  for (const auto& [name, t] : StateDict(*both[1])) initial_b[name] = t.clone();
  const auto losses_a = train(f.Context({{'a', 1.0}}), alone_a);
  const auto losses_b = train(f.Context({{'b', 1.0}}), alone_b);
  const auto losses_both = train(f.Context({{'a', kWeightA}, {'b', kWeightB}}), both);
  ASSERT_EQ(losses_both.size(), 2u);
  EXPECT_NEAR(losses_both[0].total, losses_a[0].total, 1e-6);
  EXPECT_NEAR(losses_both[0].contrastive, losses_a[0].contrastive, 1e-6);
  EXPECT_NEAR(losses_both[1].total, losses_b[0].total, 1e-6);
  EXPECT_NEAR(losses_both[1].target, losses_b[0].target, 1e-6);
  for (const auto& [name, t] : StateDict(*both[0])) {
    ExpectClose(t, StateDict(*alone_a[0]).at(name), "mapper A " + name);
  }
  bool moved = false;
  for (const auto& [name, t] : StateDict(*both[1])) {
    ExpectClose(t, StateDict(*alone_b[0]).at(name), "mapper B " + name);
    moved = moved || !torch::equal(t, initial_b.at(name));
  }
  EXPECT_TRUE(moved) << "mapper B did not train";
}

TEST(MultiClip, OneModelOverloadsRejectSeveralModels) {
  Fixture& f = Models();
  f.options.method = AdaptMethod::kIpl;
  LatentMapper mapper = NewMapperForJob(*f.source, *f.a, f.options);
  Adam adam = MakeMapperAdam(*mapper, f.options);
  const AdaptContext ctx = f.Context({{'a', 1.0}, {'b', 1.0}});
  try {
    Stage1StepFromW(ctx, *mapper, adam, W(2, 1));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("one mapper per guide"), std::string::npos) << e.what();
  }
  AdaptContext bad = f.Context({{'a', 1.0}});
  bad.guides[0].weight = 0;
  EXPECT_THROW(Stage1StepFromW(bad, *mapper, adam, W(2, 1)), Error);
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

// A whole IPL job with two models: both mappers are trained, checkpointed,
// written and listed; progress reports the second model's loss; a second run
// resumes stage 1 with both mappers and ends with the same generator.
TEST(MultiClip, JobTrainsCheckpointsAndResumesEveryMapper) {
  JobOptions o = SmallJob(FreshDir("multi_clip"), AdaptMethod::kIpl, 3);
  o.adapt.stage2.auto_layer_batch = 4;
  JobModels models = LoadJobModels(o);  // the demo models, and a second CLIP below
  models.clips.push_back(OtherClip());
  models.clip_names.push_back("clip-b");
  models.clip_weights.push_back(0.5);

  std::set<std::string> stage1_terms, stage2_terms;
  JobCallbacks callbacks;
  callbacks.on_progress = [&](const JobProgress& p) {
    for (const auto& [name, value] : p.losses) {
      EXPECT_TRUE(std::isfinite(value)) << name;
      (p.stage == 1 ? stage1_terms : stage2_terms).insert(name);
    }
  };
  const JobResult first = RunJob(o, models, callbacks);
  EXPECT_FALSE(first.stage1_resumed);
  ASSERT_EQ(first.mapper_paths.size(), 2u);
  for (const std::string& path : first.mapper_paths) EXPECT_TRUE(fs::exists(path)) << path;
  EXPECT_EQ(first.mapper_path, first.mapper_paths[0]);
  EXPECT_TRUE(stage1_terms.count("total") && stage1_terms.count("clip1.total"));
  EXPECT_TRUE(stage2_terms.count("loss") && stage2_terms.count("clip0") &&
              stage2_terms.count("clip1"));

  const nlohmann::json result = ReadJson(first.result_path);
  ASSERT_EQ(result["clip"].size(), 2u);
  EXPECT_EQ(result["clip"][1]["name"], "clip-b");
  EXPECT_EQ(result["clip"][1]["weight"], 0.5);
  EXPECT_EQ(result["clip"][1]["mapper"], "mapper_clip1.safetensors");
  EXPECT_TRUE(result["losses"]["stage1"].contains("clip1.total"));
  EXPECT_TRUE(result["losses"]["stage2"].contains("clip1"));
  EXPECT_EQ(result["quality"]["models"].size(), 2u);

  const JobResult again = RunJob(o, models);
  EXPECT_TRUE(again.stage1_resumed);
  EXPECT_EQ(GeneratorImpl::Digest(*again.adapted), GeneratorImpl::Digest(*first.adapted));

  // The same output dir with one model: the two-model checkpoint is not reused.
  JobModels one = LoadJobModels(o);
  EXPECT_FALSE(RunJob(o, one).stage1_resumed);
}

}  // namespace
}  // namespace restyle::engine
