#include "worker/engine/adapt/losses.h"

#include <ATen/ops/cosine_similarity.h>
#include <ATen/ops/cross_entropy_loss.h>

#include "worker/engine/adapt/text.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

// 1 - nn.CosineSimilarity(dim=1, eps=1e-8)(a, b), per row.
torch::Tensor CosineDistance(const torch::Tensor& a, const torch::Tensor& b) {
  return 1 - at::cosine_similarity(a, b, 1, 1e-8);
}

}  // namespace

Stage1LossTerms Stage1Loss(
    const torch::Tensor& image_features, const torch::Tensor& source_prompt,
    const torch::Tensor& target_prompt, const torch::Tensor& source_base,
    const torch::Tensor& target_base, const torch::Tensor& source_template_mean,
    const torch::Tensor& target_template_mean, const torch::Tensor& logit_scale,
    double lambda_l, double lambda_src) {
  CheckArgument(image_features.dim() == 2 &&
                    source_prompt.sizes() == image_features.sizes() &&
                    target_prompt.sizes() == image_features.sizes(),
                "Stage1Loss: features must all be (B, E)");
  Stage1LossTerms out;
  out.text_source_features = NormalizeFeatures(source_prompt + source_base);
  out.text_target_features = NormalizeFeatures(target_prompt + target_base);
  out.logits_per_image =
      logit_scale.exp() * image_features.matmul(out.text_source_features.t());
  const torch::Tensor labels = torch::arange(
      image_features.size(0),
      torch::TensorOptions().dtype(torch::kLong).device(image_features.device()));
  out.contrastive = (at::cross_entropy_loss(out.logits_per_image, labels) +
                     at::cross_entropy_loss(out.logits_per_image.t(), labels)) /
                    2;
  out.target = CosineDistance(out.text_target_features,
                              target_template_mean.unsqueeze(0))
                   .mean();
  out.source = CosineDistance(out.text_source_features,
                              source_template_mean.unsqueeze(0))
                   .mean();
  out.total =
      out.contrastive + lambda_l * (out.target + lambda_src * out.source);
  return out;
}

torch::Tensor IplTextDirections(const torch::Tensor& source_prompt,
                                const torch::Tensor& target_prompt,
                                const torch::Tensor& source_base,
                                const torch::Tensor& target_base) {
  torch::Tensor s = NormalizeFeatures(source_prompt + source_base);
  torch::Tensor t = NormalizeFeatures(target_prompt + target_base);
  return NormalizeFeatures(t - s);
}

torch::Tensor EditDirections(const torch::Tensor& src_image_features,
                             const torch::Tensor& dst_image_features) {
  return NormalizeFeatures(dst_image_features - src_image_features);
}

torch::Tensor DirectionalLoss(const torch::Tensor& edit_directions,
                              const torch::Tensor& text_directions) {
  CheckArgument(edit_directions.dim() == 2 && text_directions.dim() == 2,
                "DirectionalLoss: directions must be 2-D");
  return CosineDistance(edit_directions, text_directions).mean();
}

torch::Tensor GlobalClipLoss(const torch::Tensor& image_features,
                             const torch::Tensor& text_features,
                             const torch::Tensor& logit_scale) {
  torch::Tensor logits =
      logit_scale.exp() * NormalizeFeatures(image_features)
                              .matmul(NormalizeFeatures(text_features).t());
  return (1. - logits / 100).mean();
}

}  // namespace restyle::engine
