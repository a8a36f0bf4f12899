#include "worker/engine/adapt/text.h"

#include <torch/nn/functional/normalization.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "worker/engine/clip/tokenizer.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {

extern const char kTextTemplatesJson[];

namespace {

// clip.tokenize(text) as the reference calls it (truncate=False): a text
// longer than CLIP's context is an error, not silently cut.
torch::Tensor TokensTensor(const Tokenizer& tokenizer,
                           const std::string& text) {
  std::vector<int64_t> ids;
  try {
    ids = tokenizer.Tokenize(text, Tokenizer::kContextLength, /*truncate=*/false);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kInvalidArgument) throw;
    const size_t n = tokenizer.Encode(text).size() + 2;  // with SOT and EOT
    Fail(ErrorCode::kInvalidArgument,
         "adaptation: the text \"" + (text.size() > 80 ? text.substr(0, 77) + "..." : text) +
             "\" is " + std::to_string(n) + " tokens, CLIP reads at most " +
             std::to_string(Tokenizer::kContextLength) + ": shorten the class text or ctx_init");
  }
  return torch::tensor(ids, torch::kLong).unsqueeze(0);
}

std::vector<std::string> Words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  std::string word;
  while (in >> word) words.push_back(word);
  return words;
}

ClassTokens TokenizeClass(const Tokenizer& tokenizer,
                          const std::string& ctx_init, const std::string& cls,
                          const std::vector<std::string>& templates) {
  CheckArgument(!Words(cls).empty(), "adaptation: a class text is empty");
  ClassTokens out;
  out.prompt = TokensTensor(tokenizer, ctx_init + " " + cls);
  out.stage1_base = TokensTensor(tokenizer, ctx_init + " " + cls + ".");
  std::vector<torch::Tensor> rows;
  rows.reserve(templates.size());
  for (const std::string& t : templates)
    rows.push_back(TokensTensor(tokenizer, FormatTemplate(t, cls)));
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

const std::vector<std::string>& TextTemplates() {
  static const std::vector<std::string>* templates = [] {
    auto json = nlohmann::json::parse(kTextTemplatesJson);
    return new std::vector<std::string>(
        json.at("imagenet_templates").get<std::vector<std::string>>());
  }();
  return *templates;
}

std::string FormatTemplate(const std::string& text_template,
                           const std::string& word) {
  std::string out;
  for (size_t i = 0; i < text_template.size(); ++i) {
    if (text_template.compare(i, 2, "{}") == 0) {
      out += word;
      ++i;
    } else {
      out.push_back(text_template[i]);
    }
  }
  return out;
}

torch::Tensor NormalizeFeatures(const torch::Tensor& x) {
  return x / x.norm(2, {-1}, /*keepdim=*/true);
}

JobTokens TokenizeJobTexts(const Tokenizer& tokenizer,
                           const AdaptOptions& options,
                           const std::vector<std::string>& templates) {
  const std::string& ctx = options.stage1.ctx_init;
  JobTokens out;
  out.n_ctx = static_cast<int64_t>(Words(ctx).size());
  CheckArgument(out.n_ctx > 0, "adaptation: ctx_init has no words");
  CheckArgument(!templates.empty(), "adaptation: no text templates");
  out.source = TokenizeClass(tokenizer, ctx, options.source_class, templates);
  out.target = TokenizeClass(tokenizer, ctx, options.target_class, templates);
  if (options.stage2.base_text_without_class) {
    out.stage2_source_base =
        TokensTensor(tokenizer, FormatTemplate(ctx, options.source_class));
    out.stage2_target_base =
        TokensTensor(tokenizer, FormatTemplate(ctx, options.target_class));
  } else {
    out.stage2_source_base =
        TokensTensor(tokenizer, ctx + " " + options.source_class);
    out.stage2_target_base =
        TokensTensor(tokenizer, ctx + " " + options.target_class);
  }
  out.target_plain = TokensTensor(tokenizer, options.target_class);
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
