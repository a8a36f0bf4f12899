// The embedded tiny demo models: a random CLIP and a random StyleGAN2, both
// built deterministically from a seed by the project itself (nothing is read
// from disk). They have the official tensor names and a real tokenizer
// vocabulary size, so every code path of a real adaptation job runs on them;
// only the pictures are meaningless. Used by `restyle-train --demo`, the
// end-to-end tests and quick manual checks.
//
// Thread-safety: pure functions; each call returns new models owned by the
// caller.
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_JOB_DEMO_MODELS_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_JOB_DEMO_MODELS_H_

#include <cstdint>

#include "worker/engine/clip/model.h"
#include "worker/engine/stylegan2/generator.h"

namespace restyle::engine {

// How jobs on the demo models name them in result.json ("source"/"clip").
inline constexpr char kDemoGeneratorName[] = "demo-stylegan2";
inline constexpr char kDemoClipName[] = "demo-clip";

// Seeds used when the caller gives none (the demo's fixed models).
inline constexpr uint64_t kDemoClipSeed = 20230403;
inline constexpr uint64_t kDemoGeneratorSeed = 20230404;
// Standard deviation of the demo CLIP's random weights: larger than
// RandomClipWeights' default so that different images get visibly different
// features (with 0.02 every image maps to almost the same feature and the
// quality report's diversity is ~0).
inline constexpr double kDemoClipStd = 0.1;

// A ViT CLIP with 32x32 input (patch 8, 4x4 grid), 2 vision and 2 text layers
// of width 64 (1 head), embedding 64, the full 49,408-token vocabulary and 77
// positions.
ClipConfig DemoClipConfig();

// A frozen, eval-mode CLIP of DemoClipConfig() with
// RandomClipWeights(seed, kDemoClipStd),
// loaded through the ordinary strict checkpoint path.
ClipModel DemoClip(uint64_t seed = kDemoClipSeed);

// A 32x32 StyleGAN2 with style_dim 64, 4 mapping layers and 32 channels at
// every resolution (n_latent 8).
Sg2Config DemoGeneratorConfig();

// RandomGenerator(DemoGeneratorConfig(), seed).
Generator DemoGenerator(uint64_t seed = kDemoGeneratorSeed);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_JOB_DEMO_MODELS_H_
