// The CLIP-guided losses of IPL and StyleGAN-NADA (IPL criteria/clip_loss.py),
// as pure differentiable tensor functions of features (no models, no I/O).
// Cosines use torch's cosine_similarity(dim=1, eps=1e-8) like the
// reference's nn.CosineSimilarity; feature normalisation has no eps.
//
// Thread-safety: pure functions.
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_LOSSES_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_LOSSES_H_

#include <torch/types.h>

namespace restyle::engine {

// The terms of the stage-1 loss (0-dim tensors, differentiable).
struct Stage1LossTerms {
  torch::Tensor
      total;  // contrastive + lambda_l * (target + lambda_src * source)
  torch::Tensor contrastive;  // (CE(logits, arange) + CE(logits^T, arange)) / 2
  torch::Tensor target;       // mean_i (1 - cos(U_i, tmpl_target))
  torch::Tensor source;       // mean_i (1 - cos(S_i, tmpl_source))
  torch::Tensor logits_per_image;  // (B,B) exp(logit_scale) * I S^T
  torch::Tensor
      text_source_features;  // S (B,E) = normalize(T_source(P) + base_source)
  torch::Tensor
      text_target_features;  // U (B,E) = normalize(T_target(P) + base_target)
};

// image_features: (B,E) normalised image features (I). source/target_prompt:
// (B,E) T_c(P), not normalised. source/target_base: (1,E) stage-1 base
// features (not normalised). source/target_template_mean: (E) means of
// normalised template features. logit_scale: CLIP's 0-dim log temperature.
Stage1LossTerms Stage1Loss(
    const torch::Tensor& image_features, const torch::Tensor& source_prompt,
    const torch::Tensor& target_prompt, const torch::Tensor& source_base,
    const torch::Tensor& target_base, const torch::Tensor& source_template_mean,
    const torch::Tensor& target_template_mean, const torch::Tensor& logit_scale,
    double lambda_l, double lambda_src);

// IPL per-image text directions:
//   normalize(normalize(t + target_base) - normalize(s + source_base)).
// source/target_prompt (B,E) not normalised; bases (1,E). Returns (B,E).
torch::Tensor IplTextDirections(const torch::Tensor& source_prompt,
                                const torch::Tensor& target_prompt,
                                const torch::Tensor& source_base,
                                const torch::Tensor& target_base);

// Image edit directions normalize(dst - src) of NORMALISED CLIP image
// features (B,E) (NormalizeFeatures of E_I). No guard: equal features give NaN
// exactly like the reference (see docs/method.md, "NaN trap").
torch::Tensor EditDirections(const torch::Tensor& src_image_features,
                             const torch::Tensor& dst_image_features);

// mean_i (1 - cos(edit_i, text_i)); text (B,E) (IPL) or (1,E) (NADA,
// broadcast).
torch::Tensor DirectionalLoss(const torch::Tensor& edit_directions,
                              const torch::Tensor& text_directions);

// Layer-selection loss (NADA global_clip_loss): mean(1 - logits/100) with
// logits = exp(logit_scale) * normalize(image_features) normalize(text)^T.
// image_features (N,E) raw; text_features (1,E) raw.
torch::Tensor GlobalClipLoss(const torch::Tensor& image_features,
                             const torch::Tensor& text_features,
                             const torch::Tensor& logit_scale);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_LOSSES_H_
