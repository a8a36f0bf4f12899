// The toy world's judge: a small convolutional classifier, trained on the
// world's procedural scenes (tools/world/train_judge.py), that tells an
// image's style, shape and colour without CLIP. It scores adaptations run in
// the toy world against ground truth the real world does not have:
//   target-style rate  share of adapted images the judge puts in the target
//                      style (the source's share is reported beside it);
//   content kept       share of latents whose adapted image has the same
//                      judged shape and colour as its source image;
//   diversity          entropy (bits) of the judged contents over the set,
//                      and the mean pairwise cosine distance of the judge's
//                      features: mode collapse shows as adapted << source.
//
// Tensor names (safetensors): conv{1,2,3}.{weight,bias} (3x3, padding 1,
// ReLU, 2x2 max-pool: 3->32->64->64), fc.{weight,bias} (1024 -> 128, ReLU:
// the features), style/shape/colour.{weight,bias} (the heads). Input
// (N,3,32,32) in [0, 1]; generator images in [-1, 1] are mapped by Score.
//
// Thread-safety: a loaded judge may be used from several threads at once.
#ifndef RESTYLE_WORKER_ENGINE_WORLD_JUDGE_H_
#define RESTYLE_WORKER_ENGINE_WORLD_JUDGE_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <optional>
#include <string>
#include <vector>

#include "worker/engine/io/safetensors.h"

namespace restyle::engine {

// The world's labels, in the order of the judge's heads.
const std::vector<std::string>& WorldStyles();   // photo, sketch, pixel art, neon, watercolor
const std::vector<std::string>& WorldShapes();   // circle, square, triangle, cross
const std::vector<std::string>& WorldColours();  // red, green, blue, yellow, purple, orange

// The index of the world style a job's target text names ("sketch",
// "a sketch", "Pixel Art", "watercolor painting", "neon sign", ...), or
// nullopt when it names none.
std::optional<int> WorldStyleOf(const std::string& text);

struct JudgeOutputs {
  torch::Tensor style;     // (N) predicted style index, int64
  torch::Tensor shape;     // (N) predicted shape index
  torch::Tensor colour;    // (N) predicted colour index
  torch::Tensor features;  // (N, 128) float32
};

class JudgeImpl : public torch::nn::Module {
 public:
  JudgeImpl();
  // images01: (N,3,32,32) in [0, 1], any device the judge is on.
  JudgeOutputs Classify(const torch::Tensor& images01);

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::Linear fc_{nullptr}, style_{nullptr}, shape_{nullptr}, colour_{nullptr};
};
TORCH_MODULE(Judge);

// A frozen, eval-mode judge from its tensors (strict: every name, every
// shape). Error(kInvalidArgument) names what does not fit.
Judge LoadJudgeFromTensors(const TensorMap& tensors, const std::string& origin);

// The judge's numbers for one adaptation (see the file comment).
struct JudgeScores {
  std::string target_style;         // the world style the target text names
  int64_t samples = 0;
  double source_style_rate = 0;     // share of source images judged target-style
  double adapted_style_rate = 0;    // share of adapted images judged target-style
  double content_kept = 0;          // share with the source image's shape and colour
  double source_content_entropy = 0;   // bits; log2(24) = 4.58 at most
  double adapted_content_entropy = 0;
  double source_feature_diversity = 0;   // mean pairwise cosine distance
  double adapted_feature_diversity = 0;

  std::string ToJson() const;  // compact JSON object
  std::string ToText() const;  // a few lines for people
};

// Scores source vs adapted generator images of the same latents ((N,3,32,32)
// in [-1, 1], N >= 2) for a target style index. Error(kInvalidArgument) for
// other shapes or a style index out of range.
JudgeScores ScoreAdaptation(JudgeImpl& judge, const torch::Tensor& source_images,
                            const torch::Tensor& adapted_images, int target_style);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_WORLD_JUDGE_H_
