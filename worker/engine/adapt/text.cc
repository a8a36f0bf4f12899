#include "worker/engine/adapt/text.h"

#include <torch/nn/functional/normalization.h>

#include "worker/engine/adapt/job_texts.h"
#include "worker/engine/clip/tokenizer.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {

namespace {

torch::Tensor TokensTensor(const Tokenizer& tokenizer, const std::string& text) {
  return torch::tensor(TokenizeJobText(tokenizer, text), torch::kLong).unsqueeze(0);
}

ClassTokens TokenizeClass(const Tokenizer& tokenizer, const ClassStrings& texts) {
  ClassTokens out;
  out.prompt = TokensTensor(tokenizer, texts.prompt);
  out.stage1_base = TokensTensor(tokenizer, texts.stage1_base);
  std::vector<torch::Tensor> rows;
  rows.reserve(texts.templates.size());
  for (const std::string& t : texts.templates) rows.push_back(TokensTensor(tokenizer, t));
  out.templates = torch::cat(rows, 0);
  return out;
}

ClassTexts ComputeClassTexts(ClipModelImpl& clip, const ClassTokens& tokens,
                             int64_t n_ctx) {
  ClassTexts out;
  out.prompt = MakePromptContext(clip, tokens.prompt, n_ctx);
  out.stage1_base = clip.EncodeText(tokens.stage1_base);
  out.template_features = NormalizedTextFeatures(clip, tokens.templates);
  out.template_mean = out.template_features.mean(0);
  return out;
}

}  // namespace

torch::Tensor NormalizeFeatures(const torch::Tensor& x) {
  return x / x.norm(2, {-1}, /*keepdim=*/true);
}

JobTokens TokenizeJobTexts(const Tokenizer& tokenizer,
                           const AdaptOptions& options,
                           const std::vector<std::string>& templates) {
  const JobStrings texts = JobTextsOf(options, templates);
  JobTokens out;
  out.n_ctx = texts.n_ctx;
  out.source = TokenizeClass(tokenizer, texts.source);
  out.target = TokenizeClass(tokenizer, texts.target);
  out.stage2_source_base = TokensTensor(tokenizer, texts.stage2_source_base);
  out.stage2_target_base = TokensTensor(tokenizer, texts.stage2_target_base);
  out.target_plain = TokensTensor(tokenizer, texts.target_plain);
  return out;
}

PromptContext MakePromptContext(ClipModelImpl& clip,
                                const torch::Tensor& tokens, int64_t n_ctx) {
  CheckArgument(tokens.dim() == 2 && tokens.size(0) == 1,
                "MakePromptContext: tokens must be (1, L)");
  CheckArgument(n_ctx > 0 && 1 + n_ctx < tokens.size(1),
                "MakePromptContext: bad n_ctx");
  torch::NoGradGuard no_grad;
  PromptContext out;
  out.tokens = tokens.to(torch::kLong);
  out.eot_index = out.tokens.argmax(-1);
  CheckArgument(
      out.eot_index.item<int64_t>() > n_ctx,
      "MakePromptContext: the class prompt ends inside the context words");
  torch::Tensor embeddings = clip.TokenEmbedding(out.tokens);
  out.prefix = embeddings.slice(1, 0, 1).clone();
  out.suffix = embeddings.slice(1, 1 + n_ctx).clone();
  out.n_ctx = n_ctx;
  return out;
}

torch::Tensor PromptTextFeatures(ClipModelImpl& clip,
                                 const PromptContext& context,
                                 const torch::Tensor& prompts) {
  CheckArgument(prompts.dim() == 3 && prompts.size(1) == context.n_ctx &&
                    prompts.size(2) == context.prefix.size(2),
                "PromptTextFeatures: prompts must be (B, n_ctx, text width)");
  const int64_t b = prompts.size(0);
  torch::Tensor x = torch::cat({context.prefix.expand({b, -1, -1}), prompts,
                                context.suffix.expand({b, -1, -1})},
                               1);
  return clip.EncodeTextEmbeddings(x, context.eot_index.expand({b}));
}

torch::Tensor NormalizedTextFeatures(ClipModelImpl& clip,
                                     const torch::Tensor& tokens) {
  return NormalizeFeatures(clip.EncodeText(tokens));
}

torch::Tensor NadaDirection(const torch::Tensor& source_template_features,
                            const torch::Tensor& target_template_features) {
  torch::Tensor d =
      (target_template_features - source_template_features).mean(0, true);
  return d / d.norm(2, {-1}, true);
}

JobTexts ComputeJobTexts(ClipModelImpl& clip, const JobTokens& tokens) {
  torch::NoGradGuard no_grad;
  JobTexts out;
  out.source = ComputeClassTexts(clip, tokens.source, tokens.n_ctx);
  out.target = ComputeClassTexts(clip, tokens.target, tokens.n_ctx);
  out.stage2_source_base = clip.EncodeText(tokens.stage2_source_base);
  out.stage2_target_base = clip.EncodeText(tokens.stage2_target_base);
  out.nada_direction =
      NadaDirection(out.source.template_features, out.target.template_features);
  out.target_plain = clip.EncodeText(tokens.target_plain);
  return out;
}

}  // namespace restyle::engine
