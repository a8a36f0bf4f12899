#include "worker/engine/adapt_job/quality.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "worker/engine/clip/preprocess.h"
#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

nlohmann::json ScoreJson(const ImageSetScore& s) {
  return {{"target_similarity", s.target_similarity}, {"diversity", s.diversity}};
}

std::string Format(const char* format, double a, double b, double c) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), format, a, b, c);
  return buf;
}

}  // namespace

double MeanPairwiseCosineDistance(const torch::Tensor& features) {
  CheckArgument(features.dim() == 2, "MeanPairwiseCosineDistance: expected (N, D) features");
  const int64_t n = features.size(0);
  if (n < 2) return 0.0;
  torch::NoGradGuard no_grad;
  auto x = features.detach().to(at::kDouble);
  x = x / x.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  auto sim = at::matmul(x, x.t());
  // Sum of the strict upper triangle = (sum of all - trace) / 2.
  const double total = (sim.sum() - sim.diagonal().sum()).item<double>() / 2.0;
  const double pairs = static_cast<double>(n) * (n - 1) / 2.0;
  return 1.0 - total / pairs;
}

torch::Tensor NormalizedImageFeatures(ClipModelImpl& clip, const torch::Tensor& images,
                                      int64_t batch) {
  CheckArgument(images.dim() == 4, "NormalizedImageFeatures: expected (N,3,H,W) images");
  CheckArgument(batch > 0, "NormalizedImageFeatures: batch must be positive");
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> chunks;
  const int64_t n_px = clip.config().image_resolution;
  for (int64_t i = 0; i < images.size(0); i += batch) {
    auto x = images.slice(0, i, std::min(images.size(0), i + batch)).to(at::kFloat);
    auto f = clip.EncodeImage(PreprocessForClip(x, n_px));
    chunks.push_back(f / f.norm(2, {1}, true).clamp_min(1e-12));
  }
  return at::cat(chunks, 0);
}

ImageSetScore ScoreImages(ClipModelImpl& clip, const torch::Tensor& images,
                          const torch::Tensor& target_text_feature, int64_t batch) {
  torch::NoGradGuard no_grad;
  auto features = NormalizedImageFeatures(clip, images, batch);
  auto t = target_text_feature.detach().reshape({-1}).to(features.device(), at::kFloat);
  CheckArgument(t.size(0) == features.size(1),
                "ScoreImages: text feature width " + std::to_string(t.size(0)) +
                    " != image feature width " + std::to_string(features.size(1)));
  t = t / t.norm().clamp_min(1e-12);
  ImageSetScore s;
  s.target_similarity = at::matmul(features, t).mean().item<double>();
  s.diversity = MeanPairwiseCosineDistance(features);
  return s;
}

QualityReport MeasureQuality(const std::vector<QualityModel>& models,
                             const torch::Tensor& source_images,
                             const torch::Tensor& adapted_images, const std::string& label,
                             const std::string& target_prompt, double truncation) {
  CheckArgument(!models.empty(), "MeasureQuality: no CLIP model");
  CheckArgument(source_images.sizes() == adapted_images.sizes(),
                "MeasureQuality: source and adapted image sets differ in shape");
  double total_weight = 0.0;
  for (const auto& m : models) {
    CheckArgument(m.weight > 0, "MeasureQuality: CLIP weight of " + m.name + " must be > 0");
    total_weight += m.weight;
  }
  QualityReport r;
  r.label = label;
  r.target_prompt = target_prompt;
  r.samples = source_images.size(0);
  r.truncation = truncation;
  for (const auto& m : models) {
    QualityReport::PerModel p;
    p.name = m.name;
    p.weight = m.weight / total_weight;
    p.source = ScoreImages(*m.clip.ptr(), source_images, m.target_text_feature);
    p.adapted = ScoreImages(*m.clip.ptr(), adapted_images, m.target_text_feature);
    r.source.target_similarity += p.weight * p.source.target_similarity;
    r.source.diversity += p.weight * p.source.diversity;
    r.adapted.target_similarity += p.weight * p.adapted.target_similarity;
    r.adapted.diversity += p.weight * p.adapted.diversity;
    r.models.push_back(p);
  }
  return r;
}

std::string QualityReport::ToJson() const {
  nlohmann::json j;
  j["label"] = label;
  j["target_prompt"] = target_prompt;
  j["samples"] = samples;
  j["truncation"] = truncation;
  j["source"] = ScoreJson(source);
  j["adapted"] = ScoreJson(adapted);
  j["models"] = nlohmann::json::array();
  for (const auto& m : models) {
    j["models"].push_back({{"name", m.name},
                           {"weight", m.weight},
                           {"source", ScoreJson(m.source)},
                           {"adapted", ScoreJson(m.adapted)}});
  }
  if (judge) j["judge"] = nlohmann::json::parse(judge->ToJson());
  return j.dump();
}

std::string QualityReport::ToText() const {
  std::string s = "quality (" + label + ", " + std::to_string(samples) + " samples, \"" +
                  target_prompt + "\")\n";
  s += Format("  CLIP similarity to target: %.4f -> %.4f (%+.4f)\n", source.target_similarity,
              adapted.target_similarity, adapted.target_similarity - source.target_similarity);
  s += Format("  diversity (pairwise cos dist): %.4f -> %.4f (%+.4f)\n", source.diversity,
              adapted.diversity, adapted.diversity - source.diversity);
  if (judge) s += "  " + judge->ToText() + "\n";
  return s;
}

std::string SideBySide(const QualityReport& a, const QualityReport& b) {
  char buf[512];
  std::string s;
  std::snprintf(buf, sizeof(buf), "%-30s %12s %12s %12s\n", ("\"" + a.target_prompt + "\"").c_str(),
                "source", a.label.c_str(), b.label.c_str());
  s += buf;
  std::snprintf(buf, sizeof(buf), "%-30s %12.4f %12.4f %12.4f\n", "CLIP similarity to target",
                a.source.target_similarity, a.adapted.target_similarity,
                b.adapted.target_similarity);
  s += buf;
  std::snprintf(buf, sizeof(buf), "%-30s %12.4f %12.4f %12.4f\n", "diversity (pairwise cos dist)",
                a.source.diversity, a.adapted.diversity, b.adapted.diversity);
  s += buf;
  if (a.judge && b.judge) {
    const JudgeScores &x = *a.judge, &y = *b.judge;
    const std::string style = "judged \"" + x.target_style + "\"";
    std::snprintf(buf, sizeof(buf), "%-30s %11.0f%% %11.0f%% %11.0f%%\n", style.c_str(),
                  100 * x.source_style_rate, 100 * x.adapted_style_rate, 100 * y.adapted_style_rate);
    s += buf;
    std::snprintf(buf, sizeof(buf), "%-30s %12s %11.0f%% %11.0f%%\n", "judged content kept", "",
                  100 * x.content_kept, 100 * y.content_kept);
    s += buf;
    std::snprintf(buf, sizeof(buf), "%-30s %12.2f %12.2f %12.2f\n", "judged content entropy (bits)",
                  x.source_content_entropy, x.adapted_content_entropy, y.adapted_content_entropy);
    s += buf;
    std::snprintf(buf, sizeof(buf), "%-30s %12.4f %12.4f %12.4f\n", "judge feature diversity",
                  x.source_feature_diversity, x.adapted_feature_diversity,
                  y.adapted_feature_diversity);
    s += buf;
  }
  return s;
}

}  // namespace restyle::engine
