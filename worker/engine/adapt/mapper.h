// IPL's latent mapper (mapper/latent_mappers.py SingleMapper -> Mapper):
// w (N, style_dim) -> n_ctx prompt vectors of the CLIP text width.
//   mapping.mapping.0  PixelNorm
//   mapping.mapping.1..3  EqualLinear(style_dim, style_dim, lr_mul 0.01, fused
//   lrelu) mapping.mapping.4     EqualLinear(style_dim, n_ctx*text_width,
//   lr_mul 0.01, fused lrelu)
// Parameter names are those of the reference state_dict (mapper.pt['m']), so
// a reference checkpoint loads with a strict LoadStateDict.
//
// Thread-safety: forward does not mutate; training / loading needs exclusive
// use.
#ifndef RESTYLE_WORKER_ENGINE_ADAPT_MAPPER_H_
#define RESTYLE_WORKER_ENGINE_ADAPT_MAPPER_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <string>

#include "worker/engine/io/safetensors.h"

namespace restyle::engine {

struct MapperConfig {
  int64_t style_dim = 512;   // w width
  int64_t n_ctx = 4;         // prompt vectors per image
  int64_t text_width = 512;  // CLIP transformer width (token embedding size)
  double lr_mul = 0.01;
};

// The inner "mapping" module of the reference's SingleMapper.
class MapperNetImpl : public torch::nn::Module {
 public:
  explicit MapperNetImpl(const MapperConfig& config);
  torch::Tensor forward(const torch::Tensor& w);
  torch::nn::ModuleList mapping{nullptr};  // [PixelNorm, EqualLinear x 4]
};
TORCH_MODULE(MapperNet);

class LatentMapperImpl : public torch::nn::Module {
 public:
  // Parameters drawn from the global RNG like the reference (weights
  // N(0,1)/lr_mul, biases 0); see also RandomLatentMapper.
  explicit LatentMapperImpl(const MapperConfig& config);

  // Re-initialises from `rng`: weights N(0,1)/lr_mul, biases 0.
  void ResetParameters(at::Generator& rng);

  // w (N, style_dim) -> prompts (N, n_ctx, text_width).
  torch::Tensor forward(const torch::Tensor& w);

  const MapperConfig& config() const { return config_; }

  MapperNet mapping{nullptr};

 private:
  MapperConfig config_;
};
TORCH_MODULE(LatentMapper);

// A mapper deterministic in `seed` (the reference initialisation drawn from a
// generator seeded with `seed`).
LatentMapper RandomLatentMapper(const MapperConfig& config, uint64_t seed);

// Builds a mapper whose shape is inferred from `tensors` (names
// mapping.mapping.{1..4}.{weight,bias}) given n_ctx, and loads them strictly.
// Throws Error(kInvalidArgument) listing every missing/unexpected/mis-shaped
// entry or when the last layer's width is not divisible by n_ctx.
LatentMapper LatentMapperFromTensors(const TensorMap& tensors, int64_t n_ctx,
                                     const std::string& origin);

}  // namespace restyle::engine

#endif  // RESTYLE_WORKER_ENGINE_ADAPT_MAPPER_H_
