// CLIP model against the golden reference (openai/CLIP on CPU, float32), plus
// configuration inference for the official ViT shapes and argument checks.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/generated/variable_factories.h>

#include <map>
#include <string>

#include "tests/golden/golden.h"
#include "worker/engine/clip/checkpoint.h"
#include "worker/engine/clip/model.h"
#include "worker/engine/clip/random_weights.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

using restyle::testing::CasesOfKind;
using restyle::testing::ExpectExact;
using restyle::testing::ExpectMatches;
using restyle::testing::GoldenCase;
using restyle::testing::GoldenModel;

// The model a golden case names (role "clip"), loaded once per path.
ClipModel ModelFor(const GoldenCase& c) {
  static auto* cache = new std::map<std::string, ClipModel>;
  const std::string path = c.ModelPath("clip");
  auto it = cache->find(path);
  if (it == cache->end()) {
    it = cache->emplace(path, LoadClipFromTensors(GoldenModel(path), path)).first;
  }
  return it->second;
}

std::string BlockName(const std::string& tower, size_t i) {
  return tower + "_block" + std::to_string(i) + "_out_LND";
}

template <typename Fn>
void ExpectError(ErrorCode code, Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ClipModelGolden, EncodeImage) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("clip_encode_image")) {
    SCOPED_TRACE(c.name);
    ClipModel model = ModelFor(c);
    torch::NoGradGuard no_grad;
    ClipVisionTrace trace;
    const torch::Tensor features = model->EncodeImage(c.Tensor("image"), &trace);
    ExpectMatches(c.name, "image_features", features, c.Tensor("image_features"));
    ExpectMatches(c.name, "patch_embed", trace.patch_embed, c.Tensor("patch_embed"));
    ExpectMatches(c.name, "ln_pre_out", trace.ln_pre_out, c.Tensor("ln_pre_out"));
    ExpectMatches(c.name, "ln_post_out", trace.ln_post_out, c.Tensor("ln_post_out"));
    ASSERT_EQ(static_cast<int64_t>(trace.block_out_lnd.size()), model->config().vision_layers);
    for (size_t i = 0; i < trace.block_out_lnd.size(); ++i) {
      if (!c.Has(BlockName("visual", i))) continue;
      ExpectMatches(c.name, BlockName("visual", i), trace.block_out_lnd[i],
                    c.Tensor(BlockName("visual", i)));
    }
  }
}

TEST(ClipModelGolden, EncodeTextFullContext) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("clip_encode_text")) {
    SCOPED_TRACE(c.name);
    ClipModel model = ModelFor(c);
    torch::NoGradGuard no_grad;
    const torch::Tensor tokens = c.Tensor("tokens");
    ExpectExact(c.name, "eot_index", tokens.argmax(-1), c.Tensor("eot_index"));
    ClipTextOptions full;
    full.cut_after_eot = false;
    ClipTextTrace trace;
    const torch::Tensor features = model->EncodeText(tokens, full, &trace);
    EXPECT_EQ(trace.length, tokens.size(1));
    ExpectMatches(c.name, "text_features", features, c.Tensor("text_features"));
    ExpectMatches(c.name, "ln_final_out", trace.ln_final_out, c.Tensor("ln_final_out"));
    for (size_t i = 0; i < trace.block_out_lnd.size(); ++i) {
      if (!c.Has(BlockName("text", i))) continue;
      ExpectMatches(c.name, BlockName("text", i), trace.block_out_lnd[i],
                    c.Tensor(BlockName("text", i)));
    }
  }
}

TEST(ClipModelGolden, EncodeTextEotCutEqualsFullContext) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("clip_encode_text")) {
    SCOPED_TRACE(c.name);
    ClipModel model = ModelFor(c);
    torch::NoGradGuard no_grad;
    const torch::Tensor tokens = c.Tensor("tokens");
    ClipTextTrace trace;
    const torch::Tensor cut = model->EncodeText(tokens, {}, &trace);
    EXPECT_EQ(trace.length, c.Tensor("eot_index").max().item<int64_t>() + 1);
    ClipTextOptions full;
    full.cut_after_eot = false;
    const torch::Tensor all = model->EncodeText(tokens, full);
    ExpectMatches(c.name, "text_features", cut, c.Tensor("text_features"));
    const double diff = (cut - all).abs().max().item<double>();
    EXPECT_LE(diff, 1e-5 * all.abs().max().item<double>());
    std::cout << "[ clip ] " << c.name << " EOT cut (" << trace.length
              << " positions) vs 77: max |diff| = " << diff
              << (at::equal(cut, all) ? " (bitwise equal)" : "") << "\n";
    // Per-sample: each row alone must give the same features as in the batch.
    for (int64_t i = 0; i < tokens.size(0); ++i) {
      const torch::Tensor one = model->EncodeText(tokens.slice(0, i, i + 1));
      EXPECT_LE((one[0] - all[i]).abs().max().item<double>(),
                1e-5 * all.abs().max().item<double>());
    }
  }
}

TEST(ClipModelGolden, PromptPathWithUnchangedEmbeddingsEqualsEncodeText) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("clip_encode_text")) {
    SCOPED_TRACE(c.name);
    ClipModel model = ModelFor(c);
    const torch::Tensor tokens = c.Tensor("tokens");
    torch::Tensor expected;
    {
      torch::NoGradGuard no_grad;
      expected = model->EncodeText(tokens);
    }
    const torch::Tensor embeddings = model->TokenEmbedding(tokens).detach().requires_grad_(true);
    const torch::Tensor features = model->EncodeTextEmbeddings(embeddings, tokens.argmax(-1));
    EXPECT_TRUE(at::equal(features.detach(), expected));
    ExpectMatches(c.name, "text_features", features, c.Tensor("text_features"));
    // Gradients reach the embeddings (frozen model: none on its parameters),
    // and nothing after a row's EOT influences it.
    features.pow(2).sum().backward();
    ASSERT_TRUE(embeddings.grad().defined());
    EXPECT_GT(embeddings.grad().abs().sum().item<double>(), 0.0);
    const torch::Tensor eot = tokens.argmax(-1);
    for (int64_t i = 0; i < tokens.size(0); ++i) {
      const int64_t e = eot[i].item<int64_t>();
      EXPECT_EQ(embeddings.grad()[i].slice(0, e + 1).abs().sum().item<double>(), 0.0);
    }
    for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
  }
}

TEST(ClipModelGolden, Logits) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("clip_logits")) {
    SCOPED_TRACE(c.name);
    ClipModel model = ModelFor(c);
    torch::NoGradGuard no_grad;
    EXPECT_EQ(model->logit_scale().item<double>(), c.Scalar("logit_scale"));
    EXPECT_EQ(model->logit_scale().exp().item<double>(), c.Scalar("logit_scale_exp"));
    const ClipLogits logits = model->Logits(c.Tensor("image"), c.Tensor("tokens"));
    ExpectMatches(c.name, "logits_per_image", logits.per_image, c.Tensor("logits_per_image"));
    ExpectMatches(c.name, "logits_per_text", logits.per_text, c.Tensor("logits_per_text"));
  }
}

TEST(ClipModelGolden, GradientsFlowToImagesOfFrozenModel) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("clip_encode_image")) {
    ClipModel model = ModelFor(c);
    const torch::Tensor image = c.Tensor("image").clone().requires_grad_(true);
    model->EncodeImage(image).sum().backward();
    ASSERT_TRUE(image.grad().defined());
    EXPECT_GT(image.grad().abs().sum().item<double>(), 0.0);
    for (const auto& p : model->parameters()) EXPECT_FALSE(p.requires_grad());
  }
}

TEST(ClipModelGolden, RejectsBadInputs) {
  RESTYLE_REQUIRE_GOLDEN();
  for (const GoldenCase& c : CasesOfKind("clip_encode_image")) {
    ClipModel model = ModelFor(c);
    const int64_t r = model->config().image_resolution;
    const int64_t ctx = model->config().context_length;
    const int64_t w = model->config().transformer_width;
    torch::NoGradGuard no_grad;
    ExpectError(ErrorCode::kInvalidArgument,
                [&] { model->EncodeImage(at::zeros({1, 3, r + 1, r})); }, "images must have shape");
    ExpectError(ErrorCode::kInvalidArgument,
                [&] { model->EncodeImage(at::zeros({1, 4, r, r})); }, "images must have shape");
    ExpectError(ErrorCode::kInvalidArgument,
                [&] { model->EncodeImage(at::zeros({3, r, r})); }, "images must have shape");
    ExpectError(ErrorCode::kInvalidArgument,
                [&] { model->EncodeImage(at::zeros({1, 3, r, r}, at::kLong)); }, "floating");
    ExpectError(ErrorCode::kInvalidArgument,
                [&] { model->EncodeText(at::zeros({ctx}, at::kLong)); }, "(N, L)");
    ExpectError(ErrorCode::kInvalidArgument,
                [&] { model->EncodeText(at::zeros({1, ctx + 1}, at::kLong)); }, "context length");
    ExpectError(ErrorCode::kInvalidArgument,
                [&] { model->EncodeText(at::zeros({1, ctx}, at::kFloat)); }, "integer");
    ExpectError(ErrorCode::kInvalidArgument,
                [&] { model->EncodeText(at::full({1, ctx}, model->config().vocab_size, at::kLong)); },
                "token ids");
    ExpectError(ErrorCode::kInvalidArgument,
                [&] { model->EncodeTextEmbeddings(at::zeros({1, ctx, w + 1}), at::zeros({1}, at::kLong)); },
                "embeddings must have shape");
    ExpectError(ErrorCode::kInvalidArgument,
                [&] { model->EncodeTextEmbeddings(at::zeros({1, ctx, w}), at::full({1}, ctx, at::kLong)); },
                "eot_index values");
    ExpectError(ErrorCode::kInvalidArgument,
                [&] { model->EncodeTextEmbeddings(at::zeros({2, ctx, w}), at::zeros({1}, at::kLong)); },
                "eot_index must be");
  }
}

// --- configuration inference on the official shapes ------------------------

void ExpectLoadsAs(const ClipConfig& official, const TensorMap& tensors, const std::string& what) {
  SCOPED_TRACE(what);
  const ClipConfig inferred = ClipConfig::InferFromTensors(tensors);
  EXPECT_TRUE(inferred == official) << inferred.DebugString() << " vs " << official.DebugString();
  const ClipModel model = LoadClipFromTensors(tensors, what);
  EXPECT_TRUE(model->config() == official);
  EXPECT_EQ(model->named_parameters().size(), tensors.size());
}

TEST(ClipConfigInference, OfficialShapesMatchBuildModel) {
  EXPECT_EQ(ClipConfig::VitB32().image_resolution, 224);
  EXPECT_EQ(ClipConfig::VitB16().image_resolution, 224);
  EXPECT_EQ(ClipConfig::VitL14().image_resolution, 224);
  EXPECT_EQ(ClipTensorShapes(ClipConfig::VitB32()).size(), 302u);  // OpenAI ViT-B/32 state dict
  EXPECT_EQ(ClipTensorShapes(ClipConfig::VitL14()).size(), 446u);
}

TEST(ClipConfigInference, VitB32LoadsAndRuns) {
  const ClipConfig config = ClipConfig::VitB32();
  const TensorMap tensors = RandomClipWeights(config, /*seed=*/1);
  ExpectLoadsAs(config, tensors, "ViT-B/32");
  ClipModel model = LoadClipFromTensors(tensors, "ViT-B/32");
  torch::NoGradGuard no_grad;
  const torch::Tensor image = at::randn({1, 3, 224, 224});
  const torch::Tensor f = model->EncodeImage(image);
  EXPECT_EQ(f.sizes(), (std::vector<int64_t>{1, 512}));
  EXPECT_TRUE(at::isfinite(f).all().item<bool>());
  at::Tensor tokens = at::zeros({1, 77}, at::kLong);
  tokens[0][0] = 49406;
  tokens[0][1] = 320;
  tokens[0][2] = 49407;
  const torch::Tensor t = model->EncodeText(tokens);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{1, 512}));
  EXPECT_TRUE(at::isfinite(t).all().item<bool>());
}

TEST(ClipConfigInference, VitB16Loads) {
  ExpectLoadsAs(ClipConfig::VitB16(), PlaceholderClipWeights(ClipConfig::VitB16()), "ViT-B/16");
}

TEST(ClipConfigInference, VitL14Loads) {
  // 1.7 GB of float32 parameters: loaded (placeholders as the source), not run.
  ExpectLoadsAs(ClipConfig::VitL14(), PlaceholderClipWeights(ClipConfig::VitL14()), "ViT-L/14");
}

TEST(ClipConfigInference, ClearErrors) {
  ClipConfig small = ClipConfig::VitB32();
  small.vision_layers = 1;
  small.transformer_layers = 1;
  small.vocab_size = 10;
  const TensorMap good = PlaceholderClipWeights(small);

  TensorMap resnet = good;
  resnet["visual.layer1.0.conv1.weight"] = at::zeros({64, 64, 1, 1});
  ExpectError(ErrorCode::kUnimplemented, [&] { ClipConfig::InferFromTensors(resnet); }, "ResNet");

  TensorMap missing = good;
  missing.erase("ln_final.weight");
  ExpectError(ErrorCode::kInvalidArgument, [&] { ClipConfig::InferFromTensors(missing); },
              "ln_final.weight");

  TensorMap odd_width = PlaceholderClipWeights(small);
  odd_width["visual.conv1.weight"] = at::zeros({100, 3, 32, 32});
  ExpectError(ErrorCode::kInvalidArgument, [&] { ClipConfig::InferFromTensors(odd_width); },
              "multiple of 64");

  TensorMap gap = good;
  for (const auto& [name, shape] : ClipTensorShapes(small)) {
    if (name.rfind("transformer.resblocks.0.", 0) == 0) {
      gap["transformer.resblocks.2." + name.substr(24)] = gap[name];
      gap.erase(name);
    }
  }
  ExpectError(ErrorCode::kInvalidArgument, [&] { ClipConfig::InferFromTensors(gap); },
              "resblock indices");

  // Strict loading: a mis-shaped and an unexpected tensor are both reported.
  TensorMap bad = good;
  bad["visual.ln_post.bias"] = at::zeros({7});
  bad["visual.extra"] = at::zeros({1});
  ExpectError(ErrorCode::kInvalidArgument, [&] { LoadClipFromTensors(bad, "bad.safetensors"); },
              "visual.ln_post.bias");
  ExpectError(ErrorCode::kInvalidArgument, [&] { LoadClipFromTensors(bad, "bad.safetensors"); },
              "visual.extra");
  TensorMap with_bookkeeping = good;
  with_bookkeeping["input_resolution"] = at::full({}, 224, at::kLong);
  EXPECT_NO_THROW(LoadClipFromTensors(with_bookkeeping, "ok"));
}

}  // namespace
}  // namespace restyle::engine
