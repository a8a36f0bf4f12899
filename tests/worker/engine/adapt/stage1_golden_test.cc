// Golden tests of IPL stage 1 (every case of kind ipl_stage1): job texts,
// prompt features, loss terms, mapper gradients and the Adam step.
#include <gtest/gtest.h>

#include <string>

#include "tests/golden/golden.h"
#include "tests/worker/engine/adapt/adapt_test_util.h"
#include "worker/engine/adapt/ipl.h"
#include "worker/engine/adapt/mapper.h"
#include "worker/engine/adapt/text.h"
#include "worker/engine/clip/checkpoint.h"

namespace restyle::testing {
namespace {

using engine::AdaptOptions;

TEST(AdaptText, TemplatesAreTheGoldenList) {
  RESTYLE_REQUIRE_GOLDEN();
  const Json json = ReadJsonFile(
      GoldenPath(Manifest().at("text_templates").get<std::string>()));
  EXPECT_EQ(engine::TextTemplates(),
            json.at("imagenet_templates").get<std::vector<std::string>>());
  EXPECT_EQ(engine::FormatTemplate("a photo of a", "x"), "a photo of a");
  EXPECT_EQ(engine::FormatTemplate("a {} of {}.", "x"), "a x of x.");
}

TEST(AdaptMapper, RandomInitIsDeterministicAndNamed) {
  engine::MapperConfig config{16, 2, 8, 0.01};
  auto a = engine::RandomLatentMapper(config, 7);
  auto b = engine::RandomLatentMapper(config, 7);
  auto sa = engine::StateDict(*a);
  auto sb = engine::StateDict(*b);
  ASSERT_EQ(sa.size(), 8u);
  for (int i = 1; i <= 4; ++i) {
    for (const char* p : {"weight", "bias"}) {
      const std::string name = "mapping.mapping." + std::to_string(i) + "." + p;
      ASSERT_TRUE(sa.count(name)) << name;
      EXPECT_TRUE(torch::equal(sa.at(name), sb.at(name))) << name;
    }
  }
  EXPECT_EQ(a->forward(torch::randn({3, 16})).sizes(),
            (std::vector<int64_t>{3, 2, 8}));
}

TEST(AdaptGolden, Stage1) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("ipl_stage1")) {
    SCOPED_TRACE(c.name);
    AdaptOptions options = OptionsFromCase(c);
    engine::ClipModel clip = CaseClip(c);
    engine::Generator source = CaseGenerator(c, "generator_source", false);

    const engine::JobTokens tokens =
        engine::TokenizeJobTexts(GoldenTokenizer(), options);
    ASSERT_EQ(tokens.n_ctx, static_cast<int64_t>(c.Scalar("n_ctx")));
    ExpectExact(c.name, "source_tokenized_prompts", tokens.source.prompt,
                c.Tensor("source_tokenized_prompts"));
    ExpectExact(c.name, "target_tokenized_prompts", tokens.target.prompt,
                c.Tensor("target_tokenized_prompts"));
    ExpectExact(c.name, "template_tokens_source", tokens.source.templates,
                c.Tensor("template_tokens_source"));
    ExpectExact(c.name, "template_tokens_target", tokens.target.templates,
                c.Tensor("template_tokens_target"));
    const engine::JobTexts texts = engine::ComputeJobTexts(*clip, tokens);
    EXPECT_EQ(texts.source.prompt.eot_index.item<int64_t>(),
              static_cast<int64_t>(c.Scalar("eot_index_source")));
    EXPECT_EQ(texts.target.prompt.eot_index.item<int64_t>(),
              static_cast<int64_t>(c.Scalar("eot_index_target")));
    ExpectMatches(c.name, "source_prefix", texts.source.prompt.prefix,
                  c.Tensor("source_prefix"));
    ExpectMatches(c.name, "source_suffix", texts.source.prompt.suffix,
                  c.Tensor("source_suffix"));
    ExpectMatches(c.name, "target_prefix", texts.target.prompt.prefix,
                  c.Tensor("target_prefix"));
    ExpectMatches(c.name, "target_suffix", texts.target.prompt.suffix,
                  c.Tensor("target_suffix"));
    ExpectMatches(c.name, "init_source_features", texts.source.stage1_base,
                  c.Tensor("init_source_features"));
    ExpectMatches(c.name, "init_target_features", texts.target.stage1_base,
                  c.Tensor("init_target_features"));
    ExpectMatches(c.name, "templates_source_features",
                  texts.source.template_mean,
                  c.Tensor("templates_source_features"));
    ExpectMatches(c.name, "templates_target_features",
                  texts.target.template_mean,
                  c.Tensor("templates_target_features"));

    engine::LatentMapper mapper = OnTestDevice(engine::LatentMapperFromTensors(
        GoldenModel(c.ModelPath("mapper_init")), tokens.n_ctx, c.ModelPath("mapper_init")));
    engine::Adam adam = engine::MakeMapperAdam(*mapper, options);
    engine::AdaptContext ctx{clip.get(), source.get(), &texts, &options};
    engine::Stage1Trace trace;
    const engine::Stage1Losses losses = engine::Stage1Step(
        ctx, *mapper, adam, Input(c, "z"), c10::nullopt, &trace);

    ExpectMatches(c.name, "w", trace.w, c.Tensor("w"));
    ExpectMatches(c.name, "prompts", trace.prompts, c.Tensor("prompts"));
    ExpectMatches(c.name, "images", trace.images, c.Tensor("images"));
    ExpectMatches(c.name, "clip_input", trace.clip_input,
                  c.Tensor("clip_input"));
    ExpectMatches(c.name, "image_features", trace.image_features,
                  c.Tensor("image_features"));
    ExpectMatches(
        c.name, "source_text_features", trace.source_text_features,
        Like(c.Tensor("source_text_features"), trace.source_text_features));
    ExpectMatches(
        c.name, "target_text_features", trace.target_text_features,
        Like(c.Tensor("target_text_features"), trace.target_text_features));
    ExpectMatches(c.name, "text_source_features", trace.text_source_features,
                  c.Tensor("text_source_features"));
    ExpectMatches(c.name, "text_target_features", trace.text_target_features,
                  c.Tensor("text_target_features"));
    ExpectMatches(c.name, "logits_per_image", trace.logits_per_image,
                  c.Tensor("logits_per_image"));

    ExpectLossNear(c.name, "loss_total", losses.total, c.Scalar("loss_total"));
    ExpectLossNear(c.name, "loss_contrastive", losses.contrastive,
                   c.Scalar("loss_contrastive"));
    ExpectLossNear(c.name, "loss_target", losses.target,
                   c.Scalar("loss_target"));
    ExpectLossNear(c.name, "loss_source", losses.source,
                   c.Scalar("loss_source"));
    if (c.meta.at("scalars").contains("loss_total_with_default_lambda_src_0")) {
      ExpectLossNear(
          c.name, "loss_total_with_default_lambda_src_0",
          losses.contrastive + options.stage1.lambda_l * losses.target,
          c.Scalar("loss_total_with_default_lambda_src_0"));
    }

    // Every gradient and updated parameter the case provides.
    const engine::TensorMap params = engine::StateDict(*mapper);
    int checked = 0;
    for (const auto& [name, golden] : c.Tensors()) {
      if (name.rfind("grad.", 0) == 0) {
        const std::string param = name.substr(5);
        ASSERT_TRUE(trace.grads.count(param)) << "no gradient for " << param;
        ExpectMatches(c.name, name, trace.grads.at(param), golden);
        ++checked;
      } else if (name.rfind("mapper_after.", 0) == 0) {
        const std::string param = name.substr(13);
        ASSERT_TRUE(params.count(param)) << param;
        ExpectAdamStep(c.name, name, params.at(param), golden,
                       c.Tensor("grad." + param), options.stage1.lr);
        EXPECT_EQ(adam.StepCount(param), 1);
        ++checked;
      }
    }
    EXPECT_EQ(checked, static_cast<int>(2 * params.size()));
    // CLIP stays frozen: no gradient reached its weights.
    for (const auto& p : clip->parameters()) EXPECT_FALSE(p.grad().defined());
  }
}

}  // namespace
}  // namespace restyle::testing
