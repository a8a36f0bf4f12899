// Text side of an adaptation job, computed ONCE per job (CLIP frozen):
//  * the 79 imagenet templates of NADA/IPL ("a bad photo of a {}.", ...),
//    their normalised features per class and the mean of those (stage-1
//    regulariser target, not re-normalised);
//  * the NADA direction normalize(mean_t(target_t - source_t));
//  * stage-1 base features E_T("<ctx_init> <class>.") (not normalised) and the
//    stage-2 base E_T(ctx_init formatted with the class; by default the
//    reference's "a photo of a" without the class word);
//  * the prompt context of each class: tokens of "<ctx_init> <class>", the
//    prefix (SOT) and suffix (class words, EOT, padding) token embeddings that
//    surround the mapper's n_ctx prompt vectors;
//  * E_T("<target class>") for the layer-selection loss.
// Prompt features T_c(P) are computed per iteration by PromptTextFeatures (one
// batched EncodeTextEmbeddings call, cut after the EOT).
//
// Thread-safety: the structs are values; functions need exclusive use of
// nothing but read the CLIP model (see ClipModel).
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_TEXT_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_TEXT_H_

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "worker/engine/adapt/job_texts.h"
#include "worker/engine/adapt/options.h"
#include "worker/engine/clip/model.h"

namespace restyle::engine {

class Tokenizer;

// x / x.norm(dim=-1, keepdim=True) (no eps, like the reference).
torch::Tensor NormalizeFeatures(const torch::Tensor& x);

// Token ids of every text a job needs, for one class.
struct ClassTokens {
  torch::Tensor prompt;       // (1,77) int64: "<ctx_init> <class>"
  torch::Tensor stage1_base;  // (1,77): "<ctx_init> <class>."
  torch::Tensor templates;    // (T,77): each template formatted with the class
};

struct JobTokens {
  ClassTokens source;
  ClassTokens target;
  // (1,77) stage-2 base texts: ctx_init formatted with each class (the
  // reference: no "{}", so both are "a photo of a"); see
  // Stage2Options::base_text_without_class.
  torch::Tensor stage2_source_base;
  torch::Tensor stage2_target_base;
  torch::Tensor
      target_plain;   // (1,77): "<target class>" (layer-selection loss)
  int64_t n_ctx = 0;  // words of ctx_init
};

// Tokenizes every text of the job. Throws Error(kInvalidArgument) when a class
// is empty or ctx_init has no words.
JobTokens TokenizeJobTexts(
    const Tokenizer& tokenizer, const AdaptOptions& options,
    const std::vector<std::string>& templates = TextTemplates());

// The prompt context of one class ("a photo of a <class>" tokens).
struct PromptContext {
  torch::Tensor tokens;     // (1,77) int64
  torch::Tensor eot_index;  // (1) int64: argmax(tokens)
  torch::Tensor prefix;     // (1,1,W) token embedding of position 0 (SOT)
  torch::Tensor suffix;  // (1,77-1-n_ctx,W) embeddings of positions 1+n_ctx..
  int64_t n_ctx = 0;
};

// Builds the context from the tokens (no gradients).
PromptContext MakePromptContext(ClipModelImpl& clip,
                                const torch::Tensor& tokens, int64_t n_ctx);

// T_c(P): prompts (B,n_ctx,W) -> (B,embed_dim), not normalised. The sequence
// [prefix, P_i, suffix] runs through the text transformer in ONE batched call,
// cut after the EOT. Gradients flow to `prompts` (CLIP weights stay frozen).
torch::Tensor PromptTextFeatures(ClipModelImpl& clip,
                                 const PromptContext& context,
                                 const torch::Tensor& prompts);

// Normalised features of a batch of tokenized texts (T,77) -> (T,embed_dim).
torch::Tensor NormalizedTextFeatures(ClipModelImpl& clip,
                                     const torch::Tensor& tokens);

// NADA: normalize(mean_t(target_t - source_t)) of normalised template
// features (T,E) each -> (1,E).
torch::Tensor NadaDirection(const torch::Tensor& source_template_features,
                            const torch::Tensor& target_template_features);

struct ClassTexts {
  PromptContext prompt;
  torch::Tensor
      stage1_base;  // (1,E) E_T("<ctx_init> <class>."), not normalised
  torch::Tensor template_features;  // (T,E) normalised
  torch::Tensor
      template_mean;  // (E) mean of template_features (not re-normalised)
};

// Everything text-side of a job, computed once (under NoGradGuard).
struct JobTexts {
  ClassTexts source;
  ClassTexts target;
  torch::Tensor stage2_source_base;  // (1,E), not normalised
  torch::Tensor stage2_target_base;  // (1,E), not normalised (equal to the
                                     // source's by default)
  torch::Tensor nada_direction;      // (1,E), unit
  torch::Tensor target_plain;  // (1,E) E_T("<target class>"), not normalised
};

JobTexts ComputeJobTexts(ClipModelImpl& clip, const JobTokens& tokens);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_TEXT_H_
