#include "worker/engine/world/judge.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/nn/functional/pooling.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "worker/engine/common/error.h"

namespace restyle::engine {
namespace {

// Entropy in bits of the labels (N) with `classes` values.
double EntropyBits(const torch::Tensor& labels, int64_t classes) {
  const auto counts = at::bincount(labels.to(at::kCPU), {}, classes).to(at::kDouble);
  const auto p = counts / counts.sum();
  const auto nz = p.masked_select(p > 0);
  return std::max(0.0, -(nz * at::log2(nz)).sum().item<double>());  // no -0 for one class
}

// Mean over pairs i<j of 1 - cos(f_i, f_j): with unit rows u, the sum of all
// cosines is |sum_i u_i|^2, of which N are the diagonal.
double MeanPairwiseDistance(const torch::Tensor& features) {
  const int64_t n = features.size(0);
  if (n < 2) return 0.0;
  auto u = features.to(at::kDouble);
  u = u / u.norm(2, {1}, true).clamp_min(1e-12);
  const double all = u.sum(0).pow(2).sum().item<double>();
  return 1.0 - (all - static_cast<double>(n)) / (static_cast<double>(n) * (n - 1));
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

const std::vector<std::string>& WorldStyles() {
  static const std::vector<std::string> k = {"photo", "sketch", "pixel art", "neon", "watercolor"};
  return k;
}
const std::vector<std::string>& WorldShapes() {
  static const std::vector<std::string> k = {"circle", "square", "triangle", "cross"};
  return k;
}
const std::vector<std::string>& WorldColours() {
  static const std::vector<std::string> k = {"red", "green", "blue", "yellow", "purple", "orange"};
  return k;
}

std::optional<int> WorldStyleOf(const std::string& text) {
  const std::string t = Lower(text);
  // The longest style name found in the text ("pixel art" before "art").
  std::optional<int> found;
  size_t found_length = 0;
  for (size_t i = 0; i < WorldStyles().size(); ++i) {
    const std::string& s = WorldStyles()[i];
    if (t.find(s) != std::string::npos && s.size() > found_length) {
      found = static_cast<int>(i);
      found_length = s.size();
    }
  }
  return found;
}

JudgeImpl::JudgeImpl() {
  using torch::nn::Conv2dOptions;
  conv1_ = register_module("conv1", torch::nn::Conv2d(Conv2dOptions(3, 32, 3).padding(1)));
  conv2_ = register_module("conv2", torch::nn::Conv2d(Conv2dOptions(32, 64, 3).padding(1)));
  conv3_ = register_module("conv3", torch::nn::Conv2d(Conv2dOptions(64, 64, 3).padding(1)));
  fc_ = register_module("fc", torch::nn::Linear(64 * 4 * 4, 128));
  style_ = register_module("style", torch::nn::Linear(128, static_cast<int64_t>(WorldStyles().size())));
  shape_ = register_module("shape", torch::nn::Linear(128, static_cast<int64_t>(WorldShapes().size())));
  colour_ =
      register_module("colour", torch::nn::Linear(128, static_cast<int64_t>(WorldColours().size())));
}

JudgeOutputs JudgeImpl::Classify(const torch::Tensor& images01) {
  CheckArgument(images01.dim() == 4 && images01.size(1) == 3 && images01.size(2) == 32 &&
                    images01.size(3) == 32,
                "the world's judge reads (N,3,32,32) images");
  torch::NoGradGuard no_grad;
  auto x = images01.to(at::kFloat);
  for (auto* conv : {&conv1_, &conv2_, &conv3_}) {
    x = at::max_pool2d(at::relu((*conv)->forward(x)), {2, 2});
  }
  JudgeOutputs out;
  out.features = at::relu(fc_->forward(x.flatten(1)));
  out.style = style_->forward(out.features).argmax(1);
  out.shape = shape_->forward(out.features).argmax(1);
  out.colour = colour_->forward(out.features).argmax(1);
  return out;
}

Judge LoadJudgeFromTensors(const TensorMap& tensors, const std::string& origin) {
  Judge judge;
  LoadStateDict(*judge, tensors, origin);
  judge->eval();
  for (auto& p : judge->parameters()) p.set_requires_grad(false);
  return judge;
}

JudgeScores ScoreAdaptation(JudgeImpl& judge, const torch::Tensor& source_images,
                            const torch::Tensor& adapted_images, int target_style) {
  CheckArgument(source_images.sizes() == adapted_images.sizes() && source_images.dim() == 4 &&
                    source_images.size(0) >= 2,
                "ScoreAdaptation: expected two (N,3,32,32) image sets of one shape, N >= 2");
  CheckArgument(target_style >= 0 && target_style < static_cast<int>(WorldStyles().size()),
                "ScoreAdaptation: target style out of range");
  auto to01 = [](const torch::Tensor& x) { return ((x.to(at::kFloat) + 1) / 2).clamp(0, 1); };
  const JudgeOutputs s = judge.Classify(to01(source_images));
  const JudgeOutputs a = judge.Classify(to01(adapted_images));
  const int64_t colours = static_cast<int64_t>(WorldColours().size());
  const auto s_content = s.shape * colours + s.colour;
  const auto a_content = a.shape * colours + a.colour;
  const int64_t contents = static_cast<int64_t>(WorldShapes().size()) * colours;
  JudgeScores r;
  r.target_style = WorldStyles()[target_style];
  r.samples = source_images.size(0);
  r.source_style_rate = (s.style == target_style).to(at::kDouble).mean().item<double>();
  r.adapted_style_rate = (a.style == target_style).to(at::kDouble).mean().item<double>();
  r.content_kept = (s_content == a_content).to(at::kDouble).mean().item<double>();
  r.source_content_entropy = EntropyBits(s_content, contents);
  r.adapted_content_entropy = EntropyBits(a_content, contents);
  r.source_feature_diversity = MeanPairwiseDistance(s.features);
  r.adapted_feature_diversity = MeanPairwiseDistance(a.features);
  return r;
}

std::string JudgeScores::ToJson() const {
  return nlohmann::json{{"target_style", target_style},
                        {"samples", samples},
                        {"source", {{"style_rate", source_style_rate},
                                    {"content_entropy_bits", source_content_entropy},
                                    {"feature_diversity", source_feature_diversity}}},
                        {"adapted", {{"style_rate", adapted_style_rate},
                                     {"content_entropy_bits", adapted_content_entropy},
                                     {"feature_diversity", adapted_feature_diversity}}},
                        {"content_kept", content_kept}}
      .dump();
}

std::string JudgeScores::ToText() const {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "judge (toy world, %lld images): judged \"%s\" %.0f%% -> %.0f%%, content kept "
                "%.0f%%, content entropy %.2f -> %.2f bits, feature diversity %.3f -> %.3f",
                static_cast<long long>(samples), target_style.c_str(), 100 * source_style_rate,
                100 * adapted_style_rate, 100 * content_kept, source_content_entropy,
                adapted_content_entropy, source_feature_diversity, adapted_feature_diversity);
  return buf;
}

}  // namespace restyle::engine
