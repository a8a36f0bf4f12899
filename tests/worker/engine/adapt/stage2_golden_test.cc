// Golden tests of stage 2 (kinds ipl_stage2, ipl_stage2_autolayer,
// nada_direction) and of adaptive layer selection (kind layer_select).
#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "tests/golden/golden.h"
#include "tests/worker/engine/adapt/adapt_test_util.h"
#include "worker/engine/adapt/ipl.h"
#include "worker/engine/adapt/mapper.h"
#include "worker/engine/adapt/optim.h"
#include "worker/engine/adapt/text.h"
#include "worker/engine/clip/checkpoint.h"

namespace restyle::testing {
namespace {

using engine::AdaptOptions;

TEST(AdaptOptim, AdamTorch1ZeroGradSemantics) {
  torch::Tensor a = torch::ones({3}).requires_grad_(true);
  torch::Tensor b = torch::ones({3}).requires_grad_(true);
  engine::AdamOptions o;
  o.lr = 0.1;
  o.beta1 = 0;
  o.beta2 = 0.99;
  engine::Adam adam({{"a", a}, {"b", b}}, o);
  a.mutable_grad() = torch::full({3}, 2.0);
  adam.MarkGradAllocated({"b"});
  adam.Step();
  EXPECT_EQ(adam.StepCount("a"), 1);
  EXPECT_EQ(adam.StepCount("b"), 1);  // zero-grad step, like torch 1.13
  EXPECT_TRUE(torch::equal(b, torch::ones({3})));
  EXPECT_NEAR(a[0].item<double>(), 1 - 0.1 * 2 / (2 + 1e-8), 1e-6);
  adam.ZeroGrad();
  adam.Step();  // both allocated: both stepped with zero gradients
  EXPECT_EQ(adam.StepCount("a"), 2);
  EXPECT_EQ(adam.StepCount("b"), 2);

  o.torch1_zero_grad = false;
  torch::Tensor c = torch::ones({3}).requires_grad_(true);
  engine::Adam adam2({{"c", c}}, o);
  adam2.MarkGradAllocated({"c"});
  adam2.Step();
  EXPECT_EQ(adam2.StepCount("c"), 0);
}

// A trainer case's options, models, texts and context (which points into
// it, so it is built in place and never copied). The target generator's
// parameters require grad when `target_trainable` (layer selection: as the
// reference's unfreeze_layers() leaves them).
struct CaseSetup {
  CaseSetup(const GoldenCase& c, bool target_trainable)
      : options(OptionsFromCase(c)),
        clip(CaseClip(c)),
        source(CaseGenerator(c, "generator_source", false)),
        target(CaseGenerator(c, "generator_target_init", target_trainable)),
        tokens(engine::TokenizeJobTexts(GoldenTokenizer(), options)),
        texts(engine::ComputeJobTexts(*clip, tokens)),
        ctx{clip.get(), source.get(), &texts, &options} {}
  CaseSetup(const CaseSetup&) = delete;
  CaseSetup& operator=(const CaseSetup&) = delete;

  AdaptOptions options;
  engine::ClipModel clip;
  engine::Generator source;
  engine::Generator target;
  engine::JobTokens tokens;
  engine::JobTexts texts;
  engine::AdaptContext ctx;
};

TEST(AdaptGolden, LayerSelect) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("layer_select")) {
    SCOPED_TRACE(c.name);
    CaseSetup setup(c, /*target_trainable=*/true);
    AdaptOptions& options = setup.options;
    engine::ClipModel& clip = setup.clip;
    engine::Generator& target = setup.target;
    engine::AdaptContext& ctx = setup.ctx;
    const int64_t iters = options.stage2.auto_layer_iters;
    engine::LayerSelectionTrace trace;
    const engine::LayerSelection sel = engine::SelectLayers(
        ctx, *target, Input(c, "z"), iters, c10::nullopt, &trace);

    ExpectMatches(c.name, "initial_w_codes", trace.initial_w_codes,
                  c.Tensor("initial_w_codes"));
    const auto losses =
        c.meta.at("scalars").at("losses").get<std::vector<double>>();
    ASSERT_EQ(trace.losses.size(), losses.size());
    for (int64_t i = 0; i < iters; ++i) {
      const std::string p = "iter" + std::to_string(i) + ".";
      ExpectMatches(c.name, p + "images", trace.images[i],
                    c.Tensor(p + "images"));
      ExpectMatches(c.name, p + "w_grad", trace.w_grads[i],
                    c.Tensor(p + "w_grad"));
      ExpectMatches(c.name, p + "w_codes_after", trace.w_codes_after[i],
                    c.Tensor(p + "w_codes_after"));
      ExpectLossNear(c.name, "losses[" + std::to_string(i) + "]",
                     trace.losses[i], losses[i]);
    }
    ExpectMatches(c.name, "layer_weights", sel.layer_weights,
                  c.Tensor("layer_weights"));
    ExpectExact(c.name, "chosen_layer_indices",
                torch::tensor(sel.indices, torch::kLong),
                c.Tensor("chosen_layer_indices"));
    EXPECT_EQ(sel.layers,
              c.meta.at("chosen_layers").get<std::vector<std::string>>());
    EXPECT_EQ(target->LayerSelectionNames(),
              c.meta.at("index_to_layer").get<std::vector<std::string>>());
    // No gradient leaked into any weight; requires_grad flags restored.
    for (const auto& p : target->parameters()) {
      EXPECT_FALSE(p.grad().defined());
      EXPECT_TRUE(p.requires_grad());
    }
    for (const auto& p : clip->parameters()) EXPECT_FALSE(p.grad().defined());
  }
}

// Layer selection on a bfloat16 copy of G_t (AdaptContext::selection_lowp):
// the copy is refreshed from G_t, W+ and its update stay float32, nothing
// leaks into G_t, and the W+ gradient and the per-layer weights point the
// same way as the reference's (cosine > 0.98; bfloat16 keeps 8 significant
// bits, so they are not equal). Which layers win can differ where two are
// within rounding of each other, so the choice is not compared.
TEST(AdaptGolden, LayerSelectInBfloat16) {
  RESTYLE_REQUIRE_GOLDEN();
  const auto cosine = [](const torch::Tensor& a, const torch::Tensor& b) {
    auto x = a.to(torch::kFloat64).flatten(), y = b.to(torch::kFloat64).flatten();
    return (x.dot(y) / (x.norm() * y.norm())).item<double>();
  };
  for (const GoldenCase& c : CasesOfKind("layer_select")) {
    SCOPED_TRACE(c.name);
    CaseSetup setup(c, /*target_trainable=*/true);
    AdaptOptions& options = setup.options;
    engine::Generator& target = setup.target;
    engine::AdaptContext& ctx = setup.ctx;
    // A copy made from another generator: the selection must refresh it.
    engine::Generator lowp = engine::LowPrecisionCopy(*setup.source, torch::kBFloat16);
    ctx.selection_lowp = lowp.get();
    engine::LayerSelectionTrace trace;
    const engine::LayerSelection sel = engine::SelectLayers(
        ctx, *target, Input(c, "z"), options.stage2.auto_layer_iters, c10::nullopt, &trace);

    auto target_params = target->parameters(), lowp_params = lowp->parameters();
    ASSERT_EQ(target_params.size(), lowp_params.size());
    for (size_t i = 0; i < target_params.size(); ++i) {
      EXPECT_TRUE(torch::equal(lowp_params[i], target_params[i].to(torch::kBFloat16))) << i;
      EXPECT_FALSE(target_params[i].grad().defined());
      EXPECT_TRUE(target_params[i].requires_grad());
      EXPECT_FALSE(lowp_params[i].grad().defined());
    }
    ASSERT_FALSE(trace.w_grads.empty());
    EXPECT_EQ(trace.w_grads[0].scalar_type(), torch::kFloat32);
    EXPECT_EQ(trace.w_codes_after.back().scalar_type(), torch::kFloat32);
    const double grad_cosine = cosine(trace.w_grads[0], c.Tensor("iter0.w_grad"));
    const double weights_cosine = cosine(sel.layer_weights, c.Tensor("layer_weights"));
    EXPECT_GT(grad_cosine, 0.98);
    EXPECT_GT(weights_cosine, 0.98);
    const auto golden_layers = c.meta.at("chosen_layers").get<std::vector<std::string>>();
    std::printf("%s in bfloat16: W+ gradient cosine %.5f, layer weights cosine %.5f, "
                "chosen layers %s float32's\n",
                c.name.c_str(), grad_cosine, weights_cosine,
                std::set<std::string>(sel.layers.begin(), sel.layers.end()) ==
                        std::set<std::string>(golden_layers.begin(), golden_layers.end())
                    ? "=="
                    : "!=");
    const int64_t n_latent = target->config().n_latent();
    std::set<int64_t> distinct(sel.indices.begin(), sel.indices.end());
    EXPECT_EQ(static_cast<int64_t>(distinct.size()), engine::AutoLayerK(options.stage2, n_latent));
    for (int64_t i : sel.indices) EXPECT_TRUE(i >= 0 && i < n_latent) << i;
  }
}

// A stage-2 case: CaseSetup plus G_ema, the stage-1 mapper, Adam, and its step.
struct Stage2Setup : CaseSetup {
  explicit Stage2Setup(const GoldenCase& c)
      : CaseSetup(c, /*target_trainable=*/false),
        ema(engine::CloneForTraining(*source)),  // the reference's g_ema = source
        mapper(OnTestDevice(engine::LatentMapperFromTensors(
            GoldenModel(c.ModelPath("mapper_init")), tokens.n_ctx,
            c.ModelPath("mapper_init")))),
        adam(engine::MakeGeneratorAdam(*target, options)) {}

  // One step on the case's inputs: z, or only w (the NADA case).
  engine::Stage2Result Step(const GoldenCase& c, engine::Stage2Trace* trace) {
    torch::Tensor z_select =
        c.Has("z_layer_select") ? Input(c, "z_layer_select") : torch::Tensor();
    return c.Has("z") ? engine::Stage2Step(ctx, mapper.get(), *target, *ema, adam,
                                           Input(c, "z"), z_select, c10::nullopt, trace)
                      : engine::Stage2StepFromW(ctx, mapper.get(), *target, *ema, adam,
                                                Input(c, "w"), z_select, c10::nullopt, trace);
  }

  engine::Generator ema;
  engine::LatentMapper mapper;
  engine::Adam adam;
};

void RunStage2Case(const GoldenCase& c) {
  SCOPED_TRACE(c.name);
  Stage2Setup setup(c);
  const AdaptOptions& options = setup.options;
  const engine::ClipModel& clip = setup.clip;
  const engine::Generator& source = setup.source;
  const engine::Generator& target = setup.target;
  const engine::Generator& ema = setup.ema;
  const engine::JobTokens& tokens = setup.tokens;
  const engine::JobTexts& texts = setup.texts;
  const engine::Adam& adam = setup.adam;
  const engine::TensorMap target_init = StateCopy(*target);
  engine::Stage2Trace trace;
  const engine::Stage2Result result = setup.Step(c, &trace);

  ExpectLossNear(c.name, "loss", result.loss, c.Scalar("loss"));
  ExpectMatches(c.name, "w", trace.w, c.Tensor("w"));
  ExpectMatches(c.name, "src_images", trace.src_images, c.Tensor("src_images"));
  ExpectMatches(c.name, "dst_images", trace.dst_images, c.Tensor("dst_images"));
  const std::vector<std::pair<std::string, torch::Tensor>> optional_checks = {
      {"prompts", trace.prompts},
      {"source_text_features", trace.source_text_features},
      {"target_text_features", trace.target_text_features},
      {"text_directions", trace.text_directions},
      {"text_direction_in_loss", trace.text_directions},
      {"src_image_features", trace.src_image_features},
      {"dst_image_features", trace.dst_image_features},
      {"edit_directions", trace.edit_directions},
      {"base_text_features", texts.stage2_source_base},
      {"source_template_features", texts.source.template_features},
      {"target_template_features", texts.target.template_features},
      {"text_direction", texts.nada_direction},
  };
  for (const auto& [name, actual] : optional_checks) {
    if (!c.Has(name)) continue;
    ASSERT_TRUE(actual.defined()) << name;
    ExpectMatches(c.name, name, actual, Like(c.Tensor(name), actual));
  }
  if (c.Has("base_text_features") &&
      c.meta.at("scalars").value("base_source_equals_base_target", false)) {
    EXPECT_TRUE(
        torch::equal(texts.stage2_source_base, texts.stage2_target_base));
  }
  // The reference adds the base features in place to the caller's tensors.
  if (c.Has("source_text_features_after_call")) {
    torch::Tensor s = trace.source_text_features + texts.stage2_source_base;
    ExpectMatches(c.name, "source_text_features_after_call", s,
                  Like(c.Tensor("source_text_features_after_call"), s));
  }
  if (c.Has("target_text_features_after_call")) {
    torch::Tensor t = trace.target_text_features + texts.stage2_target_base;
    ExpectMatches(c.name, "target_text_features_after_call", t,
                  Like(c.Tensor("target_text_features_after_call"), t));
  }
  for (const char* name :
       {"template_tokens_source", "template_tokens_target"}) {
    if (!c.Has(name)) continue;
    const bool src = std::string(name).find("source") != std::string::npos;
    ExpectExact(c.name, name,
                src ? tokens.source.templates : tokens.target.templates,
                c.Tensor(name));
  }

  // Layer selection inside the step.
  if (options.stage2.auto_layer_iters > 0) {
    const auto& sel = trace.selection;
    const auto& st = trace.selection_trace;
    if (c.Has("layer_select.initial_w_codes")) {
      ExpectMatches(c.name, "layer_select.initial_w_codes", st.initial_w_codes,
                    c.Tensor("layer_select.initial_w_codes"));
    }
    if (c.Has("layer_select.w_grad")) {
      ExpectMatches(c.name, "layer_select.w_grad", st.w_grads.back(),
                    c.Tensor("layer_select.w_grad"));
    }
    if (c.Has("layer_select.w_codes_after")) {
      ExpectMatches(c.name, "layer_select.w_codes_after",
                    st.w_codes_after.back(),
                    c.Tensor("layer_select.w_codes_after"));
    }
    ExpectMatches(c.name, "layer_select.layer_weights", sel.layer_weights,
                  c.Tensor("layer_select.layer_weights"));
    ExpectExact(c.name, "chosen_layer_indices",
                torch::tensor(sel.indices, torch::kLong),
                c.Tensor("chosen_layer_indices"));
    EXPECT_EQ(sel.layers,
              c.meta.at("chosen_layers").get<std::vector<std::string>>());
  }

  // Gradients: every non-zero golden gradient, and no other non-zero one.
  const engine::TensorMap after = engine::StateDict(*target);
  for (const auto& [name, golden] : c.Tensors()) {
    if (name.rfind("grad.", 0) != 0) continue;
    const std::string param = name.substr(5);
    ASSERT_TRUE(trace.grads.count(param)) << "no gradient for " << param;
    ExpectMatches(c.name, name, trace.grads.at(param), golden);
  }
  for (const auto& [param, grad] : trace.grads) {
    if (!c.Has("grad." + param)) {
      EXPECT_EQ(grad.abs().max().item<double>(), 0.0)
          << "unexpected gradient on " << param;
    }
  }
  // Updated parameters; everything not listed as changed is bitwise unchanged.
  const auto changed =
      c.meta.at("changed_after_step").get<std::vector<std::string>>();
  for (const auto& [name, value] : after) {
    const bool is_changed =
        std::find(changed.begin(), changed.end(), name) != changed.end();
    if (is_changed) {
      ASSERT_TRUE(c.Has("after." + name)) << name;
      ExpectAdamStep(c.name, "after." + name, value, c.Tensor("after." + name),
                     c.Tensor("grad." + name), options.stage2.lr);
    } else {
      EXPECT_TRUE(torch::equal(value, target_init.at(name)))
          << name << " changed";
    }
  }
  // torch 1.13 Adam state: which parameters were stepped (zero-grad ones too).
  if (c.meta.contains("adam_state_steps")) {
    for (const auto& [name, steps] : c.meta.at("adam_state_steps").items()) {
      EXPECT_EQ(adam.StepCount(name), steps.get<int64_t>()) << name;
    }
    for (const auto& item : target->named_parameters()) {
      if (!c.meta.at("adam_state_steps").contains(item.key())) {
        EXPECT_EQ(adam.StepCount(item.key()), 0) << item.key();
      }
    }
  }
  // EMA over every state_dict entry (buffers included).
  const engine::TensorMap ema_state = engine::StateDict(*ema);
  for (const auto& [name, golden] : c.Tensors()) {
    if (name.rfind("ema_after.", 0) != 0) continue;
    const std::string entry = name.substr(10);
    ASSERT_TRUE(ema_state.count(entry)) << entry;
    ExpectMatches(c.name, name, ema_state.at(entry), golden);
  }
  for (const auto& p : clip->parameters()) EXPECT_FALSE(p.grad().defined());
  for (const auto& p : source->parameters()) EXPECT_FALSE(p.grad().defined());
  for (const auto& p : setup.mapper->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(AdaptGolden, Stage2) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("ipl_stage2")) RunStage2Case(c);
}

TEST(AdaptGolden, Stage2AutoLayer) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("ipl_stage2_autolayer"))
    RunStage2Case(c);
}

TEST(AdaptGolden, NadaDirection) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("nada_direction")) RunStage2Case(c);
}

// The stage-2 step on a bfloat16 copy of G_t (AdaptContext::train_lowp, with
// selection_lowp the same copy): the loss near the reference's (5e-2 of a
// loss in [0, 2]: where G_t still equals G_s the edit direction is a small
// difference of two images, and the bfloat16 side's rounding is part of it;
// 1.8e-2 on the public NADA case), the generator's gradients, all together,
// pointing the same way (cosine > 0.98), handed to G_t in float32 with
// nothing left on the copy. Every stage-2 case (IPL, with layer selection,
// NADA).
TEST(AdaptGolden, Stage2InBfloat16) {
  RESTYLE_REQUIRE_GOLDEN();
  int cases = 0;
  for (const char* kind : {"ipl_stage2", "ipl_stage2_autolayer", "nada_direction"}) {
    for (const GoldenCase& c : CasesOfKind(kind)) {
      SCOPED_TRACE(c.name);
      ++cases;
      Stage2Setup setup(c);
      engine::Generator lowp = engine::LowPrecisionCopy(*setup.source, torch::kBFloat16);
      setup.ctx.train_lowp = lowp.get();
      setup.ctx.selection_lowp = lowp.get();
      engine::Stage2Trace trace;
      const engine::Stage2Result result = setup.Step(c, &trace);
      EXPECT_NEAR(result.loss, c.Scalar("loss"), 5e-2);
      std::vector<torch::Tensor> ours, golden;
      for (const auto& [name, tensor] : c.Tensors()) {
        if (name.rfind("grad.", 0) != 0) continue;
        const std::string param = name.substr(5);
        ASSERT_TRUE(trace.grads.count(param)) << "no gradient for " << param;
        EXPECT_EQ(trace.grads.at(param).scalar_type(), torch::kFloat32) << param;
        ours.push_back(trace.grads.at(param).to(torch::kFloat64).flatten().cpu());
        golden.push_back(tensor.to(torch::kFloat64).flatten());
      }
      ASSERT_FALSE(ours.empty());
      const auto a = torch::cat(ours), b = torch::cat(golden);
      const double cosine = (a.dot(b) / (a.norm() * b.norm())).item<double>();
      EXPECT_GT(cosine, 0.98);
      std::printf("%s in bfloat16: loss %.6f (float32 %.6f), gradient cosine %.5f\n",
                  c.name.c_str(), result.loss, c.Scalar("loss"), cosine);
      for (const auto& p : lowp->parameters()) EXPECT_FALSE(p.grad().defined());
    }
  }
  EXPECT_GT(cases, 0);
}

}  // namespace
}  // namespace restyle::testing
