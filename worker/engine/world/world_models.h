// The toy world's trained models, embedded in the binary: a CLIP (OpenAI ViT
// layout, 32x32 input, patch 8), a StyleGAN2 (rosinality layout, 32x32,
// trained on the world's "photo" style) and the judge (judge.h). They were
// trained by the project itself from fixed seeds (tools/world/README.md; how
// each was made is recorded in data/README.md and in each file's metadata);
// the bytes are data/*.safetensors, assembled into the binary with .incbin
// (world_data.S), and parsed by the ordinary strict loaders.
//
// These are the worker's and `restyle-train --demo`'s default models: an
// adaptation in this world visibly changes a picture's style while its
// shapes stay, and the judge measures how far.
//
// Thread-safety: pure functions; each call returns new models owned by the
// caller.
#ifndef RESTYLE_WORKER_ENGINE_WORLD_WORLD_MODELS_H_
#define RESTYLE_WORKER_ENGINE_WORLD_WORLD_MODELS_H_

#include <string_view>

#include "worker/engine/clip/model.h"
#include "worker/engine/io/safetensors.h"
#include "worker/engine/stylegan2/generator.h"
#include "worker/engine/world/judge.h"

namespace restyle::engine {

// How jobs on the world's models name them in result.json ("source"/"clip").
inline constexpr char kWorldGeneratorName[] = "world-stylegan2";
inline constexpr char kWorldClipName[] = "world-clip";
// The label the world's generator was trained on.
inline constexpr char kWorldSourceText[] = "photo";

enum class WorldModel { kClip, kGenerator, kJudge };

// The embedded safetensors file of `model` (static storage).
std::string_view WorldModelBytes(WorldModel model);
// Its tensors and metadata, parsed.
SafetensorsContents WorldModelContents(WorldModel model);

// Frozen, eval-mode models on the CPU.
ClipModel WorldClip();
Generator WorldGenerator();
Judge WorldJudge();

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_WORLD_WORLD_MODELS_H_
