// Official CLIP ViT tensor shapes and random weights in those shapes.
//
// Used by tests (ViT-B/32, B/16, L/14 load by the same code as the real
// checkpoints) and by the benchmark (a ViT-B/32-sized model without the 350
// MB download). The names and shapes are exactly those of OpenAI's
// state_dict after build_model deletes input_resolution, context_length and
// vocab_size.
//
// Thread-safety: pure functions, safe to call concurrently.
#ifndef RESTYLE_WORKER_ENGINE_CLIP_RANDOM_WEIGHTS_H_
#define RESTYLE_WORKER_ENGINE_CLIP_RANDOM_WEIGHTS_H_

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "worker/engine/clip/model.h"
#include "worker/engine/io/safetensors.h"

namespace restyle::engine {

// Name -> shape of every tensor of an OpenAI CLIP ViT state dict of `config`.
std::map<std::string, std::vector<int64_t>> ClipTensorShapes(const ClipConfig& config);

// Tensors with the shapes of ClipTensorShapes(config), filled from a
// generator seeded with `seed`: N(0, std) everywhere, except LayerNorm
// weights (1 + N(0, std)) and logit_scale (ln 100). float32, CPU.
TensorMap RandomClipWeights(const ClipConfig& config, uint64_t seed, double std = 0.02);

// Tensors with the right shapes but no storage of their own (one zero
// scalar expanded to each shape): enough to infer a configuration and run a
// strict LoadStateDict on large models without allocating their weights
// twice.
TensorMap PlaceholderClipWeights(const ClipConfig& config);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_CLIP_RANDOM_WEIGHTS_H_
