// The quality report written at the end of every adaptation job.
//
// Two numbers per image set, measured with the CLIP model(s) the job already
// holds, on the same latents before (source generator) and after (adapted
// generator):
//   target similarity  mean_i cos(normalize(E_I(x_i)), normalize(E_T(prompt)))
//                      with prompt = "a photo of a <target>"; higher = more
//                      target-like.
//   diversity          mean over pairs i<j of 1 - cos(E_I(x_i), E_I(x_j));
//                      mode collapse shows as adapted << source.
// With several CLIP models, each is reported and the job's weights give a
// weighted mean (weights normalised to sum 1).
//
// Thread-safety: the functions share no state; the CLIP models must not be
// mutated concurrently (see clip/model.h).
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_JOB_QUALITY_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_JOB_QUALITY_H_

#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "worker/engine/clip/model.h"
#include "worker/engine/world/judge.h"

namespace restyle::engine {

// One CLIP model with its weight and the target prompt's text feature.
struct QualityModel {
  std::string name;                  // shown in the report (e.g. the file name)
  ClipModel clip{nullptr};           // frozen CLIP; not owned exclusively
  double weight = 1.0;               // > 0; relative weight among the models
  torch::Tensor target_text_feature; // (embed_dim) or (1, embed_dim), not normalised
};

// Scores of one image set under one model (or weighted over models).
struct ImageSetScore {
  double target_similarity = 0.0;  // mean cosine to the target prompt, in [-1, 1]
  double diversity = 0.0;          // mean pairwise cosine distance, in [0, 2]
};

struct QualityReport {
  struct PerModel {
    std::string name;
    double weight = 1.0;  // normalised (the weights sum to 1)
    ImageSetScore source;
    ImageSetScore adapted;
  };
  std::string label;          // e.g. "IPL" or "NADA"
  std::string target_prompt;  // "a photo of a <target>"
  int64_t samples = 0;        // images per set
  double truncation = 1.0;    // truncation of the sample latents
  std::vector<PerModel> models;
  ImageSetScore source;   // weighted over models
  ImageSetScore adapted;  // weighted over models
  // The toy world's judge (world/judge.h), when the job ran in that world
  // and its target names one of the world's styles.
  std::optional<JudgeScores> judge;

  // {"label", "target_prompt", "samples", "truncation", "source": {...},
  //  "adapted": {...}, "models": [...], "judge": {...} when judged} as
  //  compact JSON text.
  std::string ToJson() const;
  // A few human-readable lines (the weighted numbers and their change).
  std::string ToText() const;
};

// Mean over pairs i<j of 1 - cos(f_i, f_j) for features (N, D), N >= 2
// (0 for N < 2). Double precision.
double MeanPairwiseCosineDistance(const torch::Tensor& features);

// L2-normalised CLIP image features of generator images (N,3,H,W) in
// [-1, 1], encoded in chunks of `batch` without gradients. Returns (N, D),
// float32 on the images' device.
torch::Tensor NormalizedImageFeatures(ClipModelImpl& clip, const torch::Tensor& images,
                                      int64_t batch = 16);

// Scores `images` under one model.
ImageSetScore ScoreImages(ClipModelImpl& clip, const torch::Tensor& images,
                          const torch::Tensor& target_text_feature, int64_t batch = 16);

// The whole report for source vs adapted images of the same latents
// (both (N,3,H,W), N >= 2). Error(kInvalidArgument) when the models list is
// empty, a weight is not positive or the image sets differ in shape.
QualityReport MeasureQuality(const std::vector<QualityModel>& models,
                             const torch::Tensor& source_images,
                             const torch::Tensor& adapted_images, const std::string& label,
                             const std::string& target_prompt, double truncation);

// Two reports (e.g. IPL and NADA on the same seeds) as a side-by-side table.
std::string SideBySide(const QualityReport& a, const QualityReport& b);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_JOB_QUALITY_H_
